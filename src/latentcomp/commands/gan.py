"""`latentcomp gan train`: train the small GANs of the embedded default."""

from __future__ import annotations

from pathlib import Path

import typer

gan_app = typer.Typer(help="Train GANs (the embedded default's generators).", no_args_is_help=True)


@gan_app.command("train")
def train(
    out: Path = typer.Option(
        ..., help="Run folder (checkpoint.pt, generator.safetensors, tb/, samples.png)."
    ),
    data: str = typer.Option(
        "toyfaces", help="toyfaces, mnist (../shared/real/mnist or $LATENTCOMP_MNIST) or an image folder."
    ),
    arch: str = typer.Option(
        "dcgan", help="dcgan, stylegan2 or gansformer (--z-dim: a multiple of 16, split into 8 or 4 parts)."
    ),
    resolution: int = typer.Option(64, help="Output resolution."),
    steps: int = typer.Option(10000, help="Total training steps (with --resume: the new total)."),
    batch: int = typer.Option(32, help="Batch size."),
    lr: float = typer.Option(None, help="Learning rate (default 0.002 for stylegan2, 0.0002 for dcgan)."),
    d_lr: float = typer.Option(
        None, help="Discriminator learning rate (default 0.0004 for stylegan2, else --lr)."
    ),
    width: int = typer.Option(32, help="Base channel width of G and D."),
    z_dim: int = typer.Option(128, help="Latent size (also the w size for stylegan2)."),
    r1_gamma: float = typer.Option(0.1, help="R1 penalty weight on real images."),
    pool_size: int = typer.Option(20000, help="toyfaces: number of distinct renders to train on."),
    seed: int = typer.Option(0, min=0, max=2**63 - 1, help="Seed for data, init and sampling."),
    checkpoint_every: int = typer.Option(250, help="Steps between (atomic) checkpoints."),
    device: str = typer.Option("cpu", help="cpu or cuda."),
    resume: bool = typer.Option(False, help="Continue the run in --out exactly where it stopped."),
    overwrite: bool = typer.Option(False, help="Start a new run in a non-empty --out, replacing its files."),
    threads: int = typer.Option(0, help="torch threads (0 = torch's default)."),
    augment: str = typer.Option(
        "", help="Differentiable augmentation of D's inputs: color, translation, cutout (comma-separated)."
    ),
    seg_weight: float = typer.Option(
        0.0, min=0.0, help="Weight of D's per-pixel part/fake segmentation loss (toyfaces only; 0 = off)."
    ),
    init_generator: str = typer.Option(
        "", help="Warm-start G from a generator spec of the same --arch/--width/--z-dim (fresh D)."
    ),
    d_warmup: int = typer.Option(
        0, min=0, help="First steps train D only (use with --init-generator: a fresh D would mislead G)."
    ),
    precision: str = typer.Option(
        "fp32", help="fp32, or bf16 (autocast + channels_last: faster on AMX/AVX512-BF16 CPUs and GPUs)."
    ),
    max_minutes: float = typer.Option(
        None, min=0.0, help="Stop after this many minutes of this call (checkpointed; --resume continues)."
    ),
):
    """Train a GAN; the EMA generator is exported to OUT/generator.safetensors for `load_generator`."""
    import torch

    from ..devices import parse_device
    from ..errors import LatentcompError
    from ..training.gan import GANConfig, GANTrainer

    if threads:
        torch.set_num_threads(threads)
    if lr is None:
        lr = 0.002 if arch in ("stylegan2", "gansformer") else 0.0002
    if d_lr is None:
        d_lr = 0.0004 if arch in ("stylegan2", "gansformer") else lr
    cfg = GANConfig(
        data=data,
        arch=arch,
        resolution=resolution,
        steps=steps,
        batch=batch,
        seed=seed,
        lr=lr,
        d_lr=d_lr,
        r1_gamma=r1_gamma,
        pool_size=pool_size,
        z_dim=z_dim,
        width=width,
        checkpoint_every=checkpoint_every,
        device=device,
        augment=augment,
        seg_weight=seg_weight,
        init_generator=init_generator,
        d_warmup=d_warmup,
        precision=precision,
    )
    if batch < 1:
        raise LatentcompError(f"--batch must be at least 1; got {batch}")
    parse_device(device, "--device")
    trainer = GANTrainer(cfg, out, resume=resume, overwrite=overwrite)
    trainer.train(max_seconds=None if max_minutes is None else max_minutes * 60)
    typer.echo(
        f"done: {trainer.step} steps; generator at {out / 'generator.safetensors'}; "
        f"samples {out / 'samples.png'}"
    )


@gan_app.command("evaluate")
def evaluate(
    generator: str = typer.Option(
        ..., help="Generator spec, e.g. builtin:toyfaces-dcgan or dcgan:RUN/generator.safetensors."
    ),
    n: int = typer.Option(5000, help="Samples (and renders) to compare."),
    seed: int = typer.Option(0, min=0, max=2**63 - 1, help="Sampling seed."),
    out: Path = typer.Option(None, help="Write the figures as JSON here."),
    second_view: str = typer.Option(
        "auto", help="Second feature space for the FID check: auto (the bundled one if installed), none, "
        "or a file from `latentcomp analyzer train-second-view`."
    ),
):
    """Quality of a toyfaces generator by the analyzer: attribute marginals, confidence, domain FID.

    Example: latentcomp gan evaluate --generator builtin:toyfaces-dcgan --n 5000"""
    import json

    from ..generators import load_generator
    from ..metrics.generator_quality import generator_quality
    from ..metrics.second_view import BUNDLED, load_second_view

    view = None
    if second_view == "auto" and BUNDLED.is_file():
        view = load_second_view("builtin")
    elif second_view not in ("auto", "none"):
        view = load_second_view(second_view)
    result = generator_quality(load_generator(generator), n=n, seed=seed, second_view=view)
    text = json.dumps(result, indent=2)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
    typer.echo(
        f"max attribute marginal gap {result['max_marginal_gap_pp']:.1f} pp; confidence on samples "
        f"{result['confidence_samples']:.3f} (renders {result['confidence_renders']:.3f}); domain FID "
        f"{result['fid_samples_vs_renders']:.2f} (renders vs renders {result['fid_renders_vs_renders']:.2f})"
    )
    if "fid2_samples_vs_renders" in result:
        typer.echo(
            f"second view: domain FID {result['fid2_samples_vs_renders']:.2f} "
            f"(renders vs renders {result['fid2_renders_vs_renders']:.2f})"
        )
    for name, gap in result["marginal_gap_pp"].items():
        typer.echo(f"  {name:18s} gap {gap:5.1f} pp")


def register(app: typer.Typer) -> None:
    app.add_typer(gan_app, name="gan")
