"""Move latents along a direction and render the result; edit real images (or collages) through the
regressor: invert (optionally refine), move, generate.

    lat2, space2 = move(G, lat, "w+", d, strength=3, layers=[0, 1, 2, 3])
    strip = edit_strip(G, lat, "z", d, [-3, -1.5, 0, 1.5, 3])          # (N, S, C, H, W)
    res = navigate(pipe, image, mask, d, strengths=[0, 2, 4])          # NavigateResult
    res = navigate(pipe, [img_a, img_b], [mask_a, mask_b], d, [3])     # a collage: compose, then move
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..errors import LatentcompError
from .directions import Direction, format_layers, parse_layers


def _step(G, direction: Direction, strength: float, units: str) -> torch.Tensor:
    if units not in ("std", "raw"):
        raise LatentcompError(f"strength units {units!r} not accepted; expected std or raw")
    scale = float(strength) * (direction.std if units == "std" else 1.0)
    return direction.vector.to(G.device) * scale


def move(
    G,
    latent: torch.Tensor,
    space: str,
    direction: Direction,
    strength: float,
    layers: Sequence[int] | str | None = None,
    units: str = "std",
) -> tuple[torch.Tensor, str]:
    """Add `strength` x `direction` to latents (N, ...) given in `space`; returns (latent, its space).

    strength is in standard deviations of G's latents along the direction (units="std", default) or in
    latent units ("raw"). `layers` (w+ rows, e.g. "0-3") overrides the direction's own layers; with layers
    the result is a w+ latent. A w / w+ direction moves a z latent after mapping it to w. A z direction
    cannot move a w latent (the mapping cannot be inverted)."""
    latent = latent.to(G.device)
    rows = (
        parse_layers(layers, getattr(G, "num_ws", None) or None) if layers is not None else direction.layers
    )
    if direction.space == "z":
        if space != "z":
            raise LatentcompError(
                f"direction {direction.name!r} lives in z but the latent is in {space}; compute "
                f"directions in {space if space != 'w+' else 'w'} (latentcomp directions compute --space w)"
            )
        if rows is not None:
            raise LatentcompError("layers apply to w+ only; this direction lives in z")
        flat = latent.reshape(latent.shape[0], -1)
        if flat.shape[1] != direction.dim:
            raise LatentcompError(
                f"direction {direction.name!r} has {direction.dim} entries; z has {flat.shape[1]}"
            )
        return (flat + _step(G, direction, strength, units)).reshape(latent.shape), "z"
    if "w" not in G.latent_spaces:
        raise LatentcompError(
            f"direction {direction.name!r} lives in {direction.space} but the generator has no w space"
        )
    wshape = tuple(G.space_shape("w"))  # (D,), or (k, D) for a latent of k components (GANsformer)
    if direction.dim != math.prod(wshape):
        raise LatentcompError(
            f"direction {direction.name!r} has {direction.dim} entries; w has {math.prod(wshape)}"
        )
    if space == "z":
        with torch.no_grad():
            latent = G.mapping(latent)
        space = "w"
    step = _step(G, direction, strength, units).reshape(wshape)
    if rows is None:
        if space == "w+" and len(wshape) > 1:
            step = step.unsqueeze(-2)  # (k, 1, D): every row of every component
        return latent + step, space  # w: (N, D) + (D,); w+: (N, L, D) + (D,) moves every row
    if len(wshape) > 1:
        raise LatentcompError("layers apply to w+ of one w vector per image (StyleGAN), not to components")
    wp = G.to_wplus(latent, space).clone()
    if rows[-1] >= wp.shape[1]:
        raise LatentcompError(f"layers {format_layers(rows)} out of range; w+ has rows 0-{wp.shape[1] - 1}")
    wp[:, list(rows)] += step
    return wp, "w+"


@torch.no_grad()
def edit_strip(
    G,
    latent: torch.Tensor,
    space: str,
    direction: Direction,
    strengths: Sequence[float],
    layers: Sequence[int] | str | None = None,
    units: str = "std",
) -> torch.Tensor:
    """Images (N, S, C, H, W) in [-1, 1] of every latent moved by every strength (on the CPU)."""
    cols = []
    for s in strengths:
        lat, sp = move(G, latent, space, direction, s, layers, units)
        cols.append(G(lat, space=sp).clamp(-1, 1).cpu())
    return torch.stack(cols, 1)


def parse_strengths(spec: str | Sequence[float]) -> list[float]:
    """'-3,-1.5,0,1.5,3' -> [-3.0, -1.5, 0.0, 1.5, 3.0]."""
    if not isinstance(spec, str):
        return [float(s) for s in spec]
    try:
        vals = [float(s) for s in spec.replace(" ", "").split(",") if s]
    except ValueError:
        raise LatentcompError(
            f"strip {spec!r} not understood; expected numbers separated by commas, e.g. -3,0,3"
        ) from None
    if not vals:
        raise LatentcompError("strip needs at least one strength")
    return vals


@dataclass
class NavigateResult:
    images: torch.Tensor  # (N, S, C, H, W) one image per strength (CPU)
    strengths: list[float]
    latent: torch.Tensor  # (N, ...) the inverted (and refined) latent, in `space`
    space: str
    reconstruction: torch.Tensor  # (N, C, H, W) G(latent) before moving
    collage: torch.Tensor  # (N, C, H, W) what the regressor saw (hidden pixels 0)
    mask: torch.Tensor  # (N, 1, H, W)
    seconds: float

    @property
    def image(self) -> torch.Tensor:
        return self.images[:, 0]


def navigate(
    pipe,
    images: torch.Tensor | Sequence[torch.Tensor],
    masks: torch.Tensor | Sequence[torch.Tensor | None] | None,
    direction: Direction,
    strengths: float | Sequence[float] = 3.0,
    layers: Sequence[int] | str | None = None,
    refine: int = 0,
    units: str = "std",
    check_generator: bool = True,
    refine_method: str = "adam",
) -> NavigateResult:
    """Edit real images: invert with the pipeline's regressor (a list of images = the parts of a collage,
    composed first), optionally refine the latent for `refine` steps (`refine_method` adam, lbfgs or
    in-domain: the latter keeps the latent where the regressor lands, meant for editing), move along
    `direction` by each strength, generate."""
    t0 = time.perf_counter()
    if (
        check_generator
        and direction.generator
        and pipe.generator.spec
        and direction.generator != pipe.generator.spec
    ):
        from ..io import print_notice

        print_notice(
            f"direction {direction.name!r} was computed for {direction.generator}; the model's generator "
            f"is {pipe.generator.spec}"
        )
    strengths = [float(strengths)] if isinstance(strengths, int | float) else [float(s) for s in strengths]
    if isinstance(images, list | tuple) and len(images) > 1:
        res = pipe.compose(
            list(images),
            list(masks) if masks is not None else None,
            refine=refine,
            refine_method=refine_method,
        )
        latent, collage, mask = res.latent.to(pipe.device), res.collage, res.mask
    else:
        x = images[0] if isinstance(images, list | tuple) else images
        m = masks[0] if isinstance(masks, list | tuple) else masks
        res = pipe.compose([x], [m], refine=refine, refine_method=refine_method)
        latent, collage, mask = res.latent.to(pipe.device), res.collage, res.mask
    G = pipe.generator
    with torch.no_grad():
        recon = G(latent, space=pipe.space).clamp(-1, 1).cpu()
    imgs = edit_strip(G, latent, pipe.space, direction, strengths, layers, units)
    return NavigateResult(
        images=imgs,
        strengths=strengths,
        latent=latent.cpu(),
        space=pipe.space,
        reconstruction=recon,
        collage=collage,
        mask=mask,
        seconds=time.perf_counter() - t0,
    )


def strip_grid(rows: torch.Tensor, pad: int = 2, scale: int = 1) -> torch.Tensor:
    """(N, S, C, H, W) -> one image (C, H', W') with N rows of S columns on a white background."""
    from torchvision.utils import make_grid

    n, s = rows.shape[:2]
    grid = make_grid(rows.reshape(n * s, *rows.shape[2:]).float().cpu(), nrow=s, padding=pad, pad_value=1.0)
    if scale > 1:
        grid = torch.nn.functional.interpolate(grid[None], scale_factor=scale, mode="nearest")[0]
    return grid
