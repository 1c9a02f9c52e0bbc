"""Reconstruction error on the known pixels only: masked L1 and masked LPIPS.

Images are float (N, C, H, W) in [-1, 1]; masks (N, 1, H, W) or (1, 1, H, W) in {0, 1}, 1 = known pixel
(a mask of None counts every pixel). Both return one value per image, (N,).

- `masked_l1(a, b, m)`: sum over known pixels and channels of |a - b|, divided by (known pixels x C).
  An image with no known pixel gets NaN (nothing to compare), never a silent 0. The one masked L1 of the
  package: the optimisation objective (`edit.refine`) and every reported known-pixel error use it.
- `masked_lpips(a, b, m, net="alex")`: LPIPS(a * m, b * m): hidden pixels are set to 0 (mid-grey) in both
  images, so they add no difference and the network sees the same surround in both; as in the authors'
  evaluation. The backbone (AlexNet / VGG16 ImageNet weights) comes from a path you give or the torch hub
  cache (`latentcomp.losses`); nothing downloads, and a missing file is a `LatentcompError` that says
  which file to put where.
"""

from __future__ import annotations

import math

import torch

from ..errors import LatentcompError

LPIPS_NETS = ("alex", "vgg")


def _check_pair(a: torch.Tensor, b: torch.Tensor, what: str = "images") -> None:
    for name, t in (("first", a), ("second", b)):
        if not isinstance(t, torch.Tensor) or t.dim() != 4:
            got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise LatentcompError(f"{what}: the {name} batch must be a tensor (N, C, H, W); got {got}")
    if a.shape != b.shape:
        raise LatentcompError(f"{what}: shapes differ, {tuple(a.shape)} vs {tuple(b.shape)}")


def _mask_like(m: torch.Tensor | None, a: torch.Tensor) -> torch.Tensor:
    if m is None:
        return torch.ones_like(a[:, :1])
    if not isinstance(m, torch.Tensor):
        raise LatentcompError(f"mask must be a tensor (N, 1, H, W) in {{0, 1}}; got {type(m).__name__}")
    if m.dim() == 3:
        m = m.unsqueeze(1)
    if m.dim() != 4 or m.shape[1] != 1 or tuple(m.shape[-2:]) != tuple(a.shape[-2:]):
        raise LatentcompError(
            f"mask has shape {tuple(m.shape)}; expected (N, 1, {a.shape[-2]}, {a.shape[-1]}) for images "
            f"{tuple(a.shape)}"
        )
    if m.shape[0] not in (1, a.shape[0]):
        raise LatentcompError(f"mask has a batch of {m.shape[0]}, the images {a.shape[0]}")
    return m.to(a.device, a.dtype).expand(a.shape[0], 1, *a.shape[-2:])


def masked_l1(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Mean |a - b| over the known pixels (mask = 1) and channels, per image (N,); NaN where none is known."""
    _check_pair(a, b, "masked L1")
    m = _mask_like(mask, a)
    num = ((a.float() - b.float()).abs() * m).flatten(1).sum(1)
    count = m.flatten(1).sum(1) * a.shape[1]
    return torch.where(count > 0, num / count.clamp(min=1), torch.full_like(num, math.nan))


_LPIPS_CACHE: dict[tuple, object] = {}


def load_masked_lpips(net: str = "alex", weights: str | None = None, device: str | torch.device = "cpu"):
    """The LPIPS-`net` module (cached per net, weights path and device). Raises LatentcompError where the
    backbone weights are not local."""
    if net not in LPIPS_NETS:
        raise LatentcompError(f"unknown LPIPS network {net!r}; accepted: {', '.join(LPIPS_NETS)}")
    key = (net, str(weights), str(torch.device(device)))
    if key not in _LPIPS_CACHE:
        try:
            from ..losses import find_lpips_backbone, load_lpips
        except ImportError as e:  # pragma: no cover - losses ships with the package
            raise LatentcompError(f"masked LPIPS needs latentcomp.losses ({e})") from e
        find_lpips_backbone(net, weights)  # fails fast, before the slow lpips import, where nothing is local
        _LPIPS_CACHE[key] = load_lpips(net, weights=weights, device=device)
    return _LPIPS_CACHE[key]


def lpips_available(net: str = "alex", weights: str | None = None) -> bool:
    """Whether LPIPS-`net` can be built without a download."""
    try:
        from ..losses import find_lpips_backbone

        find_lpips_backbone(net, weights)
        return True
    except (ImportError, LatentcompError):
        return False


@torch.no_grad()
def masked_lpips(
    a: torch.Tensor,
    b: torch.Tensor,
    mask: torch.Tensor | None = None,
    net: str = "alex",
    weights: str | None = None,
    batch_size: int = 64,
) -> torch.Tensor:
    """LPIPS-`net` between a * m and b * m, per image (N,), in batches. 1- or 3-channel images."""
    _check_pair(a, b, "masked LPIPS")
    m = _mask_like(mask, a)
    model = load_masked_lpips(net, weights, a.device)
    out = []
    for i in range(0, a.shape[0], batch_size):
        mi = m[i : i + batch_size]
        out.append(model(a[i : i + batch_size].float() * mi, b[i : i + batch_size].float() * mi).float())
    return torch.cat(out) if out else torch.zeros(0)
