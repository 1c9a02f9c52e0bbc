"""Multi-code GAN prior (Gu, Shen & Zhou 2020, "Image processing using multi-code GAN prior").

One latent code often cannot draw an image the generator never saw. mGANprior optimises N codes z_1..z_N
together: each code's activation F_n at an intermediate layer L is computed, the activations are mixed
with a learned importance per code and channel, F = sum_n alpha_n[c] * F_n, and the layers above L draw
the image from F (`Generator.synthesize_from`). Codes and importances are optimised (Adam) on the loss
between what is observed and the same observation of the output:

    task       observed input                      loss compares
    invert     the image                           output and image (on the known pixels of `mask`)
    inpaint    the image with a mask (required)    output and image on the known pixels
    colorize   a grey image                        the grey of the output and the grey of the input
    superres   a low-resolution image              the output averaged down by `factor` and the input
                                                   averaged down (a low-res file loaded at full size)

Code 1 starts at `init` (the regressor's latent in `invert_multicode_pipe`, or the best of a few prior
samples) with importance 1, the other codes at prior samples with importance 0: step 0 is exactly the
single-code reconstruction, and every code joins only as its importance grows. `single=True` also runs
the single-code baseline with the same loss, start and number of steps (the latent alone, through the
whole generator), so that the two differ only in the number of codes. Inputs that the upper layers take
from the latent (StyleGAN styles, the RGB skip image below L) come from code 1.

    res = invert_multicode(G, x, task="colorize", codes=10, layer="auto", steps=200)
    res.image, res.single_image, res.observed_l1, res.single_observed_l1
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import LatentcompError
from .layerwise import check_layer
from .refine import masked_l1

TASKS = ("invert", "inpaint", "colorize", "superres")
#: weights of R, G, B in the grey of an image (ITU-R BT.601 luma)
_LUMA = (0.299, 0.587, 0.114)


def grey(x: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, 1, H, W) luma (a one-channel image is its own grey)."""
    if x.shape[1] == 1:
        return x
    if x.shape[1] != 3:
        raise LatentcompError(f"colorize needs RGB or grey images; got {x.shape[1]} channels")
    w = torch.tensor(_LUMA, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


def check_task(task: str, factor: int, resolution: int, has_mask: bool) -> str:
    if task not in TASKS:
        raise LatentcompError(f"unknown task {task!r}; accepted: {', '.join(TASKS)}")
    if task == "inpaint" and not has_mask:
        raise LatentcompError("task inpaint needs a mask of the known pixels (--mask)")
    if task == "superres" and (factor < 2 or resolution % factor):
        raise LatentcompError(
            f"superres factor must be at least 2 and divide the resolution {resolution}; got {factor}"
        )
    return task


def observe(x: torch.Tensor, m: torch.Tensor, task: str, factor: int = 4):
    """What the task observes of images x with known-pixel mask m: (observed image, its mask)."""
    if task == "colorize":
        return grey(x), m
    if task == "superres":
        # a low-res pixel is known only where all the pixels it averages are
        return F.avg_pool2d(x, factor), (F.avg_pool2d(m, factor) > 0.999).float()
    return x, m


def degrade(x: torch.Tensor, task: str, factor: int = 4) -> torch.Tensor:
    """The input a task starts from, at full size: grey (colorize), blocky low-res (superres), else x."""
    if task == "colorize":
        return grey(x).expand_as(x).contiguous()
    if task == "superres":
        return F.interpolate(F.avg_pool2d(x, factor), scale_factor=factor, mode="nearest")
    return x


@dataclass
class MultiCodeInversion:
    image: torch.Tensor  # (N, C, H, W) multi-code reconstruction (CPU)
    codes: torch.Tensor  # (N, K, ...) the K optimised codes (CPU)
    importance: torch.Tensor  # (N, K, C_L) learned per-channel importance of each code at the layer
    layer: str
    task: str
    observed_l1: torch.Tensor  # (N,) L1 between the observation of the output and the input's
    seconds: float
    losses: list[float]
    single_image: torch.Tensor | None = None  # single-code baseline (same loss, start, steps)
    single_observed_l1: torch.Tensor | None = None
    single_seconds: float | None = None


def _best_prior_start(G, obs_x, obs_m, task, factor, space, n_init, seed) -> torch.Tensor:
    """Per image, the best of `n_init` prior samples by the task's loss (no regressor needed)."""
    g = torch.Generator().manual_seed(int(seed) + 17)
    z = G.sample_latent(n_init, generator=g).to(G.device)
    lat = z if space == "z" else G.mapping(z) if space == "w" else _wplus(G, G.mapping(z))
    with torch.no_grad():
        imgs = torch.cat([G(lat[i : i + 16], space=space) for i in range(0, n_init, 16)])
        obs, _ = observe(imgs, torch.ones_like(imgs[:, :1]), task, factor)
        best = []
        for i in range(obs_x.shape[0]):
            err = masked_l1(obs, obs_x[i : i + 1].expand_as(obs), obs_m[i : i + 1])
            best.append(int(err.argmin()))
    return lat[best].clone()


def _wplus(G, w: torch.Tensor) -> torch.Tensor:
    return w.unsqueeze(1).repeat(1, int(G.num_ws), *([1] * (w.dim() - 1)))


def _prior_codes(G, n: int, space: str, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(int(seed))
    z = G.sample_latent(n, generator=g).to(G.device)
    if space == "z":
        return z
    with torch.no_grad():
        w = G.mapping(z)
    return w if space == "w" else _wplus(G, w)


def _loss(out, obs_x, obs_m, task, factor):
    obs_out, _ = observe(out, torch.ones_like(out[:, :1]), task, factor)
    return masked_l1(obs_out, obs_x, obs_m)


def _progress(n: int, desc: str, on: bool):
    if not on:
        return range(n)
    from tqdm import tqdm

    return tqdm(range(n), desc=desc, unit="step", leave=False)


def invert_single(G, x, mask, init, space, task="invert", factor=4, steps=200, lr=0.05, progress=False):
    """Single-code baseline: the latent alone optimised (Adam) on the task's loss through all of G.
    Returns (image, observed L1 per image, seconds)."""
    t0 = time.perf_counter()
    obs_x, obs_m = observe(x * mask, mask, task, factor)
    lat = init.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([lat], lr=lr)
    for _ in _progress(steps, "single-code inversion", progress):
        loss = _loss(G(lat, space=space), obs_x, obs_m, task, factor).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    with torch.no_grad():
        img = G(lat.detach(), space=space).clamp(-1, 1)
        err = _loss(img, obs_x, obs_m, task, factor)
    return img.cpu(), err.cpu(), time.perf_counter() - t0


def invert_multicode(
    G,
    x: torch.Tensor,
    mask: torch.Tensor | None = None,
    codes: int = 10,
    layer: str | None = None,
    task: str = "invert",
    factor: int = 4,
    steps: int = 200,
    lr: float = 0.05,
    importance_lr: float = 0.05,
    space: str = "z",
    init: torch.Tensor | None = None,
    n_init: int = 64,
    spread: float = 0.5,
    single: bool = True,
    seed: int = 0,
    progress: bool = False,
) -> MultiCodeInversion:
    """mGANprior on images x (N, C, H, W) in [-1, 1] with `codes` codes composed at `layer` ('auto' / None
    = the first spatial layer at least 1/8 of the image, as layer-wise inversion). `init`: code 1's start
    (N, ...) in `space`; default: per image the best of `n_init` prior samples. Codes 2..K start at prior
    samples (seeded by `seed`). `single`: also the single-code baseline."""
    from ..navigate.geometry import _features_upto

    if codes < 1:
        raise LatentcompError(f"codes must be at least 1; got {codes}")
    if steps < 0:
        raise LatentcompError(f"steps must be >= 0; got {steps}")
    if not (lr > 0 and importance_lr > 0):
        raise LatentcompError(f"learning rates must be > 0; got {lr} and {importance_lr}")
    if space not in G.latent_spaces:
        raise LatentcompError(f"space {space!r} is not offered; accepted: {', '.join(G.latent_spaces)}")
    t0 = time.perf_counter()
    if x.dim() != 4 or tuple(x.shape[1:]) != (G.channels, G.resolution, G.resolution):
        raise LatentcompError(
            f"images must be (N, {G.channels}, {G.resolution}, {G.resolution}); got {tuple(x.shape)}"
        )
    x = x.to(G.device).float()
    m = torch.ones_like(x[:, :1]) if mask is None else mask.to(G.device).float().expand(x.shape[0], 1, -1, -1)
    check_task(task, factor, int(G.resolution), mask is not None)
    layer = check_layer(G, layer)
    obs_x, obs_m = observe(x * m, m, task, factor)
    B = x.shape[0]
    if init is None:
        init = _best_prior_start(G, obs_x, obs_m, task, factor, space, n_init, seed)
    init = init.to(G.device).float()
    if init.shape[0] != B:
        raise LatentcompError(f"init has {init.shape[0]} latents for {B} images")
    prior = _prior_codes(G, B * (codes - 1) + 64, space, seed + 1)
    offsets = (prior[64:] - prior[:64].mean(0)).reshape(B, codes - 1, *init.shape[1:])
    others = init.unsqueeze(1) + spread * offsets
    z = torch.cat([init.unsqueeze(1), others], 1).detach().clone().requires_grad_(True)  # (B, K, ...)
    with torch.no_grad():
        f0 = _features_upto(G, init, space, layer)
    alpha = torch.zeros(B, codes, f0.shape[1], device=G.device)
    alpha[:, 0] = 1.0
    alpha.requires_grad_(True)
    opt = torch.optim.Adam([{"params": [z], "lr": lr}, {"params": [alpha], "lr": importance_lr}])

    def draw(z, alpha):
        feats = _features_upto(G, z.flatten(0, 1), space, layer)  # (B*K, C, H, W)
        feats = feats.view(B, codes, *feats.shape[1:])
        mixed = (alpha[..., None, None] * feats).sum(1)
        return G.synthesize_from(mixed, layer, z[:, 0], space=space)

    losses: list[float] = []
    for _ in _progress(steps, f"multi-code inversion ({codes} codes at {layer})", progress):
        loss = _loss(draw(z, alpha), obs_x, obs_m, task, factor).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    with torch.no_grad():
        image = draw(z.detach(), alpha.detach()).clamp(-1, 1)
        err = _loss(image, obs_x, obs_m, task, factor)
    res = MultiCodeInversion(
        image=image.cpu(),
        codes=z.detach().cpu(),
        importance=alpha.detach().cpu(),
        layer=layer,
        task=task,
        observed_l1=err.cpu(),
        seconds=time.perf_counter() - t0,
        losses=losses,
    )
    if single:
        res.single_image, res.single_observed_l1, res.single_seconds = invert_single(
            G, x, m, init, space, task, factor, steps, lr, progress
        )
    return res


def invert_multicode_pipe(pipe, x, mask=None, **kw) -> MultiCodeInversion:
    """`invert_multicode` with the pipeline's generator and space, code 1 starting at the regressor's
    latent of the input (as the task observes it: a grey or low-res input goes in as given)."""
    x = pipe._images(x)
    m = pipe._mask(mask, x) if mask is not None else None
    if m is not None and x.shape[0] == 1 and m.shape[0] > 1:
        x = x.expand(m.shape[0], -1, -1, -1)
    with torch.no_grad():
        mm = m if m is not None else torch.ones_like(x[:, :1])
        init = pipe.run_regressor(x * mm, mm)
    return invert_multicode(pipe.generator, x, m, space=pipe.space, init=init, **kw)
