"""`latentcomp evaluate composition`: composition accuracy, realism, known-pixel error and speed per method
on automatic toyfaces collages; writes DIR/composition.json, DIR/composition.md and DIR/examples.png."""

from __future__ import annotations

import json
import math
from pathlib import Path

import typer

from ..errors import LatentcompError

evaluate_app = typer.Typer(help="Evaluate models on fixed, seeded test sets.", no_args_is_help=True)


def _jsonable(v):
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return None
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    return v


@evaluate_app.command("composition")
def composition(
    model: str = typer.Option(
        "toyfaces", help="toyfaces, toyfaces-stylegan2, toyfaces-gansformer, builtin:NAME or a regressor run."
    ),
    n: int = typer.Option(500, help="Number of automatic collages."),
    out: Path = typer.Option(..., help="Output folder."),
    methods: str = typer.Option(
        "regressor,regressor+refine,optimisation,poisson,raw",
        help="Comma-separated: regressor, regressor+refine, optimisation, poisson, raw.",
    ),
    seed: int = typer.Option(0, min=0, max=2**63 - 1, help="Seed of the collages and references."),
    refine_steps: int = typer.Option(30, help="Adam steps of regressor + refine."),
    opt_steps: int = typer.Option(200, help="Adam steps of optimisation only (from the mean latent)."),
    batch: int = typer.Option(50, help="Collages per batch."),
    source: str = typer.Option(
        "renders",
        help="Collage sources: renders (true part maps) or samples (generator samples, analyzer part maps).",
    ),
    analyzer: str = typer.Option("builtin:toyfaces-analyzer", help="Analyzer spec or path."),
    device: str = typer.Option(None, help="Torch device [default: cpu]."),
    generator: str = typer.Option(
        None, help="Generator spec to pair with --model instead of the recorded one (e.g. python:MODULE:FN)."
    ),
    iterations: int = typer.Option(
        None, help="Passes of an iterative regressor (1-10; default: the number it was trained with)."
    ),
):
    """Composition accuracy, realism (analyzer confidence, domain FID), known-pixel L1 and time per method."""
    from .. import io
    from ..edit.evaluation import evaluate_composition, markdown_table
    from ..edit.pipeline import Pipeline

    method_list = [m.strip() for m in methods.split(",") if m.strip()]
    if not method_list:
        raise LatentcompError("--methods is empty; give e.g. regressor,poisson")
    out_dir = io.ensure_dir(out)
    pipe = Pipeline.from_pretrained(model, device=device, generator=generator, iterations=iterations)
    res = evaluate_composition(
        pipe,
        n=n,
        seed=seed,
        methods=method_list,
        analyzer=analyzer,
        refine_steps=refine_steps,
        opt_steps=opt_steps,
        batch=batch,
        source=source,
    )
    examples = res.pop("_examples", {})
    io.write_text(out_dir / "composition.json", json.dumps(_jsonable(res), indent=2) + "\n")
    table = markdown_table(res)
    io.write_text(out_dir / "composition.md", table)
    if examples:
        _examples_grid(examples, out_dir / "examples.png")
    print(table)
    print(f"wrote {out_dir / 'composition.json'}, {out_dir / 'composition.md'}, {out_dir / 'examples.png'}")


def _examples_grid(examples: dict, path: Path) -> None:
    """Rows = collages; columns = collage, then each method's output."""
    import torch
    from torchvision.utils import make_grid

    from .. import io

    coll = examples["collage"]
    cols = [coll] + [v for k, v in examples.items() if k not in ("collage", "mask")]
    tiles = torch.stack(cols, 1).flatten(0, 1)
    grid = make_grid(tiles, nrow=len(cols), padding=2, pad_value=1.0)
    io.save_image(grid, path)


def register(app) -> None:
    app.add_typer(evaluate_app, name="evaluate")
