"""Precision, recall, density and coverage (Naeem et al. 2020), memory-safe for 50k points.

Definitions exactly as the `prdc` package (`prdc.compute_prdc`, k = 5 by default), with real features
R (n, D) and fake features F (m, D), d = Euclidean distance, r_R(i) = distance from R_i to its k-th
nearest other real point, r_F(j) likewise among fakes:

    precision = mean_j [ exists i: d(R_i, F_j) < r_R(i) ]
    recall    = mean_i [ exists j: d(R_i, F_j) < r_F(j) ]
    density   = (1 / k) mean_j #{ i: d(R_i, F_j) < r_R(i) }
    coverage  = mean_i [ min_j d(R_i, F_j) < r_R(i) ]

`prdc.compute_prdc` builds the full n x m (and n x n, m x m) distance matrices: 50k x 50k float64 is
20 GB. Here the distances are computed block by block (`chunk` x `chunk`, float64) and only what the
metrics need is kept: the running k+1 smallest distances per row for the radii (self included, as prdc
counts it), and per-point counts / flags / minima for the four metrics. Memory is O(chunk^2 + n k);
the result equals prdc's (a test checks it on small sets).
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import LatentcompError

DEFAULT_CHUNK = 2048


def _as_tensor(x, name: str, device=None) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor):
        x = torch.as_tensor(np.asarray(x))
    if x.dim() != 2:
        raise LatentcompError(f"{name} must be (N, D); got shape {tuple(x.shape)}")
    x = x.detach().to(device or x.device, torch.float64)
    if not torch.isfinite(x).all():
        raise LatentcompError(f"{name} contain NaN or Inf values")
    return x


def _block_dist(a: torch.Tensor, b: torch.Tensor, a_sq: torch.Tensor, b_sq: torch.Tensor) -> torch.Tensor:
    """Euclidean distances between rows of a and b via |a|^2 + |b|^2 - 2 a.b (float64), clipped at 0."""
    d2 = a_sq[:, None] + b_sq[None, :] - 2.0 * (a @ b.T)
    return d2.clamp_(min=0).sqrt_()


def knn_radii(x, k: int = 5, chunk: int = DEFAULT_CHUNK) -> torch.Tensor:
    """Distance from every point to its k-th nearest other point, (N,) float64, in blocks.

    Like prdc: the (k+1)-th smallest distance in the point's row, its own 0 distance included."""
    x = _as_tensor(x, "features")
    n = x.shape[0]
    if k < 1:
        raise LatentcompError(f"k must be at least 1; got {k}")
    if n < k + 1:
        raise LatentcompError(f"k-NN radii with k = {k} need at least {k + 1} points; got {n}")
    sq = (x * x).sum(1)
    out = torch.empty(n, dtype=torch.float64, device=x.device)
    for i in range(0, n, chunk):
        rows = x[i : i + chunk]
        best = None
        for j in range(0, n, chunk):
            d = _block_dist(rows, x[j : j + chunk], sq[i : i + chunk], sq[j : j + chunk])
            if i == j:  # the point itself: exactly 0, as a full distance matrix would have it
                d.fill_diagonal_(0.0)
            cand = d if best is None else torch.cat([best, d], 1)
            best = torch.topk(cand, min(k + 1, cand.shape[1]), dim=1, largest=False).values
        out[i : i + chunk] = best.max(1).values
    return out


def compute_prdc(real, fake, k: int = 5, chunk: int = DEFAULT_CHUNK, device=None) -> dict[str, float]:
    """{"precision", "recall", "density", "coverage"} of fake features against real features (module doc)."""
    r = _as_tensor(real, "real features", device)
    f = _as_tensor(fake, "fake features", r.device)
    if r.shape[1] != f.shape[1]:
        raise LatentcompError(f"real and fake features differ in dimension: {r.shape[1]} vs {f.shape[1]}")
    rad_r = knn_radii(r, k, chunk)
    rad_f = knn_radii(f, k, chunk)
    n, m = r.shape[0], f.shape[0]
    r_sq, f_sq = (r * r).sum(1), (f * f).sum(1)
    fake_count = torch.zeros(m, dtype=torch.float64, device=r.device)  # #reals whose ball holds F_j
    real_recalled = torch.zeros(n, dtype=torch.bool, device=r.device)
    real_min = torch.full((n,), float("inf"), dtype=torch.float64, device=r.device)
    for i in range(0, n, chunk):
        ri, rr = r[i : i + chunk], rad_r[i : i + chunk]
        for j in range(0, m, chunk):
            d = _block_dist(ri, f[j : j + chunk], r_sq[i : i + chunk], f_sq[j : j + chunk])
            fake_count[j : j + chunk] += (d < rr[:, None]).sum(0)
            real_recalled[i : i + chunk] |= (d < rad_f[None, j : j + chunk]).any(1)
            real_min[i : i + chunk] = torch.minimum(real_min[i : i + chunk], d.min(1).values)
    return {
        "precision": float((fake_count > 0).double().mean()),
        "recall": float(real_recalled.double().mean()),
        "density": float(fake_count.mean() / k),
        "coverage": float((real_min < rad_r).double().mean()),
    }


def compute_prdc_reference(real, fake, k: int = 5) -> dict[str, float]:
    """The `prdc` package's own implementation (full matrices; small sets only), without its print."""
    import contextlib
    import io

    from prdc import compute_prdc as _ref

    r = _as_tensor(real, "real features").numpy()
    f = _as_tensor(fake, "fake features").numpy()
    with contextlib.redirect_stdout(io.StringIO()):
        out = _ref(r, f, nearest_k=k)
    return {key: float(v) for key, v in out.items()}
