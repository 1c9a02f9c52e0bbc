"""Latent optimisation: refinement from the regressor's output, the optimisation-only baseline, and
per-image fine-tuning of the regressor.

Objective (per image, as in the authors' code, weights from REFERENCE.md):
    l1_weight * masked L1(G(l), x; m) + perceptual_weight * masked LPIPS(G(l), x; m)
    + latent_weight * MSE(E(x, m), E(G(l), m))
Masked L1 is `metrics.masked.masked_l1` (NaN for an image without known pixels; the pipeline refuses
such masks). The LPIPS term is used only when its backbone weights exist locally (`latentcomp.losses`);
otherwise it is skipped (`perceptual_available()` says which). Losses are summed over the batch, so each
image's latent gets its own gradient (Adam is per coordinate; L-BFGS couples images through its line
search).

Method "in-domain" (Zhu et al. 2020, in-domain GAN inversion) replaces the last term with the regressor
as a domain regulariser: domain_weight * mean((l - E(G(l), all known))^2), so that the latent stays
near a fixed point of E(G(.)), i.e. where the regressor itself lands (Adam, same image terms).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..errors import LatentcompError
from ..generators.base import mean_latent  # noqa: F401 - its older import path
from ..metrics.masked import load_masked_lpips, masked_l1

METHODS = ("adam", "lbfgs", "in-domain")
#: default weight of the in-domain term (the paper uses 2 with its own loss scales; 0.5 kept more of the
#: known-pixel fidelity on the bundled toyfaces models, docs/applications.md)
DOMAIN_WEIGHT = 0.5


def perceptual(device) -> object | None:
    """A callable (a, b, m) -> (N,) masked LPIPS-alex with gradients, or None where its backbone weights
    are not local. Masking as in `metrics.masked.masked_lpips`: LPIPS(a * m, b * m); the network is the
    one that function caches."""
    try:
        net = load_masked_lpips("alex", device=device)
    except (ImportError, LatentcompError):
        return None

    def fn(a, b, m):
        return net(a * m, b * m)

    return fn


def perceptual_available(device="cpu") -> bool:
    return perceptual(device) is not None


# ---------------------------------------------------------------- optimisation


@dataclass
class OptimConfig:
    steps: int = 30
    method: str = "adam"
    lr: float | None = None  # None: 0.02 for refinement, 0.05 from the mean latent, 1.0 for L-BFGS
    l1_weight: float = 0.5
    perceptual_weight: float = 0.5
    latent_weight: float = 0.25
    domain_weight: float = DOMAIN_WEIGHT  # method "in-domain" only: weight of ||l - E(G(l))||^2

    def check(self) -> OptimConfig:
        if self.steps < 0:
            raise LatentcompError(f"refinement steps must be >= 0; got {self.steps}")
        if self.method not in METHODS:
            raise LatentcompError(f"unknown optimiser {self.method!r}; accepted: {', '.join(METHODS)}")
        if not (self.domain_weight >= 0 and math.isfinite(self.domain_weight)):
            raise LatentcompError(f"domain weight must be a finite number >= 0; got {self.domain_weight}")
        return self

    @property
    def in_domain(self) -> bool:
        return self.method == "in-domain"


@dataclass
class OptimResult:
    latent: torch.Tensor
    known_l1: torch.Tensor  # (N,) final masked L1 on the known pixels
    seconds: float
    # (steps + 1, N): masked L1 of the latent before each step and after the last (Adam only)
    history: torch.Tensor | None = None
    perceptual_used: bool = False
    losses: list[float] = field(default_factory=list)
    # (N,) final ||l - E(G(l))|| (root mean square over the latent's entries); method "in-domain" only
    domain_gap: torch.Tensor | None = None


def domain_gap(G, E, space: str, latent: torch.Tensor, batch: int = 64) -> torch.Tensor:
    """(N,) root-mean-square distance between each latent and E(G(latent)) (the regressor sees the whole
    generated image): how far the latent is from where the regressor itself would put it. 0 for a latent
    that E(G(.)) maps to itself; in-domain inversion keeps it small."""
    out = []
    with torch.no_grad():
        for i in range(0, latent.shape[0], batch):
            lat = latent[i : i + batch]
            img = G(lat, space=space)
            rec = E(img, torch.ones_like(img[:, :1]))
            out.append((rec - lat).pow(2).flatten(1).mean(1).sqrt())
    return torch.cat(out)


def optimise_latent(
    G,
    E,
    space: str,
    x: torch.Tensor,
    m: torch.Tensor,
    init: torch.Tensor,
    cfg: OptimConfig,
    anchor: torch.Tensor | None = None,
    track: bool = False,
    default_lr: float = 0.02,
    progress: bool = False,
) -> OptimResult:
    """Minimise the objective over the latent, starting from `init` (N, ...). Deterministic.
    E: the regressor, or any callable (x, m) -> latent (e.g. `Pipeline.run_regressor`)."""
    cfg.check()
    t0 = time.perf_counter()
    x, m = x.detach(), m.detach()
    perc = perceptual(x.device) if cfg.perceptual_weight > 0 else None
    latent_term = cfg.latent_weight > 0 and not cfg.in_domain
    if latent_term and anchor is None:
        with torch.no_grad():
            anchor = E(x, m)
    latent = init.detach().clone().requires_grad_(True)
    history: list[torch.Tensor] = []

    def per_image_loss():
        out = G(latent, space=space)
        l1 = masked_l1(out, x, m)
        loss = cfg.l1_weight * l1
        if perc is not None:
            loss = loss + cfg.perceptual_weight * perc(out, x, m)
        if cfg.in_domain:
            if cfg.domain_weight > 0:
                rec = E(out, torch.ones_like(out[:, :1]))
                loss = loss + cfg.domain_weight * (latent - rec).pow(2).flatten(1).mean(1)
        elif latent_term:
            loss = loss + cfg.latent_weight * (E(out, m) - anchor).pow(2).flatten(1).mean(1)
        return loss, l1

    losses: list[float] = []
    if cfg.steps > 0:
        steps = range(cfg.steps)
        if progress:
            from tqdm import tqdm

            steps = tqdm(steps, desc=f"optimise ({cfg.method})", leave=False)
        if cfg.method in ("adam", "in-domain"):
            opt = torch.optim.Adam([latent], lr=cfg.lr or default_lr)
            for _ in steps:
                opt.zero_grad(set_to_none=True)
                loss, l1 = per_image_loss()
                if track:
                    history.append(l1.detach().cpu())
                total = loss.sum()
                total.backward()
                opt.step()
                losses.append(float(total.detach()))
        else:
            opt = torch.optim.LBFGS(
                [latent], lr=cfg.lr or 1.0, max_iter=cfg.steps, history_size=10, line_search_fn="strong_wolfe"
            )

            def closure():
                opt.zero_grad(set_to_none=True)
                loss, _ = per_image_loss()
                total = loss.sum()
                total.backward()
                losses.append(float(total.detach()))
                return total

            opt.step(closure)
    with torch.no_grad():
        final = masked_l1(G(latent, space=space), x, m)
    if track:
        history.append(final.cpu())
    gap = domain_gap(G, E, space, latent.detach()) if cfg.in_domain else None
    return OptimResult(
        latent=latent.detach(),
        known_l1=final.detach(),
        seconds=time.perf_counter() - t0,
        history=torch.stack(history) if track and history else None,
        perceptual_used=perc is not None,
        losses=losses,
        domain_gap=gap,
    )


# ---------------------------------------------------------------- per-image fine-tuning


def finetune_regressor(
    G,
    E,
    x: torch.Tensor,
    m: torch.Tensor,
    steps: int = 30,
    lr: float = 1e-4,
    batch: int = 4,
    seed: int = 0,
    perceptual_weight: float = 1.0,
):
    """A copy of E tuned for a few Adam steps on the input(s) x with random masks (paper's sampler)
    intersected with the input's known region m; loss = MSE + LPIPS (where available) on the known pixels.
    BatchNorm statistics stay frozen (eval mode) so that a single image cannot wreck them."""
    from ..masks import noise_masks

    if steps < 0:
        raise LatentcompError(f"fine-tuning steps must be >= 0; got {steps}")
    E2 = copy.deepcopy(E)
    E2.eval()
    for p in E2.parameters():
        p.requires_grad_(True)
    if steps == 0:
        for p in E2.parameters():
            p.requires_grad_(False)
        return E2
    perc = perceptual(x.device) if perceptual_weight > 0 else None
    opt = torch.optim.Adam([p for p in E2.parameters()], lr=lr, betas=(0.5, 0.999))
    g = torch.Generator().manual_seed(seed)
    n = x.shape[0]
    xb = x.detach().repeat_interleave(batch, 0)
    mb = m.detach().repeat_interleave(batch, 0)
    space = E2.space
    for _ in range(steps):
        rand = noise_masks(n * batch, tuple(x.shape[-2:]), generator=g).to(x.device)
        rand[::batch] = 1.0  # one unmasked view per image
        inp_mask = rand * mb
        inp_mask = torch.where(inp_mask.flatten(1).sum(1).view(-1, 1, 1, 1) > 0, inp_mask, mb)
        opt.zero_grad(set_to_none=True)
        out = G(E2(xb, inp_mask), space=space)
        err = ((out - xb) ** 2 * mb).flatten(1).sum(1) / (mb.flatten(1).sum(1).clamp(min=1) * x.shape[1])
        loss = err
        if perc is not None:
            loss = loss + perceptual_weight * perc(out, xb, mb)
        loss.mean().backward()
        opt.step()
    for p in E2.parameters():
        p.requires_grad_(False)
    return E2


def pairwise_l1(images: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """Mean pairwise masked L1 between the K images of each item: images (N, K, C, H, W), region (N, 1, H, W).
    Returns (N,); NaN where K < 2 or the region is empty."""
    n, k = images.shape[:2]
    if k < 2:
        return torch.full((n,), math.nan)
    vals = []
    for i in range(k):
        for j in range(i + 1, k):
            vals.append(masked_l1(images[:, i], images[:, j], region))
    out = torch.stack(vals, 1).mean(1)
    return torch.where(region.flatten(1).sum(1) > 0, out, torch.full_like(out, math.nan))


def resize_like(x: torch.Tensor, size: int) -> torch.Tensor:
    if x.shape[-1] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
