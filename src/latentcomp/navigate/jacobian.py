"""Jacobian spectral directions (Ramesh, Choi & LeCun 2018, "A spectral regularizer for unsupervised
disentanglement"): the top right-singular vectors of the generator's Jacobian J = dG(l)/dl.

The right-singular vectors of J at a latent are the latent directions that change the image most, in
decreasing order of how much (the singular values): a local, unsupervised basis of what the generator
varies there. Averaged over latents, M = mean_i J_i^T J_i / P (P = pixels x channels) gives global
directions: its top eigenvectors (= the top right-singular vectors of the stacked Jacobians). One latent
(`n=1`) gives the paper's local directions.

J is computed exactly with forward-mode autodiff, one dual forward pass per latent dimension (batched),
so it works for every generator kind that runs under `torch.autograd.forward_ad` (DCGAN, StyleGAN2,
GANsformer, ProGAN, custom nn.Modules). In w (StyleGAN2, GANsformer), a direction moves w, broadcast over
a structured w's components as `move` does.
"""

from __future__ import annotations

import torch

from ..errors import LatentcompError
from .directions import Direction, _check_space, default_space, projection_std, sample_latents


def _tangents(lat: torch.Tensor, D: int, space: str) -> torch.Tensor:
    """Latents (b, ...) repeated D times each, with tangent e_k at row j * D + k."""
    b = lat.shape[0]
    basis = torch.eye(D, device=lat.device, dtype=lat.dtype)
    if space == "z":
        return basis.repeat(b, 1).reshape(b * D, *lat.shape[1:])
    return basis.repeat(b, 1).view(b * D, *([1] * (lat.dim() - 2)), D).expand(b * D, *lat.shape[1:])


def jacobian(G, lat: torch.Tensor, space: str, chunk: int = 64) -> torch.Tensor:
    """J for latents (b, ...) in space z or w: (b, D, P), row k = dG(l)/dl_k flattened over the image."""
    from torch.autograd import forward_ad as fwAD

    D = int(lat[0].numel()) if space == "z" else int(G.w_dim)
    rep = lat.repeat_interleave(D, 0)
    tan = _tangents(lat, D, space).contiguous()
    cols = []
    with torch.no_grad():
        for i in range(0, rep.shape[0], chunk):
            with fwAD.dual_level():
                out = G(fwAD.make_dual(rep[i : i + chunk], tan[i : i + chunk]), space=space)
                _, jvp = fwAD.unpack_dual(out)
            if jvp is None:
                raise LatentcompError(f"{type(G).__name__}'s image does not depend on the {space} latent")
            cols.append(jvp.flatten(1).cpu())
    return torch.cat(cols).view(lat.shape[0], D, -1)


def jacobian_gram(G, n: int = 16, space: str = "z", seed: int = 0, progress: bool = False) -> torch.Tensor:
    """M = mean over n sampled latents of J^T J / P, (D, D) float64."""
    _, flat = sample_latents(G, n, seed, space)
    shape = G.latent_shape if space == "z" else G.space_shape("w")
    lats = flat.reshape(n, *shape)
    M = None
    it = range(n)
    if progress:
        from tqdm import tqdm

        it = tqdm(it, desc="Jacobians", unit="latent")
    for i in it:
        J = jacobian(G, lats[i : i + 1].to(G.device), space)[0].double()  # (D, P)
        g = J @ J.T / J.shape[1]
        M = g if M is None else M + g
    return M / n


def jacobian_directions(
    G, k: int = 10, space: str | None = None, n: int = 16, seed: int = 0, progress: bool = False
) -> list[Direction]:
    """The top-k right-singular vectors of G's Jacobian, averaged over n sampled latents (n=1: at one
    latent). meta: the singular value (RMS change of a pixel per latent unit) and the share of sum J^T J
    each direction explains."""
    space = space or default_space(G)
    _check_space(G, space)
    if space == "w+":
        raise LatentcompError("Jacobian directions live in z or w; use --space w for a w+ generator")
    if n < 1 or k < 1:
        raise LatentcompError(f"--n and --k must be at least 1; got {n} and {k}")
    M = jacobian_gram(G, n, space, seed, progress)
    evals, evecs = torch.linalg.eigh(M)
    order = torch.argsort(evals, descending=True)[: min(k, M.shape[0])]
    total = float(evals.clamp(min=0).sum()) or 1.0
    _, lat_std = sample_latents(G, 2000, int(seed) + 7919, space)
    D = M.shape[0]
    if space != "z":
        lat_std = lat_std.reshape(lat_std.shape[0], -1, D)[:, 0]
    out = []
    for i, j in enumerate(order.tolist()):
        v = evecs[:, j].float()
        v = v * torch.sign(v[v.abs().argmax()])  # a fixed sign: the largest entry positive
        out.append(
            Direction(
                name=f"jac{i}",
                vector=v,
                space=space,
                generator=G.spec,
                method="jacobian",
                std=projection_std(lat_std, v),
                meta={
                    "component": i,
                    "singular_value": float(evals[j].clamp(min=0).sqrt()),
                    "explained": float(evals[j].clamp(min=0)) / total,
                    "samples": n,
                    "seed": seed,
                },
            )
        )
    return out
