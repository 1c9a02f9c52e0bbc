"""Distribution distances on any feature set: FID (Frechet distance), KID, Inception Score, and resizing.

All functions take features as (N, D) tensors or arrays; which network made them is up to the caller
(`latentcomp.metrics.features`: Inception, the toyfaces analyzer, your own `MODULE:FN`).

FID  = |mu_a - mu_b|^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)), in float64, with scipy.linalg.sqrtm (up
       to 512 dimensions; above, the same trace from symmetric eigendecompositions, see
       `frechet_from_stats`). The square root of a product of two (near-)singular covariances can come
       back with NaN/Inf or a large imaginary part; then eps * I is added to both covariances
       (eps = 1e-6, growing tenfold up to 1e-2 until it is finite) and the count of such retries is
       reported by `frechet_distance_info`. A tiny imaginary part (numerical noise) is dropped.
KID  = the unbiased estimate of MMD^2 with the polynomial kernel k(x, y) = (x.y / D + 1)^3, averaged
       over `subsets` random subsets of `subset_size` from each set (seeded); returns (mean, std).
IS   = exp(E_x KL(p(y|x) || p(y))) over `splits` splits of the class probabilities; (mean, std).

Resizing (`resize_images`), the careful way (as clean-fid argues): never on uint8 and never with
nearest-neighbour or non-antialiased bilinear, which alias and shift FID by whole points. Images are
resized in float32, either with PIL's bicubic filter on each channel as a 32-bit float image ("pil", the
default, the clean-fid recipe; PIL widens the filter support when downsampling, so it is antialiased) or
with torch's bicubic interpolation with antialias=True ("torch", for GPU batches). Results are clamped
back to [-1, 1] (bicubic overshoots a little at edges).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import LatentcompError

RESIZE_METHODS = ("pil", "torch")


def _as_array(x, name: str = "features") -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().double().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise LatentcompError(f"{name} must be a 2-D array (N, D); got shape {x.shape}")
    if not np.isfinite(x).all():
        raise LatentcompError(f"{name} contain NaN or Inf values")
    return x


def gaussian_stats(features) -> tuple[np.ndarray, np.ndarray]:
    """(mean (D,), covariance (D, D)) in float64; the covariance is unbiased (N - 1)."""
    f = _as_array(features)
    if f.shape[0] < 2:
        raise LatentcompError(f"FID needs at least 2 feature vectors per set; got {f.shape[0]}")
    return f.mean(0), np.atleast_2d(np.cov(f, rowvar=False))


def _blas_limit():
    """Limit numpy/scipy BLAS threads to torch's thread count: on a shared machine an oversubscribed
    OpenBLAS makes a 192-d sqrtm take seconds instead of a tenth of one."""
    try:
        from threadpoolctl import threadpool_limits

        return threadpool_limits(limits=max(1, torch.get_num_threads()), user_api="blas")
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        import contextlib

        return contextlib.nullcontext()


def _trace_sqrt_product_eigh(s1: np.ndarray, s2: np.ndarray) -> float:
    """Tr((S1 S2)^(1/2)) = Tr((S1^(1/2) S2 S1^(1/2))^(1/2)): symmetric PSD, so eigh on both; no complex
    numbers, no retries. Several times faster than sqrtm for large D."""
    w, v = np.linalg.eigh((s1 + s1.T) / 2)
    r = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    m = r @ s2 @ r
    ev = np.linalg.eigvalsh((m + m.T) / 2)
    return float(np.sqrt(np.clip(ev, 0, None)).sum())


def frechet_from_stats(
    mu1, sigma1, mu2, sigma2, eps: float = 1e-6, method: str = "auto"
) -> tuple[float, int]:
    """Frechet distance of two Gaussians -> (distance, number of eps retries that were needed).

    method: "sqrtm" (scipy.linalg.sqrtm of S1 S2, the reference formula), "eigh" (the same trace via two
    symmetric eigendecompositions) or "auto": sqrtm up to 512 dimensions, eigh above (scipy 1.17's sqrtm
    took minutes on 2048-d Inception covariances on 2 cores)."""
    with _blas_limit():
        return _frechet_from_stats(mu1, sigma1, mu2, sigma2, eps, method)


def _frechet_from_stats(mu1, sigma1, mu2, sigma2, eps, method) -> tuple[float, int]:
    from scipy import linalg

    if method not in ("auto", "sqrtm", "eigh"):
        raise LatentcompError(f"unknown FID method {method!r}; accepted: auto, sqrtm, eigh")
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise LatentcompError(
            f"Gaussian statistics do not match: means {mu1.shape} / {mu2.shape}, covariances {s1.shape} / "
            f"{s2.shape}"
        )
    diff = mu1 - mu2
    if method == "eigh" or (method == "auto" and s1.shape[0] > 512):
        tr = float(np.trace(s1) + np.trace(s2) - 2 * _trace_sqrt_product_eigh(s1, s2))
        return float(diff @ diff + tr), 0
    retries = 0
    offset = 0.0
    while True:
        a = s1 + offset * np.eye(s1.shape[0])
        b = s2 + offset * np.eye(s2.shape[0])
        with warnings.catch_warnings():  # singular products are handled below (eps retries)
            warnings.simplefilter("ignore")
            covmean = linalg.sqrtm(a @ b)
        covmean = np.asarray(covmean)
        ok = np.isfinite(covmean).all()
        if ok and np.iscomplexobj(covmean):
            # a large imaginary part means the root is not trustworthy; noise-level parts are dropped
            ok = np.abs(covmean.imag).max() <= 1e-3 * max(1.0, np.abs(covmean.real).max())
            covmean = covmean.real
        if ok:
            break
        retries += 1
        offset = eps if offset == 0 else offset * 10
        if offset > 1e-2:
            raise LatentcompError("FID: the covariance square root did not converge (degenerate features?)")
    tr = float(np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))
    return float(diff @ diff + tr), retries


def frechet_distance_info(a, b) -> dict:
    """FID between feature sets a and b (N, D) with details: {"fid", "retries", "n_a", "n_b", "dim"}."""
    fa, fb = _as_array(a, "first features"), _as_array(b, "second features")
    if fa.shape[1] != fb.shape[1]:
        raise LatentcompError(f"feature sets have different dimensions, {fa.shape[1]} and {fb.shape[1]}")
    mu1, s1 = gaussian_stats(fa)
    mu2, s2 = gaussian_stats(fb)
    d, retries = frechet_from_stats(mu1, s1, mu2, s2)
    return {"fid": d, "retries": retries, "n_a": fa.shape[0], "n_b": fb.shape[0], "dim": fa.shape[1]}


def frechet_distance(a, b) -> float:
    """FID between feature sets a and b, (N, D) each (any D, any feature network)."""
    return frechet_distance_info(a, b)["fid"]


def polynomial_kernel(
    x: np.ndarray, y: np.ndarray, degree: int = 3, coef0: float = 1.0, gamma: float | None = None
) -> np.ndarray:
    g = 1.0 / x.shape[1] if gamma is None else gamma
    return (g * (x @ y.T) + coef0) ** degree


def mmd2_unbiased(x: np.ndarray, y: np.ndarray, **kernel) -> float:
    """Unbiased MMD^2 between samples x (m, D) and y (n, D) with the polynomial kernel."""
    m, n = x.shape[0], y.shape[0]
    if m < 2 or n < 2:
        raise LatentcompError("KID needs at least 2 samples per set")
    kxx = polynomial_kernel(x, x, **kernel)
    kyy = polynomial_kernel(y, y, **kernel)
    kxy = polynomial_kernel(x, y, **kernel)
    sxx = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    syy = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(sxx + syy - 2 * kxy.mean())


def kid(
    a,
    b,
    subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
    degree: int = 3,
    coef0: float = 1.0,
    gamma: float | None = None,
) -> tuple[float, float]:
    """Kernel Inception Distance on any features: (mean, std) of unbiased MMD^2 over random subsets.

    subset_size is capped at the smaller set's size; with that cap and one subset it is the plain
    unbiased MMD^2 of the two full sets (the test's hand-computed value)."""
    fa, fb = _as_array(a, "first features"), _as_array(b, "second features")
    if fa.shape[1] != fb.shape[1]:
        raise LatentcompError(f"feature sets have different dimensions, {fa.shape[1]} and {fb.shape[1]}")
    size = min(subset_size, fa.shape[0], fb.shape[0])
    if size < 2:
        raise LatentcompError("KID needs at least 2 feature vectors per set")
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(max(1, subsets)):
        ia = rng.choice(fa.shape[0], size, replace=False) if size < fa.shape[0] else np.arange(size)
        ib = rng.choice(fb.shape[0], size, replace=False) if size < fb.shape[0] else np.arange(size)
        vals.append(mmd2_unbiased(fa[ia], fb[ib], degree=degree, coef0=coef0, gamma=gamma))
    return float(np.mean(vals)), float(np.std(vals))


def inception_score(probs_or_logits, splits: int = 10, logits: bool = False) -> tuple[float, float]:
    """IS from class probabilities (N, K) (or logits with `logits=True`): (mean, std) over splits."""
    p = torch.as_tensor(
        np.asarray(probs_or_logits) if not isinstance(probs_or_logits, torch.Tensor) else probs_or_logits
    ).double()
    if p.dim() != 2:
        raise LatentcompError(f"Inception Score needs (N, classes) probabilities; got {tuple(p.shape)}")
    if logits:
        p = p.softmax(1)
    n = p.shape[0]
    splits = max(1, min(splits, n))
    scores = []
    for chunk in torch.tensor_split(p, splits):
        py = chunk.mean(0, keepdim=True)
        kl = (chunk * (torch.log(chunk.clamp(min=1e-30)) - torch.log(py.clamp(min=1e-30)))).sum(1).mean()
        scores.append(math.exp(float(kl)))
    return float(np.mean(scores)), float(np.std(scores))


def resize_images(x: torch.Tensor, size: int | tuple[int, int], method: str = "pil") -> torch.Tensor:
    """Resize float images (N, C, H, W) in [-1, 1] to `size` the careful way (module doc)."""
    if method not in RESIZE_METHODS:
        raise LatentcompError(f"unknown resize method {method!r}; accepted: {', '.join(RESIZE_METHODS)}")
    hw = (size, size) if isinstance(size, int) else tuple(size)
    if x.dim() != 4:
        raise LatentcompError(f"images must be (N, C, H, W); got {tuple(x.shape)}")
    x = x.float()
    if tuple(x.shape[-2:]) == hw:
        return x
    if method == "torch":
        return F.interpolate(x, size=hw, mode="bicubic", align_corners=False, antialias=True).clamp(-1, 1)
    from PIL import Image

    arr = x.detach().cpu().numpy()
    out = np.empty((arr.shape[0], arr.shape[1], hw[0], hw[1]), dtype=np.float32)
    for i in range(arr.shape[0]):
        for c in range(arr.shape[1]):
            im = Image.fromarray(np.ascontiguousarray(arr[i, c], dtype=np.float32))  # mode "F"
            out[i, c] = np.asarray(im.resize((hw[1], hw[0]), resample=Image.Resampling.BICUBIC))
    return torch.from_numpy(out).to(x.device).clamp(-1, 1)
