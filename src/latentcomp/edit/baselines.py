"""Non-GAN baselines: the raw collage and Poisson blending (OpenCV seamlessClone, NORMAL_CLONE).

Poisson follows the authors' evaluation: the first part's whole image is the base, every later part is
cloned onto the result in order, and parts covering less than 10% of the image are skipped. Unlike
their code, each part is cloned at its own place (the clone centre is its mask's bounding-box centre)
and the images are padded by reflection first, so parts touching the border are kept.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..extras import require
from .collage import as_image_batch, as_mask_batch, make_collage

MIN_PART_FRACTION = 0.1
_PAD = 4


def raw_collage(
    images: Sequence[torch.Tensor], masks: Sequence[torch.Tensor | None] | None = None
) -> torch.Tensor:
    """The collage itself (hidden pixels 0 = mid-grey)."""
    collage, _, _ = make_collage(images, masks)
    return collage


def _to_bgr(x: torch.Tensor) -> np.ndarray:
    arr = (
        ((x.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
    )
    if arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    return np.ascontiguousarray(arr[..., ::-1])


def _from_bgr(arr: np.ndarray, channels: int) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(arr[..., ::-1])).permute(2, 0, 1).float() / 127.5 - 1
    return t[:1] if channels == 1 else t


def poisson_blend(
    images: Sequence[torch.Tensor],
    masks: Sequence[torch.Tensor | None],
    min_fraction: float = MIN_PART_FRACTION,
) -> torch.Tensor:
    """Blend parts (images (N,C,H,W) each, masks (N,1,H,W) each) -> (N, C, H, W) in [-1, 1]."""
    cv2 = require("cv2", "Poisson blending")
    imgs = [as_image_batch(x, f"part {i} image") for i, x in enumerate(images)]
    ms = [
        torch.ones_like(x[:, :1])
        if m is None
        else as_mask_batch(m, f"part {i} mask", like=x, allow_empty=True)
        for i, (x, m) in enumerate(zip(imgs, masks, strict=True))
    ]
    n = max(t.shape[0] for t in imgs + ms)
    c = imgs[0].shape[1]
    out = []
    for b in range(n):
        base = _to_bgr(imgs[0][min(b, imgs[0].shape[0] - 1)])
        result = cv2.copyMakeBorder(base, _PAD, _PAD, _PAD, _PAD, cv2.BORDER_REFLECT)
        for x, m in zip(imgs[1:], ms[1:], strict=True):
            mask = m[min(b, m.shape[0] - 1), 0].cpu().numpy()
            if mask.mean() < min_fraction:
                continue
            src = cv2.copyMakeBorder(
                _to_bgr(x[min(b, x.shape[0] - 1)]), _PAD, _PAD, _PAD, _PAD, cv2.BORDER_REFLECT
            )
            mp = cv2.copyMakeBorder(
                (mask * 255).astype(np.uint8), _PAD, _PAD, _PAD, _PAD, cv2.BORDER_CONSTANT, value=0
            )
            bx, by, bw, bh = cv2.boundingRect(mp)
            result = cv2.seamlessClone(src, result, mp, (bx + bw // 2, by + bh // 2), cv2.NORMAL_CLONE)
        out.append(_from_bgr(result[_PAD:-_PAD, _PAD:-_PAD], c))
    return torch.stack(out).to(imgs[0].device)
