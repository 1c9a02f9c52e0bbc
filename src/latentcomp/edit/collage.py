"""Collages: paste parts of several images into one image and a mask of the known pixels.

All inputs are tensors: images (C, H, W) or (N, C, H, W) in [-1, 1], masks (H, W), (1, H, W) or
(N, 1, H, W) with 1 = known. A batch of one broadcasts against larger batches. Validation errors are
`LatentcompError`s that name the offending input.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..errors import LatentcompError


def as_image_batch(x, name: str = "image", channels: int | None = None, resolution: int | None = None):
    """Validate and return a float (N, C, H, W) tensor."""
    if not isinstance(x, torch.Tensor):
        raise LatentcompError(
            f"{name} must be a torch.Tensor (N, C, H, W) in [-1, 1]; got {type(x).__name__}"
        )
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4:
        raise LatentcompError(f"{name} has shape {tuple(x.shape)}; expected (C, H, W) or (N, C, H, W)")
    if x.numel() == 0:
        raise LatentcompError(f"{name} has shape {tuple(x.shape)}: an empty batch or a zero-sized image")
    x = x.float()
    if not torch.isfinite(x).all():
        raise LatentcompError(f"{name} contains NaN or Inf values")
    lo, hi = (x.min().item(), x.max().item()) if x.numel() else (0.0, 0.0)
    if lo < -1.001 or hi > 1.001:  # e.g. uint8 0..255 passed unconverted: refuse rather than guess
        raise LatentcompError(
            f"{name} has values in [{lo:.3g}, {hi:.3g}]; expected floats in [-1, 1] "
            "(convert uint8 images with x / 127.5 - 1, or load files with latentcomp.io.load_image)"
        )
    x = x.clamp(-1, 1)
    if channels is not None and x.shape[1] != channels:
        raise LatentcompError(f"{name} has {x.shape[1]} channels; the model expects {channels}")
    if resolution is not None and tuple(x.shape[-2:]) != (resolution, resolution):
        raise LatentcompError(
            f"{name} is {x.shape[-1]}x{x.shape[-2]}; the model expects {resolution}x{resolution} "
            "(latentcomp.io.load_image(path, size=...) resizes files)"
        )
    return x


def as_mask_batch(m, name: str = "mask", like: torch.Tensor | None = None, allow_empty: bool = False):
    """Validate and return a float (N, 1, H, W) mask in {0, 1} (values >= 0.5 count as known)."""
    if not isinstance(m, torch.Tensor):
        raise LatentcompError(
            f"{name} must be a torch.Tensor (N, 1, H, W) in {{0, 1}}; got {type(m).__name__}"
        )
    if m.dim() == 2:
        m = m[None, None]
    elif m.dim() == 3:
        m = m.unsqueeze(1)  # (1, H, W) or (N, H, W)
    if m.dim() != 4 or m.shape[1] != 1:
        raise LatentcompError(
            f"{name} has shape {tuple(m.shape)}; expected (H, W), (1, H, W) or (N, 1, H, W)"
        )
    if m.numel() == 0:
        raise LatentcompError(f"{name} has shape {tuple(m.shape)}: an empty batch or a zero-sized mask")
    m = m.float()
    if not torch.isfinite(m).all():
        raise LatentcompError(f"{name} contains NaN or Inf values")
    if like is not None:
        if tuple(m.shape[-2:]) != tuple(like.shape[-2:]):
            raise LatentcompError(
                f"{name} is {m.shape[-1]}x{m.shape[-2]} but its image is {like.shape[-1]}x{like.shape[-2]}; "
                "a mask must have its image's size"
            )
        if m.shape[0] not in (1, like.shape[0]) and like.shape[0] != 1:
            raise LatentcompError(f"{name} has a batch of {m.shape[0]}, its image a batch of {like.shape[0]}")
    m = (m >= 0.5).float()
    if not allow_empty:
        empty = m.flatten(1).sum(1) == 0
        if empty.any():
            i = int(empty.nonzero()[0])
            raise LatentcompError(
                f"{name} (batch item {i}) has no known pixels; 1 (white) marks the pixels to keep"
            )
    return m


def _broadcast(tensors: Sequence[torch.Tensor], what: str) -> int:
    sizes = {t.shape[0] for t in tensors}
    if len(sizes - {1}) > 1:
        raise LatentcompError(f"{what} have different batch sizes {sorted(sizes)}; use equal sizes or 1")
    return max(sizes)


def make_collage(
    images: Sequence[torch.Tensor] | torch.Tensor,
    masks: Sequence[torch.Tensor | None] | None = None,
    channels: int | None = None,
    resolution: int | None = None,
    allow_empty_parts: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    """Paste parts in order (later parts on top) -> (collage (N,C,H,W), known mask (N,1,H,W), part masks).

    A part whose mask is None contributes its whole image. Hidden pixels of the collage are 0. The
    returned part masks are the visible share of each part after the later ones were pasted. An empty
    part mask is an error unless `allow_empty_parts` (automatic collages); an empty union always is.
    """
    if isinstance(images, torch.Tensor):
        images = [images]
    images = list(images)
    if not images:
        raise LatentcompError("compose needs at least one part (an image and optionally its mask)")
    masks = list(masks) if masks is not None else [None] * len(images)
    if len(masks) != len(images):
        raise LatentcompError(
            f"got {len(images)} part images but {len(masks)} masks; give one mask (or None) each"
        )
    imgs = [as_image_batch(x, f"part {i} image", channels, resolution) for i, x in enumerate(images)]
    ref = imgs[0]
    for i, x in enumerate(imgs[1:], 1):
        if x.shape[1:] != ref.shape[1:]:
            raise LatentcompError(
                f"part {i} image has shape {tuple(x.shape[1:])}, part 0 has {tuple(ref.shape[1:])}; "
                "all parts must have the same size"
            )
    ms = [
        torch.ones_like(x[:, :1])
        if m is None
        else as_mask_batch(m, f"part {i} mask", like=x, allow_empty=allow_empty_parts)
        for i, (x, m) in enumerate(zip(imgs, masks, strict=True))
    ]
    n = _broadcast(imgs + ms, "parts and masks")
    device = ref.device
    collage = torch.zeros(n, *ref.shape[1:], device=device)
    known = torch.zeros(n, 1, *ref.shape[2:], device=device)
    visible = []
    for x, m in zip(imgs, ms, strict=True):
        x, m = x.to(device).expand(n, *x.shape[1:]), m.to(device).expand(n, *m.shape[1:])
        collage = x * m + collage * (1 - m)
        known = torch.maximum(known, m)
        visible = [v * (1 - m) for v in visible] + [m.clone()]
    empty = known.flatten(1).sum(1) == 0
    if empty.any():
        raise LatentcompError(
            f"collage {int(empty.nonzero()[0])} has no known pixels: every part mask is empty"
        )
    return collage, known, visible


def paste_back(output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Keep the known pixels of `target` exactly; take the rest from `output`."""
    return target * mask + output * (1 - mask)
