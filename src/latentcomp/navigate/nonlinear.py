"""Non-linear steerability walks (Jahanian, Chai & Isola 2020, "On the steerability of GANs", sec. 3).

A linear walk moves every latent by the same vector, l + a w. The non-linear walk learns a small network
step f and applies it repeatedly: l_{k+1} = l_k + f(l_k), one step per `unit` of the transform (a
fraction of a step for the remainder), with one network for each sign. So the path bends with the
latent, and an amount beyond the training range is reached by taking more steps.

f(l) = u + MLP(l), where u is a vector and the MLP's last layer starts at zero: at the start f is a
constant step, i.e. a linear walk, and training (as `steer_directions`: Adam on the L2 between
G(walk(l, a)) and T_a(G(l)) on the pixels T_a defines, a ~ U(-r, r)) bends it where that helps.

A `NonlinearWalk` is a `Direction` (its vector is u+ - u-, its mean direction, and meta per_unit the
length of a mean step per unit) that also carries the networks: `transform_move` and
`evaluate_geometry` move latents along the network path, so walks of both kinds are measured side by
side (`latentcomp directions geometry --method steer,steer-mlp`). The networks are not written to
direction files (a saved set keeps only the mean direction); keep the Python object to reuse them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..errors import LatentcompError
from .directions import Direction, _check_space, default_space, projection_std, sample_latents
from .geometry import TRANSFORMS, _amounts, _lat_space, parse_transforms, walk_loss

#: training amounts are split into at most this many network steps
STEPS_PER_RANGE = 4


class WalkStep(nn.Module):
    """f(l) = u + MLP(l) on the latent's last dimension (z flattened; w per component)."""

    def __init__(self, dim: int, hidden: int = 64):
        super().__init__()
        self.u = nn.Parameter(torch.zeros(dim))
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, dim))
        nn.init.zeros_(self.mlp[2].weight)
        nn.init.zeros_(self.mlp[2].bias)

    def forward(self, lat: torch.Tensor) -> torch.Tensor:
        return self.u + self.mlp(lat)


@dataclass
class NonlinearWalk(Direction):
    """A Direction whose moves follow the learned steps (see the module doc)."""

    steps: dict = field(default_factory=dict)  # {"+": WalkStep, "-": WalkStep}
    unit: float = 1.0  # transform amount per network step

    def walk(self, latent: torch.Tensor, space: str, amount) -> torch.Tensor:
        """Latents (N, ...) in z or w moved by `amount` (number or (N,)) units of the transform."""
        a = _amounts(amount, latent.shape[0], latent.device)
        flat = latent.reshape(latent.shape[0], -1) if space == "z" else latent
        out = flat.clone()
        for sign, net in (("+", self.steps["+"]), ("-", self.steps["-"])):
            net = net.to(latent.device)
            n = (a.abs() / self.unit) * (a > 0 if sign == "+" else a < 0)  # steps of this sign, per latent
            k = 0
            while bool((n > k).any()):
                frac = (n - k).clamp(0, 1).view(-1, *([1] * (flat.dim() - 1)))
                out = out + frac * net(out)
                k += 1
        return out.reshape(latent.shape)


def _step_net(dim: int, hidden: int, seed: int) -> WalkStep:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return WalkStep(dim, hidden)


def steer_mlp_walks(
    G,
    transforms: str | Sequence[str] | None = None,
    space: str | None = None,
    steps: int = 200,
    batch: int = 8,
    lr: float = 0.01,
    hidden: int = 64,
    seed: int = 0,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> list[NonlinearWalk]:
    """One non-linear walk per transform, trained like `steer_directions` (same objective, amounts,
    latents and steps)."""
    names = parse_transforms(transforms)
    space = space or default_space(G)
    _check_space(G, space)
    if space == "w+":
        raise LatentcompError("steerability walks live in z or w; use --space w for a w+ generator")
    if steps < 1 or batch < 1 or hidden < 1:
        raise LatentcompError(f"steps, batch and hidden must be at least 1; got {steps}, {batch}, {hidden}")
    D = int(math.prod(G.latent_shape)) if space == "z" else int(G.w_dim)
    _, lat_std = sample_latents(G, 2000, int(seed) + 7919, _lat_space(space))
    if space != "z":
        lat_std = lat_std.reshape(lat_std.shape[0], -1, D)[:, 0]
    out = []
    for k in names:
        t0 = time.perf_counter()
        tr = TRANSFORMS[k]
        idx = list(TRANSFORMS).index(k)
        nets = {s: _step_net(D, hidden, seed * 1000 + 2 * idx + i).to(G.device) for i, s in enumerate("+-")}
        walk = NonlinearWalk(
            name=k,
            vector=torch.ones(D),  # replaced below
            space=space,
            generator=G.spec,
            method="steer-mlp",
            steps=nets,
            unit=tr.train_range / STEPS_PER_RANGE,
        )
        params = [p for net in nets.values() for p in net.parameters()]
        opt = torch.optim.Adam(params, lr=lr)
        g = torch.Generator().manual_seed(int(seed) * 1000 + idx)
        rng = range(steps)
        if progress:
            from tqdm import tqdm

            rng = tqdm(rng, desc=f"steer-mlp {k}", unit="step", leave=False)
        losses = []
        for _ in rng:
            loss = walk_loss(G, k, space, batch, g, lambda lat, a, walk=walk: walk.walk(lat, space, a))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        for net in nets.values():
            net.requires_grad_(False)
        # the mean direction and step length, for `Direction` (describe, std, per_unit)
        with torch.no_grad():
            _, flat = sample_latents(G, 64, int(seed) + 104729, _lat_space(space))
            lat = flat.reshape(64, *(G.latent_shape if space == "z" else G.space_shape("w"))).to(G.device)
            moved = walk.walk(lat, space, 1.0) - walk.walk(lat, space, -1.0)
            mean = moved.reshape(64, -1, D).mean((0, 1)).cpu() / 2
        if float(mean.norm()) == 0:
            raise LatentcompError(f"steer-mlp {k}: the walk stayed at zero (the loss has no gradient)")
        walk.vector = mean / mean.norm()
        walk.std = projection_std(lat_std, walk.vector)
        tail = losses[-max(1, steps // 10) :]
        walk.meta = {
            "transform": k,
            "unit": tr.unit,
            "per_unit": float(mean.norm()),
            "step_unit": walk.unit,
            "train_range": tr.train_range,
            "steps": steps,
            "batch": batch,
            "lr": lr,
            "hidden": hidden,
            "seed": seed,
            "final_loss": float(np.mean(tail)),
        }
        if log is not None:
            log(
                f"  steer-mlp {k}: loss {np.mean(losses[: max(1, steps // 10)]):.4f} -> {np.mean(tail):.4f} "
                f"({time.perf_counter() - t0:.0f} s)"
            )
        out.append(walk)
    return out
