"""`latentcomp regressor train|info|export`: train masked latent regressors and manage their files."""

from __future__ import annotations

import json
from pathlib import Path

import typer

regressor_app = typer.Typer(help="Train and inspect latent regressors (masked image -> latent).",
                            no_args_is_help=True)  # fmt: skip


@regressor_app.command("train")
def train(
    generator: str | None = typer.Option(
        None, help="Generator spec, e.g. builtin:toyfaces-dcgan, stylegan2:/ckpt.pt, python:my_gen.py:build."
    ),
    out: Path = typer.Option(..., help="Run folder: config.json, best/last.safetensors, state.pt, tb/."),
    space: str | None = typer.Option(
        None, help="Latent space of the head: z, w or w+ (default: w+ where the generator has it, else z)."
    ),
    backbone: str | None = typer.Option(
        None,
        help="small, resnet18 or resnet34 (default: small up to 64 px, resnet18 up to 256, resnet34 above).",
    ),
    steps: int | None = typer.Option(
        None, help="Total steps (with --resume: the new total) (default: 10000)."
    ),
    batch: int | None = typer.Option(
        None, help="Batch per process; global = processes x batch (default: 16)."
    ),
    lr: float | None = typer.Option(None, help="Adam learning rate (betas 0.5, 0.999) (default: 1e-4)."),
    mask_kind: str | None = typer.Option(
        None,
        help="noise (the paper's sampler), rect, parts (toyfaces part "
        "masks via the analyzer) or none (default: noise).",
    ),
    unmasked_fraction: float | None = typer.Option(None, help="Fraction of fully known inputs (default: 0)."),
    real: Path | None = typer.Option(None, help="Folder of real images to mix in (no latent loss on them)."),
    real_fraction: float | None = typer.Option(
        None, help="Fraction of each batch taken from --real (default: 0)."
    ),
    lpips: str | None = typer.Option(
        None,
        help="Perceptual loss: alex, vgg or none (default: alex); needs "
        "torchvision ImageNet weights in the torch hub cache or --lpips-weights.",
    ),
    lpips_weights: Path | None = typer.Option(None, help="ImageNet AlexNet/VGG16 state dict for LPIPS."),
    w_mse: float | None = typer.Option(None, help="Weight of the image MSE (default: 1)."),
    w_lpips: float | None = typer.Option(None, help="Weight of LPIPS (default: 1)."),
    w_latent: float | None = typer.Option(None, help="Weight of the latent loss (default: 1)."),
    eval_every: int | None = typer.Option(
        None, help="Steps between test evaluations + checkpoints (default: 500)."
    ),
    test_size: int | None = typer.Option(None, help="Held-out test samples (fixed seed) (default: 64)."),
    seed: int | None = typer.Option(
        None, min=0, max=2**63 - 1, help="Seed of init, latents, masks and test set (default: 0)."
    ),
    input_size: int | None = typer.Option(
        None, help="Backbone working size (default: min(res, 64) for small, min(res, 256) for resnets)."
    ),
    rgb_only: bool = typer.Option(
        False, "--rgb-only", help="RGB input without the mask channel (for comparison)."
    ),
    resume: bool = typer.Option(
        False, "--resume", help="Continue the run in --out exactly where it stopped."
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="Start a new run in a non-empty --out, replacing its run files."
    ),
    init: str | None = typer.Option(
        None,
        help="Start from this regressor's weights (run folder, .safetensors or builtin:NAME; same backbone "
        "and latent shape), e.g. to fine-tune for a further-trained generator.",
    ),
    device: str | None = typer.Option(None, help="cpu, cuda or cuda:N (default: cuda if available)."),
    max_minutes: float | None = typer.Option(
        None, help="Stop with a checkpoint after this many minutes (--resume continues) (default: no limit)."
    ),
    threads: int = typer.Option(0, help="torch threads per process (0 = torch's default)."),
    no_tensorboard: bool = typer.Option(False, "--no-tensorboard", help="Skip TensorBoard logs."),
):
    """Train a regressor on the generator's own samples (z ~ prior, x = G(z)), masked as in the paper.

    Under `torchrun --nproc-per-node N` the same command trains with DDP (gloo on CPU, nccl on CUDA).
    """
    import torch

    from ..errors import LatentcompError
    from ..training.checkpoint import read_json_object
    from ..training.regressor import TrainConfig, train_regressor

    if steps is not None and steps < 1:
        raise LatentcompError(f"--steps must be at least 1; got {steps} (nothing would be trained)")
    if threads:
        torch.set_num_threads(threads)
    given = {
        "generator": generator, "space": space, "backbone": backbone, "steps": steps, "batch": batch,
        "lr": lr,
        "mask_kind": mask_kind, "unmasked_fraction": unmasked_fraction,
        "real": str(real) if real else None, "real_fraction": real_fraction, "lpips": lpips,
        "lpips_weights": str(lpips_weights) if lpips_weights else None, "w_mse": w_mse, "w_lpips": w_lpips,
        "w_latent": w_latent, "eval_every": eval_every, "test_size": test_size, "seed": seed,
        "input_size": input_size, "device": device, "max_minutes": max_minutes,
        "init": init,
    }  # fmt: skip
    given = {k: v for k, v in given.items() if v is not None}
    if rgb_only:
        given["rgb_only"] = True
    base: dict = {}
    cfg_file = out / "config.json"
    if resume and (out / "state.pt").is_file() and cfg_file.is_file():
        base = read_json_object(cfg_file, "run config").get("train", {})
        if not isinstance(base, dict):
            raise LatentcompError(f"run config {cfg_file}: \"train\" is not an object; restore the file")
    cfg = TrainConfig.from_dict({**base, **given, "out": str(out), "resume": resume,
                                 "overwrite": overwrite, "tensorboard": not no_tensorboard})  # fmt: skip
    result = train_regressor(cfg)
    if result.step and result.best_test_loss < float("inf"):
        typer.echo(f"done: step {result.step}, best test loss {result.best_test_loss:.4f}; model: {out}")


