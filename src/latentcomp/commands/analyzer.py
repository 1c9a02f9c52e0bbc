"""`latentcomp analyzer train|eval`: the toyfaces analyzer (part maps + attributes), our instrument."""

from __future__ import annotations

import json
from pathlib import Path

import typer

analyzer_app = typer.Typer(
    help="The toyfaces analyzer: predicts part maps and attributes of toyfaces images.", no_args_is_help=True
)


@analyzer_app.command("train")
def train(
    out: Path = typer.Option(
        ..., "--out", help="run folder (checkpoint.pt, log.jsonl, tb/, analyzer.safetensors)"
    ),
    steps: int = typer.Option(1600, help="optimiser steps"),
    batch: int = typer.Option(48, help="images per step (fresh renders every step)"),
    seed: int = typer.Option(
        0, min=0, max=2**63 - 1, help="toyfaces data seed of the training renders (not the held-out seed)"
    ),
    lr: float = typer.Option(2e-3, help="peak Adam learning rate (warm-up, then cosine decay)"),
    resume: bool = typer.Option(False, "--resume", help="continue the run in --out from its checkpoint"),
    overwrite: bool = typer.Option(False, "--overwrite", help="start a new run in a non-empty --out"),
    threads: int = typer.Option(1, help="torch CPU threads"),
    eval_every: int = typer.Option(1000, help="quick held-out check every N steps (0: only at the end)"),
    ckpt_every: int = typer.Option(250, help="write the checkpoint every N steps"),
    stop_after: int = typer.Option(None, help="stop after this many steps (checkpointed; --resume goes on)"),
) -> None:
    """Train an analyzer on toyfaces renders generated on the fly."""
    import torch

    from ..metrics.analyzer import train_analyzer

    torch.set_num_threads(threads)
    path = train_analyzer(out, steps=steps, batch=batch, seed=seed, resume=resume, lr=lr,
                          eval_every=eval_every or steps, ckpt_every=ckpt_every, stop_after=stop_after,
                          overwrite=overwrite)
    if path.suffix == ".pt":
        typer.echo(f"stopped at --stop-after {stop_after}; checkpoint {path} (continue with --resume)")
    else:
        typer.echo(f"wrote {path} (load it with load_analyzer({str(out)!r}))")


@analyzer_app.command("eval")
def evaluate(
    analyzer: str = typer.Option("builtin:toyfaces-analyzer", "--analyzer",
                                 help="builtin:NAME, a .safetensors file or a training run folder"),
    n: int = typer.Option(2000, help="number of held-out renders"),
    seed: int = typer.Option(
        None, min=0, max=2**63 - 1, help="toyfaces seed of the held-out renders (default: the held-out seed)"
    ),
    resolution: int = typer.Option(64, help="render resolution: 32, 64 or 128 (the analyzer resizes to 64)"),
    batch: int = typer.Option(250, help="images per forward pass"),
    threads: int = typer.Option(1, help="torch CPU threads"),
    device: str = typer.Option(None, help="torch device, e.g. cuda (default: cpu)"),
    degrade: bool = typer.Option(False, "--degrade",
                                 help="blur / resample / jitter / add noise to every render first"),
    json_out: Path = typer.Option(None, "--json", help="also write the numbers to this JSON file"),
) -> None:
    """Held-out attribute accuracy (per attribute) and part IoU (per part, mIoU) on fresh renders."""
    import torch

    from ..metrics.analyzer import EVAL_SEED, evaluate_analyzer, load_analyzer

    torch.set_num_threads(threads)
    an = load_analyzer(analyzer, device=device)
    res = evaluate_analyzer(an, n=n, seed=EVAL_SEED if seed is None else seed, resolution=resolution,
                            batch=batch, degrade=degrade)
    typer.echo(f"analyzer {analyzer}: {n} held-out renders{' (degraded)' if degrade else ''} "
               f"(toyfaces seed {res['seed']}, {resolution}x{resolution})")
    typer.echo(f"{'attribute':<20}{'accuracy':>10}{'(visible in)':>14}{'all images':>12}")
    for k, v in res["attribute_accuracy"].items():
        typer.echo(f"{k:<20}{v:>10.4f}{res['attribute_visible_count'][k]:>14d}"
                   f"{res['attribute_accuracy_all'][k]:>12.4f}")
    typer.echo(f"{'mean':<20}{res['mean_attribute_accuracy']:>10.4f}{'':>14}"
               f"{res['mean_attribute_accuracy_all']:>12.4f}")
    typer.echo(f"{'part':<20}{'IoU':>10}")
    for k, v in res["part_iou"].items():
        typer.echo(f"{k:<20}{v:>10.4f}")
    typer.echo(f"{'mIoU':<20}{res['part_miou']:>10.4f}")
    typer.echo(f"mean confidence {res['mean_confidence']:.4f}")
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(res, indent=2) + "\n")
        typer.echo(f"wrote {json_out}")


@analyzer_app.command("train-second-view")
def train_second_view_cmd(
    out: Path = typer.Option(..., "--out", help="weights file to write (.safetensors)"),
    steps: int = typer.Option(2500, min=1, help="optimiser steps (fresh renders every step)"),
    batch: int = typer.Option(32, min=1, help="images per step"),
    threads: int = typer.Option(1, min=1, help="torch CPU threads"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing --out"),
):
    """Train the second-view feature network (ShuffleNet, attributes only): a check on the analyzer.

    Example: latentcomp analyzer train-second-view --out runs/second-view.safetensors --steps 2500"""
    import torch

    from ..errors import LatentcompError
    from ..metrics.second_view import save_second_view, train_second_view

    if out.suffix != ".safetensors":
        raise LatentcompError(f"--out {out} must end in .safetensors")
    if out.exists() and not overwrite:
        raise LatentcompError(f"--out {out} exists; pass --overwrite to replace it")
    torch.set_num_threads(threads)
    net, info = train_second_view(steps=steps, batch=batch)
    save_second_view(net, out, info)
    acc, secs = info["held_out_accuracy"], info["train_s"]
    typer.echo(f"wrote {out}: held-out attribute accuracy {acc:.4f}, {secs:.0f} s")


def register(app: typer.Typer) -> None:
    app.add_typer(analyzer_app, name="analyzer")
