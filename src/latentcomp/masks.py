"""Masks for regressor training and the RGBM input.

Convention: masks are float32 (N, 1, H, W) in {0, 1}, 1 = known pixel. Every sampler takes a
`torch.Generator` (drawn on the CPU, so the same seed gives the same masks on every device) and
returns masks on `device`.

- `noise_masks`: the paper's sampler. Per sample a `grid x grid` (6 x 6) U(0, 1) field is bilinearly
  upsampled to H x W; a pixel is known where the field is below a cutoff drawn from U(0.3, 1.0) once
  per batch. Bilinear interpolation pulls values towards 0.5, so the mean known fraction for cutoff c
  is 0.5 at c = 0.5 but below c for c < 0.5 and above c for c > 0.5 (measured, 32 x 32: c = 0.3 ->
  0.19, 0.7 -> 0.81, 0.9 -> 0.98); `exact_fraction=True` makes it exactly c per sample.
- `rect_masks`: one random known rectangle per sample.
- `part_masks`: from a part map (N, H, W) of class ids, a random subset of the parts present is known.
- `with_unmasked`: makes a random fraction of the masks fully known.
- `make_rgbm(x, m)`: the regressor input `cat([x * m, m])`; hidden pixels are 0 (mid-grey).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .errors import LatentcompError

MASK_KINDS = ("noise", "rect", "parts", "none")
MAX_PARTS = 64

Size = int | tuple[int, int]


def _hw(size: Size) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


def _cpu_generator(generator: torch.Generator | None) -> torch.Generator | None:
    if generator is not None and generator.device.type != "cpu":
        raise LatentcompError("mask samplers take a CPU torch.Generator (masks are drawn on the CPU)")
    return generator


def noise_masks(
    n: int,
    size: Size,
    *,
    generator: torch.Generator | None = None,
    cutoff: float | None = None,
    cutoff_range: tuple[float, float] = (0.3, 1.0),
    grid: int = 6,
    exact_fraction: bool = False,
    rows: slice | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """The paper's mask sampler: upsampled 6x6 uniform noise, known where below a per-batch cutoff.

    `cutoff` fixes the threshold; otherwise it is drawn once for the whole batch from
    U(cutoff_range). With `exact_fraction=True` each sample is thresholded at its own c-quantile, so
    that exactly a fraction c of its pixels is known (the paper thresholds the field at c directly).
    `rows` returns only those rows of the n drawn masks (the random numbers of the whole batch are
    drawn either way; used to give each process its slice of one global batch).
    Returns (n, 1, H, W) float32 in {0, 1}.
    """
    generator = _cpu_generator(generator)
    h, w = _hw(size)
    if cutoff is None:
        lo, hi = cutoff_range
        cutoff = lo + (hi - lo) * float(torch.rand((), generator=generator))
    field = torch.rand((n, 1, grid, grid), generator=generator)
    if rows is not None:
        field = field[rows]
    field = F.interpolate(field, size=(h, w), mode="bilinear", align_corners=False)
    if exact_fraction:
        k = int(round(cutoff * h * w))
        ranks = field.flatten(1).argsort(dim=1).argsort(dim=1).view_as(field)
        m = (ranks < k).float()
    else:
        m = (field < cutoff).float()
    return m.to(device) if device is not None else m


def rect_masks(
    n: int,
    size: Size,
    *,
    generator: torch.Generator | None = None,
    min_frac: float = 0.25,
    max_frac: float = 0.9,
    rows: slice | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """One known axis-aligned rectangle per sample; side lengths ~ U(min_frac, max_frac) of the image."""
    generator = _cpu_generator(generator)
    h, w = _hw(size)
    u = torch.rand((n, 4), generator=generator)
    if rows is not None:
        u = u[rows]
        n = u.shape[0]
    rh = (min_frac + (max_frac - min_frac) * u[:, 0]) * h
    rw = (min_frac + (max_frac - min_frac) * u[:, 1]) * w
    top = (u[:, 2] * (h - rh)).floor()
    left = (u[:, 3] * (w - rw)).floor()
    bottom = top + rh.round().clamp(min=1)
    right = left + rw.round().clamp(min=1)
    ys = torch.arange(h, dtype=torch.float32).view(1, h, 1)
    xs = torch.arange(w, dtype=torch.float32).view(1, 1, w)
    inside = (
        (ys >= top.view(n, 1, 1))
        & (ys < bottom.view(n, 1, 1))
        & (xs >= left.view(n, 1, 1))
        & (xs < right.view(n, 1, 1))
    )
    m = inside.float().unsqueeze(1)
    return m.to(device) if device is not None else m


def part_masks(
    partmaps: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
    keep_prob: float = 0.5,
    num_parts: int | None = None,
    uniforms: torch.Tensor | None = None,
) -> torch.Tensor:
    """Known = a random subset of the parts present in each part map (N, H, W) of class ids.

    Each part present is kept with probability `keep_prob`; at least one part is always kept.
    `uniforms` (N, num_parts) in [0, 1) may be passed instead of a generator (used to draw the random
    numbers for a whole global batch and slice them per process). Returns (N, 1, H, W) float32 on the
    part maps' device.
    """
    if partmaps.dim() != 3:
        raise LatentcompError(f"part maps must have shape (N, H, W); got {tuple(partmaps.shape)}")
    partmaps = partmaps.long()
    n = partmaps.shape[0]
    if num_parts is None:
        num_parts = int(partmaps.max().item()) + 1 if partmaps.numel() else 1
    if uniforms is None:
        uniforms = torch.rand((n, num_parts), generator=_cpu_generator(generator))
    if uniforms.shape[0] != n or uniforms.shape[1] < num_parts:
        raise LatentcompError(f"uniforms must have shape ({n}, >={num_parts}); got {tuple(uniforms.shape)}")
    uniforms = uniforms[:, :num_parts].to(partmaps.device)
    onehot = F.one_hot(partmaps.clamp(0, num_parts - 1), num_parts)  # (N, H, W, P)
    present = onehot.flatten(1, 2).any(dim=1)  # (N, P)
    keep = (uniforms < keep_prob) & present
    # guarantee one known part: the present part with the smallest draw
    none_kept = ~keep.any(dim=1)
    if none_kept.any():
        first = torch.where(present, uniforms, torch.full_like(uniforms, 2.0)).argmin(dim=1)
        keep[none_kept, first[none_kept]] = True
    known = torch.gather(keep, 1, partmaps.flatten(1).clamp(0, num_parts - 1)).view_as(partmaps)
    return known.float().unsqueeze(1)


def with_unmasked(
    masks: torch.Tensor,
    fraction: float,
    *,
    generator: torch.Generator | None = None,
    draws: torch.Tensor | None = None,
) -> torch.Tensor:
    """Replace a random `fraction` of the masks by all-ones (fully known) masks.

    `draws` (N,) in [0, 1) may be passed instead of a generator.
    """
    if not 0.0 <= fraction <= 1.0:
        raise LatentcompError(f"unmasked fraction must be in [0, 1]; got {fraction}")
    if fraction == 0.0:
        return masks
    if draws is None:
        draws = torch.rand((masks.shape[0],), generator=_cpu_generator(generator))
    full = (draws < fraction).to(masks.device).view(-1, 1, 1, 1)
    return torch.where(full, torch.ones_like(masks), masks)


def make_rgbm(x: torch.Tensor, m: torch.Tensor | None = None) -> torch.Tensor:
    """The regressor input: `cat([x * m, m], dim=1)`, (N, C+1, H, W). `m=None` means all pixels known."""
    if x.dim() != 4:
        raise LatentcompError(f"images must have shape (N, C, H, W); got {tuple(x.shape)}")
    if m is None:
        m = torch.ones_like(x[:, :1])
    m = check_mask(m, x)
    return torch.cat([x * m, m], dim=1)


def check_mask(m: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Validate a mask against images x and return it as (N, 1, H, W) float on x's device."""
    if m.dim() == 3:
        m = m.unsqueeze(1)
    if m.dim() != 4 or m.shape[1] != 1:
        raise LatentcompError(f"mask must have shape (N, 1, H, W); got {tuple(m.shape)}")
    if m.shape[-2:] != x.shape[-2:]:
        raise LatentcompError(
            f"mask size {tuple(m.shape[-2:])} does not match image size {tuple(x.shape[-2:])}"
        )
    if m.shape[0] != x.shape[0]:
        if m.shape[0] == 1:
            m = m.expand(x.shape[0], -1, -1, -1)
        else:
            raise LatentcompError(f"{m.shape[0]} masks for {x.shape[0]} images; give one or one per image")
    return m.to(device=x.device, dtype=x.dtype)


