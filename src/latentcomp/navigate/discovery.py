"""Unsupervised discovery of interpretable directions (Voynov & Babenko 2020, "Unsupervised discovery
of interpretable directions in the GAN latent space").

A matrix A of K unit directions and a reconstructor R are trained together, G frozen: for a latent l,
a direction k and a shift e, R sees the pair (G(l), G(l + e * std * A_k)) and must say which direction
moved the image (K-way classification) and by how much (regression of e). Directions that R can tell
apart from the images alone are ones that change the image in distinct, recognisable ways, which tends
to make them interpretable. Loss: cross-entropy(k) + `shift_weight` * |e_pred - e|. Shifts e are drawn
uniformly from [-max_shift, max_shift] in std of the latents, at least `min_shift` in size.

    dirs = discover_directions(G, k=10, steps=1000)     # list[Direction], method "unsupervised"
"""

from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import LatentcompError
from .directions import Direction, _check_space, default_space, projection_std, sample_latents


class Reconstructor(nn.Module):
    """(image, shifted image) -> (K logits, shift): a small CNN on the pair stacked as channels."""

    def __init__(self, channels: int, k: int, width: int = 32):
        super().__init__()
        layers, c = [], 2 * channels
        for out in (width, 2 * width, 4 * width, 4 * width):
            layers += [nn.Conv2d(c, out, 3, 2, 1), nn.LeakyReLU(0.2)]
            c = out
        self.body = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.which = nn.Linear(c, k)
        self.shift = nn.Linear(c, 1)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(torch.cat([a, b], 1))
        return self.which(h), self.shift(h).squeeze(1)


def _move(G, lat: torch.Tensor, space: str, vecs: torch.Tensor) -> torch.Tensor:
    """lat + vecs (N, D): z flattened; a w vector broadcast over a structured w's components."""
    if space == "z":
        return (lat.reshape(lat.shape[0], -1) + vecs).reshape(lat.shape)
    return lat + vecs.view(vecs.shape[0], *([1] * (lat.dim() - 2)), vecs.shape[1])


def discover_directions(
    G,
    k: int = 10,
    space: str | None = None,
    steps: int = 1000,
    batch: int = 16,
    lr: float = 1e-3,
    max_shift: float = 3.0,
    min_shift: float = 0.5,
    shift_weight: float = 0.25,
    seed: int = 0,
    progress: bool = False,
    log=None,
) -> list[Direction]:
    """Train K directions and a reconstructor (Adam, `steps` steps of `batch` fresh latents); returns the
    directions (unit vectors), ordered by how often the reconstructor identifies them on a held-out batch
    (meta `accuracy`), and the final loss."""
    space = space or default_space(G)
    _check_space(G, space)
    if space == "w+":
        raise LatentcompError("discovered directions live in z or w; use --space w for a w+ generator")
    if k < 2 or steps < 1 or batch < 1:
        raise LatentcompError(f"need k >= 2, steps >= 1 and batch >= 1; got {k}, {steps} and {batch}")
    if not (0 <= min_shift < max_shift):
        raise LatentcompError(f"need 0 <= min_shift < max_shift; got {min_shift} and {max_shift}")
    t0 = time.perf_counter()
    lat_space = "z" if space == "z" else "w"
    _, lat_flat = sample_latents(G, 2000, int(seed) + 7919, lat_space)
    D = int(math.prod(G.latent_shape)) if space == "z" else int(G.w_dim)
    per_dim = lat_flat.reshape(lat_flat.shape[0], -1, D)[:, 0] if space != "z" else lat_flat
    std = float(per_dim.std(0).mean())  # shifts in units of the latents' typical spread
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        A = nn.Parameter(torch.randn(k, D, device=G.device))
        R = Reconstructor(int(G.channels), k).to(G.device)
    opt = torch.optim.Adam([A, *R.parameters()], lr=lr)
    g = torch.Generator().manual_seed(int(seed) + 1)

    def draw(n):
        z = G.sample_latent(n, generator=g)
        which = torch.randint(k, (n,), generator=g)
        size = torch.rand(n, generator=g) * (max_shift - min_shift) + min_shift
        sign = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
        with torch.no_grad():
            lat = (z if space == "z" else G.mapping(z)).to(G.device)
        return lat, which.to(G.device), (size * sign).to(G.device)

    def pair_loss(lat, which, e):
        dirs = F.normalize(A, dim=1)
        with torch.no_grad():
            x0 = G(lat, space=lat_space)
        x1 = G(_move(G, lat, space, dirs[which] * (e * std).unsqueeze(1)), space=lat_space)
        logits, e_pred = R(x0, x1)
        return logits, F.cross_entropy(logits, which) + shift_weight * (e_pred - e).abs().mean()

    rng = range(steps)
    if progress:
        from tqdm import tqdm

        rng = tqdm(rng, desc="unsupervised discovery", unit="step", leave=False)
    losses = []
    for _ in rng:
        _, loss = pair_loss(*draw(batch))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    # how often R names each direction correctly on fresh pairs
    with torch.no_grad():
        hits, seen = torch.zeros(k), torch.zeros(k)
        for _ in range(4):
            lat, which, e = draw(max(batch, 2 * k))
            logits, _ = pair_loss(lat, which, e)
            ok = (logits.argmax(1) == which).float().cpu()
            hits.index_add_(0, which.cpu(), ok)
            seen.index_add_(0, which.cpu(), torch.ones_like(ok))
    acc = hits / seen.clamp(min=1)
    dirs = F.normalize(A.detach(), dim=1).cpu()
    tail = losses[-max(1, steps // 10) :]
    if log is not None:
        log(
            f"  discovery: loss {sum(losses[: max(1, steps // 10)]) / max(1, steps // 10):.3f} -> "
            f"{sum(tail) / len(tail):.3f}, reconstructor accuracy {float(acc.mean()):.2f} "
            f"({time.perf_counter() - t0:.0f} s)"
        )
    order = torch.argsort(acc, descending=True, stable=True).tolist()
    return [
        Direction(
            name=f"disc{i}",
            vector=dirs[j],
            space=space,
            generator=G.spec,
            method="unsupervised",
            std=projection_std(per_dim, dirs[j]),
            meta={
                "index": j,
                "accuracy": float(acc[j]),
                "steps": steps,
                "batch": batch,
                "max_shift": max_shift,
                "seed": seed,
                "final_loss": sum(tail) / len(tail),
            },
        )
        for i, j in enumerate(order)
    ]
