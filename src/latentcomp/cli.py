"""The `latentcomp` command. Thin: each module in `commands/` parses options and calls the public API.

Help is click's plain layout (full option names, wrapped to the terminal, no type tags on flags), with
the top-level commands grouped by task and one example under every command (`EXAMPLES`; the examples
are run by tests/test_docs_commands.py, like the commands in the documentation)."""

from __future__ import annotations

import importlib
import sys

import click
import typer
import typer.core

from .errors import LatentcompError, reset_spelling, spell_options

#: the top-level commands by task, in the order `latentcomp --help` shows them
COMMAND_GROUPS = {
    "Use a model": ["models", "compose", "inpaint", "edit", "navigate", "invert", "serve", "demo"],
    "Prepare inputs": ["mask", "sample", "data"],
    "Train": ["regressor", "gan", "directions", "analyzer"],
    "Measure": ["evaluate", "probe", "metrics"],
}

#: one example per command ("GROUP SUB" for sub-commands); each runs on the bundled models once the files
#: that `latentcomp data render` and `latentcomp mask` write exist (see docs/getting-started.md)
EXAMPLES = {
    "models": "latentcomp models",
    "compose": "latentcomp compose --part faces/000000.png --part faces/000005.png:hair.png --out out.png",
    "inpaint": "latentcomp inpaint --image faces/000002.png --mask top.png --n 4 --out completion.png",
    "edit": "latentcomp edit --image faces/000006.png --example faces/000003.png --region glasses.png "
    "--out edited.png",
    "navigate": "latentcomp navigate --image faces/000006.png --direction glasses --strength 3 --out nav.png",
    "invert": "latentcomp invert --model toyfaces-stylegan2 --image faces/000002.png --layer auto "
    "--out inv.png",
    "serve": "latentcomp serve --model toyfaces-stylegan2 --port 8000",
    "demo": "latentcomp demo --quick --out out/demo",
    "mask": "latentcomp mask --part-map faces/000005_parts.png --part hair --out hair.png",
    "sample": "latentcomp sample --model toyfaces-stylegan2 --n 16 --out grid.png",
    "data": "latentcomp data render toyfaces --n 8 --out faces",
    "data render": "latentcomp data render toyfaces --n 8 --out faces",
    "regressor": "latentcomp regressor evaluate builtin:toyfaces-dcgan-regressor --n 200",
    "regressor train": "latentcomp regressor train --generator builtin:toyfaces-dcgan --lpips none "
    "--steps 2000 --out runs/reg",
    "regressor info": "latentcomp regressor info builtin:toyfaces-dcgan-regressor",
    "regressor export": "latentcomp regressor export builtin:toyfaces-dcgan-regressor exported/my-regressor",
    "regressor evaluate": "latentcomp regressor evaluate builtin:toyfaces-dcgan-regressor --n 200",
    "gan": "latentcomp gan evaluate --generator builtin:toyfaces-dcgan --n 500",
    "gan train": "latentcomp gan train --data toyfaces --arch dcgan --steps 1000 --out runs/gan",
    "gan evaluate": "latentcomp gan evaluate --generator builtin:toyfaces-dcgan --n 500",
    "directions": "latentcomp directions list",
    "directions compute": "latentcomp directions compute --model toyfaces --method pca --out directions",
    "directions list": "latentcomp directions list",
    "directions evaluate": "latentcomp directions evaluate --model toyfaces --quick --out out/directions",
    "directions geometry": "latentcomp directions geometry --generator builtin:toyfaces-stylegan2 "
    "--out out/geometry",
    "analyzer": "latentcomp analyzer eval --analyzer builtin:toyfaces-analyzer --n 500",
    "analyzer train": "latentcomp analyzer train --steps 200 --out runs/analyzer",
    "analyzer eval": "latentcomp analyzer eval --analyzer builtin:toyfaces-analyzer --n 500",
    "analyzer train-second-view": "latentcomp analyzer train-second-view --steps 200 "
    "--out runs/second-view.safetensors",
    "evaluate": "latentcomp evaluate composition --model toyfaces --n 50 --out out/eval",
    "evaluate composition": "latentcomp evaluate composition --model toyfaces --n 50 --out out/eval",
    "probe": "latentcomp probe tradeoff --model toyfaces --quick --out out/probe",
    "probe tradeoff": "latentcomp probe tradeoff --model toyfaces --quick --out out/probe",
    "probe independence": "latentcomp probe independence --model toyfaces --quick --out out/probe",
    "probe parts": "latentcomp probe parts --model toyfaces --quick --out out/probe",
    "probe rebalance": "latentcomp probe rebalance --model toyfaces --quick --out out/probe",
    "probe omissions": "latentcomp probe omissions --model toyfaces --n 16 --steps 50 --out out/omissions",
    "probe report": "latentcomp probe report --model toyfaces --quick --out out/report",
    "metrics": "latentcomp metrics masked-l1 renders outputs --mask-dir masks",
    "metrics fid": "latentcomp metrics fid renders outputs --features analyzer",
    "metrics prdc": "latentcomp metrics prdc renders outputs --features analyzer",
    "metrics is": "latentcomp metrics is outputs --features inception:/path/pt_inception.pth",
    "metrics masked-l1": "latentcomp metrics masked-l1 renders outputs --mask-dir masks",
    "metrics masked-lpips": "latentcomp metrics masked-lpips renders outputs --mask-dir masks",
}


