"""`latentcomp models`: the bundled pretrained models (names for every command's --model)."""

from __future__ import annotations

import typer


def models() -> None:
    """List the bundled models: name, generator, regressor, direction set and model card."""
    from ..pretrained import PRETRAINED_MODELS, list_pretrained

    for name in list_pretrained():
        m = PRETRAINED_MODELS[name]
        state = "" if m.installed else "  (weights not installed)"
        typer.echo(f"{name}: {m.summary}{state}")
        aliases = [a for a in m.aliases if not a.startswith("builtin:")]
        if aliases:
            typer.echo(f"  also called: {', '.join(aliases)}")
        typer.echo(f"  generator:  {m.generator}")
        typer.echo(f"  regressor:  {m.regressor}")
        typer.echo(f"  directions: {m.directions}")
        typer.echo(f"  card:       {m.card}")


def register(app) -> None:
    app.command("models")(models)
