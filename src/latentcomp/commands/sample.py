"""`latentcomp sample`: draw n images from any generator spec and write them as one grid PNG."""

from __future__ import annotations

import math
from pathlib import Path

import torch
import typer

from ..errors import LatentcompError
from ..io import _SAVE_FORMAT, atomic_write

MAX_SAMPLE_PIXELS = 8192 * 8192  # the grid is one image: n x resolution^2 may not exceed this
CHUNK = 64  # images per forward pass of G (memory stays bounded for large n)


def sample_images(
    spec: str,
    n: int = 16,
    seed: int = 0,
    space: str = "z",
    truncation: float | None = None,
    device: str | None = None,
) -> torch.Tensor:
    """n images (N, C, H, W) in [-1, 1] from `spec`, reproducible for a seed.

    truncation psi in (0, 1]: generators with a w space pull w towards the average w
    (their stored average where they have one, otherwise the mean of 4096 mapped z drawn with the seed);
    z-only generators with a normal prior scale z by psi.

    At most MAX_SAMPLE_PIXELS pixels in all (n x resolution^2); images that are not finite (a generator
    with NaN weights) are refused.
    """
    from ..generators import load_generator
    from ..generators.base import mean_latent

    if n < 1:
        raise LatentcompError(f"--n must be at least 1; got {n}")
    if truncation is not None and not 0 < truncation <= 1:
        raise LatentcompError(f"--truncation must be in (0, 1]; got {truncation}")
    if n > MAX_SAMPLE_PIXELS:  # not even 1-pixel images would fit: refused before anything loads
        raise LatentcompError(f"--n {n} is more images than one grid can hold")
    G = load_generator(spec, device=device)
    r = int(G.resolution)
    if n * r * r > MAX_SAMPLE_PIXELS:
        raise LatentcompError(
            f"--n {n}: {n} images of {r}x{r} are {n * r * r:,} pixels, more than one grid may hold "
            f"({MAX_SAMPLE_PIXELS:,}); this generator allows --n up to {MAX_SAMPLE_PIXELS // (r * r)}"
        )
    if space not in G.latent_spaces:
        raise LatentcompError(
            f"--space {space!r} is not offered by {spec}; accepted: {', '.join(G.latent_spaces)}"
        )
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        z = G.sample_latent(n, generator=g)
        if "w" in G.latent_spaces and (space != "z" or truncation is not None):
            w = G.mapping(z)
            if truncation is not None:
                w_avg = mean_latent(G, "w", seed=seed + 1)
                w = w_avg + truncation * (w - w_avg)
            latent = G.to_wplus(w, "w") if space == "w+" else w
            img = _generate(G, latent, "w+" if space == "w+" else "w")
        else:
            if truncation is not None:
                if G.prior != "normal":
                    raise LatentcompError(
                        f"--truncation needs a w space or a normal prior; {spec} has prior {G.prior!r}"
                    )
                z = z * truncation
            img = _generate(G, z, "z")
    if not torch.isfinite(img).all():
        raise LatentcompError(
            f"generator {spec} produced NaN or Inf pixels (are its weights damaged?); nothing written"
        )
    return img.clamp(-1, 1)


def _generate(G, latent: torch.Tensor, space: str) -> torch.Tensor:
    """G(latent) on the CPU as float32, CHUNK images per forward pass."""
    chunks = [G(latent[i : i + CHUNK], space=space).float().cpu() for i in range(0, len(latent), CHUNK)]
    return torch.cat(chunks)


def save_grid(images: torch.Tensor, out: str | Path, nrow: int | None = None) -> Path:
    """Write images in [-1, 1] as one PNG grid, atomically (temp file in the same folder, then os.replace)."""
    from torchvision.utils import save_image

    out = Path(out)
    nrow = nrow or max(1, math.ceil(math.sqrt(images.shape[0])))
    fmt = _SAVE_FORMAT.get(out.suffix.lower(), "PNG")  # the temp file's own suffix says nothing
    save = lambda tmp: save_image(  # noqa: E731
        images, tmp, nrow=nrow, normalize=True, value_range=(-1, 1), padding=2, format=fmt
    )
    return atomic_write(out, save)


def sample_cmd(
    generator: str = typer.Option(None, "--generator", "-g", help="generator spec, e.g. dcgan:netG.pth"),
    model: str = typer.Option(
        None, "--model", help="or a model (toyfaces, toyfaces-stylegan2, a regressor run): its generator"
    ),
    n: int = typer.Option(16, "--n", help="number of images"),
    seed: int = typer.Option(0, "--seed", min=0, max=2**63 - 1, help="random seed"),
    out: Path = typer.Option(Path("grid.png"), "--out", "-o", help="output PNG grid"),
    space: str = typer.Option("z", "--space", help="latent space to sample through: z, w or w+"),
    truncation: float = typer.Option(None, "--truncation", help="truncation psi in (0, 1]"),
    nrow: int = typer.Option(None, "--nrow", help="images per row (default: about sqrt(n))"),
    device: str = typer.Option(None, "--device", help="cpu or cuda (default: cuda when available)"),
) -> None:
    """Sample a grid of images from a generator spec or a model's generator (default: toyfaces)."""
    from ..pretrained import model_generator_spec

    if generator is not None and model is not None:
        raise LatentcompError("give --generator SPEC or --model NAME, not both")
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if nrow is not None and nrow < 1:
        raise LatentcompError(f"--nrow must be at least 1; got {nrow}")
    generator = generator or model_generator_spec(model or "toyfaces")
    images = sample_images(generator, n=n, seed=seed, space=space, truncation=truncation, device=device)
    path = save_grid(images, out, nrow=nrow)
    n_img, c, h, w = images.shape
    typer.echo(f"wrote {path} ({n_img} images, {c}x{h}x{w})")


def register(app) -> None:
    app.command("sample")(sample_cmd)