@regressor_app.command("info")
def info(model: str = typer.Argument(..., help="Run folder, .safetensors file or builtin:NAME.")):
    """Print a regressor's config (generator spec, space, backbone) and, for a run, its test history."""
    from ..regressors import load_regressor, resolve_regressor_file

    reg = load_regressor(model)
    typer.echo(f"weights: {resolve_regressor_file(model)}")
    typer.echo(json.dumps(reg.config, indent=2))
    typer.echo(f"parameters: {sum(p.numel() for p in reg.parameters()):,}")
    metrics = Path(model) / "metrics.json"
    if metrics.is_file():
        m = json.loads(metrics.read_text())
        typer.echo(
            f"step {m['step']}, best test loss {m['best_test_loss']:.4f}, train time {m['wall_s']:.0f} s"
        )


@regressor_app.command("export")
def export(
    model: str = typer.Argument(..., help="Run folder, .safetensors file or builtin:NAME."),
    dest: Path = typer.Argument(..., help="Output path without suffix: writes DEST.safetensors + DEST.json."),
    half: bool = typer.Option(
        False, "--half", help="Store float16 weights (half the size; loads as float32)."
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="Allow DEST to be the model's own files."),
):
    """Write a self-contained copy (weights + JSON config) of a regressor, e.g. for bundling."""
    from ..outputs import check_not_inputs
    from ..regressors import load_regressor, resolve_regressor_file, save_regressor

    weights = resolve_regressor_file(model)
    base = dest.with_suffix("") if dest.suffix in (".safetensors", ".json") else dest
    outputs = [base.with_name(base.name + ".safetensors"), base.with_name(base.name + ".json")]
    inputs = [("regressor weights", weights), ("regressor config", weights.with_suffix(".json")),
              ("regressor config", weights.parent / "config.json")]  # fmt: skip
    check_not_inputs(outputs, inputs, overwrite, option="DEST")
    reg = load_regressor(model)
    extra = _weights_provenance(weights)
    path = save_regressor(reg, dest, extra=extra, half=half)
    typer.echo(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB) and {path.with_suffix('.json')}")


def _weights_provenance(weights: Path) -> dict:
    """The training step and held-out loss that a run wrote into this checkpoint's metadata when it saved
    it: best.safetensors is the evaluation with the lowest test loss, not the run's last step."""
    from safetensors import safe_open

    from ..regressors.io import RUN_WEIGHT_FILES

    weights = Path(weights)
    if weights.name not in RUN_WEIGHT_FILES:
        return {}
    with safe_open(str(weights), framework="pt", device="cpu") as f:
        record = json.loads((f.metadata() or {}).get("latentcomp_config", "{}"))
    if "step" not in record:
        return {}
    loss_key = "best_test_loss" if weights.name == "best.safetensors" else "test_loss"
    return {"step": record["step"], loss_key: record.get("test_loss")}


@regressor_app.command("evaluate")
def evaluate(
    model: str = typer.Argument(..., help="Run folder, .safetensors file or builtin:NAME."),
    n: int = typer.Option(1000, help="Fresh generator samples."),
    seed: int = typer.Option(
        123, min=0, max=2**63 - 1, help="Sampling and mask seed."
    ),
    analyzer: str = typer.Option("auto", help="Analyzer for attribute agreement and feature distance: "
                                 "auto (toyfaces generators), none, or an analyzer spec."),
    out: Path = typer.Option(None, help="Write the figures as JSON here."),
    generator: str = typer.Option(
        None, help="Generator spec to evaluate against instead of the recorded one (e.g. python:MODULE:FN)."
    ),
):
    """Reconstruction quality on fresh samples: L1 (known/all pixels), feature distance, attributes."""
    from ..metrics.analyzer import load_analyzer
    from ..regressors import load_regressor
    from ..regressors.evaluate import evaluate_regressor

    reg = load_regressor(model)
    if analyzer == "auto":
        analyzer = "builtin:toyfaces-analyzer" if "toyfaces" in reg.generator_spec else "none"
    an = None if analyzer == "none" else load_analyzer(analyzer)
    from ..generators import load_generator

    G = load_generator(generator) if generator else reg.load_generator()
    result = evaluate_regressor(reg, generator=G, n=n, seed=seed, analyzer=an)
    text = json.dumps(result, indent=2)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
    typer.echo(text)


def register(app: typer.Typer) -> None:
    app.add_typer(regressor_app, name="regressor")