class _Root(typer.core.TyperGroup):
    """The root group: commands listed in sections by task."""

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        names = self.list_commands(ctx)
        listed = [n for group in COMMAND_GROUPS.values() for n in group]
        sections = {**COMMAND_GROUPS, "Other": [n for n in names if n not in listed]}
        width = max(len(n) for n in names)
        for title, group in sections.items():
            rows = []
            for name in group:
                cmd = self.get_command(ctx, name)
                if cmd is not None and not cmd.hidden:
                    rows.append((name, cmd.get_short_help_str(limit=formatter.width - 6 - width)))
            if rows:
                with formatter.section(title):
                    formatter.write_dl(rows, col_max=width + 2)


app = typer.Typer(
    cls=_Root,
    help="latentcomp: compose, complete and edit images with a latent regressor on a frozen GAN. "
    "Every command has --help with an example.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
)


def flag(name: str) -> str:
    """A library parameter as its command-line flag: max_minutes -> --max-minutes."""
    return "--" + name.replace("_", "-")


@app.callback()
def _root(ctx: typer.Context) -> None:
    # a callback keeps `latentcomp sample ...` a sub-command even while only one command is registered;
    # for the command's run, library messages name parameters as flags
    token = spell_options(flag)
    ctx.call_on_close(lambda: reset_spelling(token))


# each module defines `register(app)`; one concept per module
COMMAND_MODULES = [
    "models",
    "sample",
    "mask",
    "data",
    "gan",
    "regressor",
    "apps",
    "evaluate",
    "serve",
    "probe",
    "metrics",
    "directions",
    "analyzer",
]

for _name in COMMAND_MODULES:
    importlib.import_module(f"latentcomp.commands.{_name}").register(app)


def _example(key: str) -> str | None:
    ex = EXAMPLES.get(key)
    return f"\b\nExample:\n  {ex}" if ex else None  # \b: click keeps the line as written


def _plain_help_with_examples(typer_app: typer.Typer, prefix: str = "") -> None:
    """Plain help for every (sub-)command, each with its example as epilog."""
    typer_app.rich_markup_mode = None
    for info in typer_app.registered_commands:
        name = info.name or info.callback.__name__.strip("_").replace("_", "-")
        info.epilog = info.epilog or _example(prefix + name)
    for group in typer_app.registered_groups:
        sub = group.typer_instance
        name = group.name or sub.info.name
        sub.info.epilog = sub.info.epilog or _example(prefix + name)
        _plain_help_with_examples(sub, prefix=f"{prefix}{name} ")


_plain_help_with_examples(app)


def main(argv: list[str] | None = None) -> None:
    try:
        app(args=argv, standalone_mode=True, prog_name="latentcomp")
    except LatentcompError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except OSError as e:  # an unwritable output folder, a full disk, ...: one line that names the path
        where = f"{e.filename}: " if e.filename else ""
        print(f"error: {where}{e.strerror or e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