class MaskSampler:
    """Draws training masks of one kind for a batch: `sampler(n, size, generator, partmaps=None)`.

    kind: "noise" (the paper's sampler, default), "rect", "parts" (needs part maps) or "none" (all
    known). `unmasked_fraction` of the masks are then made fully known.
    """

    def __init__(self, kind: str = "noise", unmasked_fraction: float = 0.0, **options):
        if kind not in MASK_KINDS:
            raise LatentcompError(f"unknown mask kind {kind!r}; accepted: {', '.join(MASK_KINDS)}")
        if not 0.0 <= unmasked_fraction <= 1.0:
            raise LatentcompError(f"unmasked fraction must be in [0, 1]; got {unmasked_fraction}")
        self.kind = kind
        self.unmasked_fraction = float(unmasked_fraction)
        self.options = options

    @property
    def needs_parts(self) -> bool:
        return self.kind == "parts"

    def __call__(
        self,
        n: int,
        size: Size,
        generator: torch.Generator | None = None,
        partmaps: torch.Tensor | None = None,
        rows: slice | None = None,
    ) -> torch.Tensor:
        """Masks for a batch of n, on the CPU. With `rows`, the random numbers of all n are drawn and
        only those rows are returned (`partmaps` then holds the part maps of those rows only)."""
        h, w = _hw(size)
        sel = rows if rows is not None else slice(None)
        if self.kind == "noise":
            m = noise_masks(n, (h, w), generator=generator, rows=rows, **self.options)
        elif self.kind == "rect":
            m = rect_masks(n, (h, w), generator=generator, rows=rows, **self.options)
        elif self.kind == "parts":
            u = torch.rand((n, MAX_PARTS), generator=_cpu_generator(generator))[sel]
            if partmaps is None:
                raise LatentcompError("mask kind 'parts' needs part maps (N, H, W)")
            num_parts = int(partmaps.max().item()) + 1
            if num_parts > MAX_PARTS:
                raise LatentcompError(
                    f"part maps hold {num_parts} classes; at most {MAX_PARTS} are supported"
                )
            m = part_masks(partmaps.cpu(), uniforms=u, num_parts=num_parts, **self.options)
        else:
            m = torch.ones((len(range(n)[sel]), 1, h, w))
        if self.unmasked_fraction > 0:
            draws = torch.rand((n,), generator=_cpu_generator(generator))[sel]
            m = with_unmasked(m, self.unmasked_fraction, draws=draws)
        return m


