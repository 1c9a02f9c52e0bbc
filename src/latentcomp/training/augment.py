"""Differentiable augmentation for GAN discriminators (the DiffAugment idea: Zhao et al., 2020).

D sees reals and fakes through the same random colour, translation and cutout transforms, and the
transforms are differentiable in the image, so G's gradient passes through them. This keeps D from
memorising a finite pool of training images. Written here because the transforms must also move a
per-pixel label map (the segmenting discriminator's targets) in step with the image, which the
augmentation libraries do not do for a batch of independent random shifts.
"""

from __future__ import annotations

import torch

from ..errors import LatentcompError

POLICIES = ("color", "translation", "cutout")
IGNORE = -100  # label of pixels an augmentation invented (padding, cutout): no segmentation target


def parse_policy(text: str) -> tuple[str, ...]:
    """'color,translation' -> ('color', 'translation'); '' -> ()."""
    names = tuple(p.strip() for p in str(text).split(",") if p.strip())
    unknown = [p for p in names if p not in POLICIES]
    if unknown:
        raise LatentcompError(
            f"augmentation {', '.join(unknown)!r} is unknown; accepted: {', '.join(POLICIES)} "
            "(comma-separated), or empty for none"
        )
    return names


def augment(
    x: torch.Tensor,
    policy: tuple[str, ...],
    labels: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Apply `policy` to images (N, C, H, W) in [-1, 1]; `labels` (N, H, W) long follow the geometry.

    color: brightness +-0.5, saturation x[0, 2], contrast x[0.5, 1.5]; translation: shift by up to 1/8
    of the size, padding with black (-1); cutout: a square of half the size set to 0.
    """
    n, _, h, w = x.shape
    dev = x.device

    def rand(*shape):
        return torch.rand(*shape, generator=generator).to(dev)

    if "color" in policy:
        x = x + (rand(n, 1, 1, 1) - 0.5)
        mean = x.mean(dim=1, keepdim=True)
        x = (x - mean) * (rand(n, 1, 1, 1) * 2) + mean
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * (rand(n, 1, 1, 1) + 0.5) + mean
    if "translation" in policy:
        sy, sx = h // 8, w // 8
        ty = (rand(n) * (2 * sy + 1)).long() - sy
        tx = (rand(n) * (2 * sx + 1)).long() - sx
        rows = (torch.arange(h, device=dev).view(1, h, 1) - ty.view(n, 1, 1)).expand(n, h, w)
        cols = (torch.arange(w, device=dev).view(1, 1, w) - tx.view(n, 1, 1)).expand(n, h, w)
        inside = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
        flat = (rows.clamp(0, h - 1) * w + cols.clamp(0, w - 1)).view(n, 1, h * w)
        shifted = x.flatten(2).gather(2, flat.expand(-1, x.shape[1], -1)).view_as(x)
        x = torch.where(inside.unsqueeze(1), shifted, torch.full_like(shifted, -1.0))
        if labels is not None:
            moved = labels.flatten(1).gather(1, flat.view(n, h * w)).view(n, h, w)
            labels = torch.where(inside, moved, torch.full_like(moved, IGNORE))
    if "cutout" in policy:
        ch, cw = h // 2, w // 2
        top = (rand(n) * h).long().view(n, 1, 1) - ch // 2  # centre anywhere, square may leave the image
        left = (rand(n) * w).long().view(n, 1, 1) - cw // 2
        ys = torch.arange(h, device=dev).view(1, h, 1)
        xs = torch.arange(w, device=dev).view(1, 1, w)
        cut = (ys >= top) & (ys < top + ch) & (xs >= left) & (xs < left + cw)
        x = x * (~cut).unsqueeze(1).to(x.dtype)
        if labels is not None:
            labels = labels.masked_fill(cut, IGNORE)
    return x, labels
