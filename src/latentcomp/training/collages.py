"""Automatic collages for collage-aware regressor training (`latentcomp regressor train --collage-fraction`).

A collage row is made of 2-4 fresh generator samples pasted in order (later on top), like the collages the
regressor meets in use:
- "parts": every part of the part maps (toyfaces: background, skin, hair, eyes, ...; from the analyzer,
  which reads part maps off generator samples) is taken from one of the sources, each source giving at
  least one part; parts are pasted in part order, as the automatic evaluation collages are
  (`edit/autocollage.py`). The known region is the union of the pasted parts.
- "noise": each source contributes the pixels under its own mask from the paper's sampler (upsampled 6x6
  noise, a per-collage cutoff); the known region is the union of those masks.

There is no ground-truth latent for a collage, so the trainer puts only the image loss on these rows, and
only on their known pixels.

Randomness: one draw per global batch from the step's generator, whatever the number of processes, as
for the rest of the batch (each process builds only its own rows).
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import LatentcompError
from ..masks import noise_masks

COLLAGE_KINDS = ("auto", "parts", "noise")
MIN_SOURCES, MAX_SOURCES = 2, 4


def resolve_collage_kind(kind: str, generator) -> str:
    """"auto" -> "parts" for toyfaces generators (3 channels; the analyzer reads their samples), else
    "noise"."""
    if kind not in COLLAGE_KINDS:
        raise LatentcompError(f"unknown --collage-masks {kind!r}; accepted: {', '.join(COLLAGE_KINDS)}")
    if kind != "auto":
        return kind
    spec = str(getattr(generator, "spec", "") or "")
    return "parts" if "toyfaces" in spec and int(generator.channels) == 3 else "noise"


def collage_rows(n_global: int, fraction: float, g: torch.Generator) -> torch.Tensor:
    """(n_global,) bool: the rows of the global batch that become collages, round(fraction * n) of them."""
    k = int(round(fraction * n_global))
    if fraction > 0 and k == 0:
        k = 1  # a small batch still sees collages
    sel = torch.zeros(n_global, dtype=torch.bool)
    sel[torch.randperm(n_global, generator=g)[:k]] = True
    return sel


@torch.no_grad()
def make_training_collages(
    G,
    n_global: int,
    rows: torch.Tensor,
    g: torch.Generator,
    kind: str,
    analyzer=None,
    device: torch.device | str = "cpu",
    sample=None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Collages for the global rows `rows` (a list of indices into the global batch of n_global).

    Returns (collage (R, C, H, W) with hidden pixels 0, known (R, 1, H, W), n_sources (R,)). All random
    numbers are drawn for the whole global batch, so a row's collage does not depend on which process
    builds it. `sample(z)` renders latents (default: G(z)); `kind` is "parts" (needs `analyzer`) or
    "noise"."""
    if kind not in ("parts", "noise"):
        raise LatentcompError(f"collage kind must be parts or noise; got {kind!r}")
    res = int(G.resolution)
    z = G.sample_latent(n_global * MAX_SOURCES, generator=g)
    n_src = torch.randint(MIN_SOURCES, MAX_SOURCES + 1, (n_global,), generator=g)
    seeds = torch.randint(0, 2**31 - 1, (n_global,), generator=g)
    noise = noise_masks(n_global * MAX_SOURCES, res, generator=g) if kind == "noise" else None
    rows = torch.as_tensor(rows, dtype=torch.long).flatten()
    r = rows.numel()
    if r == 0:
        empty = torch.zeros(0, int(G.channels), res, res, device=device)
        return empty, empty[:, :1], n_src[:0]
    idx = (rows.unsqueeze(1) * MAX_SOURCES + torch.arange(MAX_SOURCES)).flatten()
    k = n_src[rows]
    used = (torch.arange(MAX_SOURCES).unsqueeze(0) < k.unsqueeze(1)).flatten()  # slots a collage uses
    zz = z[idx[used]].to(device)
    rendered = (sample(zz) if sample is not None else G(zz, space="z")).clamp(-1, 1)
    images = torch.zeros(r * MAX_SOURCES, *rendered.shape[1:], device=device, dtype=rendered.dtype)
    images[used.to(device)] = rendered  # unused slots stay empty (never pasted)
    images = images.view(r, MAX_SOURCES, *rendered.shape[1:])
    if kind == "noise":
        masks = noise[idx].view(r, MAX_SOURCES, 1, res, res).to(device)
    else:
        if analyzer is None:
            raise LatentcompError("part collages need the part analyzer (--part-analyzer)")
        pmaps = torch.full((r * MAX_SOURCES, res, res), -1, dtype=torch.long, device=device)
        pmaps[used.to(device)] = analyzer.predict(rendered, logits=False).partmap.to(device).long()
        pmaps = pmaps.view(r, MAX_SOURCES, res, res)
        n_parts = len(getattr(analyzer, "part_names", ())) or int(pmaps.max()) + 1
        return _paste_parts(images, pmaps, k, seeds[rows], n_parts)
    slot = torch.arange(MAX_SOURCES, device=device).view(1, MAX_SOURCES, 1, 1, 1)
    masks = masks * (slot < k.to(device).view(r, 1, 1, 1, 1)).float()
    collage = torch.zeros_like(images[:, 0])
    known = torch.zeros_like(masks[:, 0])
    for s in range(MAX_SOURCES):
        m = masks[:, s]
        collage = images[:, s] * m + collage * (1 - m)
        known = torch.maximum(known, m)
    _fill_empty(collage, known, images)
    return collage, known, k


def _assign_parts(n_parts: int, k: int, seed: int) -> list[int]:
    """The source slot of every part: a random permutation gives each of the k sources one part, the rest
    are spread at random (as in the evaluation collages)."""
    rng = np.random.default_rng(seed)
    k = min(k, n_parts)  # more sources than parts: the extra ones give nothing
    order = rng.permutation(n_parts)
    a = np.empty(n_parts, dtype=np.int64)
    a[order[:k]] = rng.permutation(k)
    a[order[k:]] = rng.integers(0, k, size=n_parts - k)
    return a.tolist()


def _paste_parts(images, pmaps, k, seeds, n_parts):
    """Parts pasted in part order (a later part lies on top), each from its assigned source."""
    r = images.shape[0]
    collage = torch.zeros_like(images[:, 0])
    known = torch.zeros_like(images[:, 0, :1])
    for i in range(r):
        assign = _assign_parts(n_parts, int(k[i]), int(seeds[i]))
        for p, s in enumerate(assign):
            m = (pmaps[i, s] == p).float().unsqueeze(0)
            collage[i] = images[i, s] * m + collage[i] * (1 - m)
            known[i] = torch.maximum(known[i], m)
    _fill_empty(collage, known, images)
    return collage, known, k


def _fill_empty(collage: torch.Tensor, known: torch.Tensor, images: torch.Tensor) -> None:
    """A collage with no known pixel (all its parts missing from their sources' part maps) becomes its first
    source, whole, so that every row carries a loss."""
    empty = known.flatten(1).sum(1) == 0
    if empty.any():
        collage[empty] = images[empty, 0]
        known[empty] = 1.0