# ---------------------------------------------------------------- masks a user asks for by hand


def box_mask(size: Size, box: tuple[int, int, int, int]) -> torch.Tensor:
    """(1, 1, H, W): known inside the pixel box (left, top, right, bottom), right and bottom exclusive."""
    h, w = _hw(size)
    left, top, right, bottom = (int(v) for v in box)
    if not (0 <= left < right <= w and 0 <= top < bottom <= h):
        raise LatentcompError(
            f"rectangle {left},{top},{right},{bottom} does not fit a {w}x{h} image; expected "
            f"0 <= LEFT < RIGHT <= {w} and 0 <= TOP < BOTTOM <= {h}"
        )
    m = torch.zeros(1, 1, h, w)
    m[..., top:bottom, left:right] = 1
    return m


def parts_mask(partmap: torch.Tensor, parts, names: list[str] | None = None) -> torch.Tensor:
    """(1, 1, H, W): known where the part map (H, W) of ids shows one of `parts` (ids, or names looked up
    in `names`, e.g. toyfaces' PARTS)."""
    ids = []
    for p in parts:
        if isinstance(p, str) and not p.isdigit():
            if names is None or p not in names:
                raise LatentcompError(f"unknown part {p!r}; accepted: {', '.join(names or [])}")
            ids.append(names.index(p))
        else:
            ids.append(int(p))
    return torch.isin(partmap.long(), torch.tensor(ids)).float()[None, None]


def threshold_mask(image: torch.Tensor, level: float = 0.5) -> torch.Tensor:
    """(N, 1, H, W): known where an image (N, C, H, W) in [-1, 1] is at least `level` bright (0 = black,
    1 = white; the mean over channels). Paint white over what to keep in any image editor, then threshold."""
    if not 0 <= level <= 1:
        raise LatentcompError(f"threshold level must be in [0, 1]; got {level}")
    return ((image.float().mean(1, keepdim=True) + 1) / 2 >= level).float()
