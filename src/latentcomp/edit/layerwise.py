"""Layer-wise inversion (Bau et al. 2019, "Seeing what a GAN cannot generate").

Invert into the activation r of an intermediate layer L instead of the input latent: the regressor gives
a latent, r starts at that latent's layer-L features, and r is optimised so that the layers above L draw
the image (`Generator.synthesize_from`); the layers below L, and with them the generator's prior, are
dropped. What the layer-wise reconstruction draws and the latent reconstruction does not is what the
generator cannot produce from any latent, even though its upper layers can draw it.

    res = invert_layer(pipe, x, mask, layer="layer2", steps=100)
    res.image          # layer-wise reconstruction G_{>L}(r)
    res.latent_image   # G(latent) of the same budget (regressor + `steps` of Adam refinement)
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from ..errors import LatentcompError
from .refine import OptimConfig, masked_l1, optimise_latent, perceptual

#: layer names never used for layer-wise inversion (not spatial activations of the synthesis path)
_SKIP = ("mapping", "output")


def spatial_layers(G) -> dict[str, tuple[int, ...]]:
    """Feature layers with a (C, H, W) activation that `synthesize_from` can replace, in G's order, with
    their shapes (RGB skip layers left out: they hold images, not features)."""
    g = torch.Generator().manual_seed(0)
    lat = G.sample_latent(1, generator=g)
    out = {}
    with torch.no_grad():
        for name in G.feature_layers():
            if name in _SKIP or "rgb" in name.lower():
                continue
            f = G.features(lat, name, space="z")
            f = f[0] if isinstance(f, tuple) else f
            if f.dim() == 4:
                out[name] = tuple(f.shape[1:])
    return out


def default_layer(G) -> str:
    """The first spatial layer at least 1/8 of the image size (8x8 for 64 px): deep enough to draw what the
    latent cannot, shallow enough that the upper layers still impose G's style."""
    layers = spatial_layers(G)
    if not layers:
        raise LatentcompError(
            f"{type(G).__name__} lists no spatial feature layers; layer-wise inversion needs one"
        )
    for name, shape in layers.items():
        if shape[-1] >= max(1, int(G.resolution) // 8):
            return name
    return list(layers)[-1]


def check_layer(G, layer: str | None) -> str:
    if layer is None or str(layer) == "auto":
        return default_layer(G)
    layers = spatial_layers(G)
    if str(layer) not in layers:
        raise LatentcompError(
            f"layer {layer!r} cannot be inverted into; spatial feature layers of this generator: "
            + ", ".join(f"{k} {'x'.join(map(str, v))}" for k, v in layers.items())
        )
    return str(layer)


@dataclass
class LayerInversion:
    image: torch.Tensor  # (N, C, H, W) layer-wise reconstruction (CPU)
    latent_image: torch.Tensor  # (N, C, H, W) latent reconstruction with the same budget (CPU)
    features: torch.Tensor  # (N, ...) optimised layer activation (CPU)
    latent: torch.Tensor  # (N, ...) the latent (regressor, refined), in the pipeline's space (CPU)
    layer: str
    known_l1: torch.Tensor  # (N,) masked L1 of the layer-wise reconstruction on the known pixels
    latent_known_l1: torch.Tensor  # (N,) the same for the latent reconstruction
    seconds: float
    losses: list[float]


def invert_layer(
    pipe,
    x: torch.Tensor,
    mask: torch.Tensor | None = None,
    layer: str | None = None,
    steps: int = 100,
    lr: float = 0.05,
    latent_steps: int | None = None,
    feature_weight: float = 0.0,
    l1_weight: float = 1.0,
    perceptual_weight: float = 0.5,
    progress: bool = False,
) -> LayerInversion:
    """Regress, then optimise layer `layer`'s activation for `steps` Adam steps (learning rate `lr` times the
    activation's std) on masked L1 (+ masked LPIPS where its weights exist) + feature_weight * mean((r -
    r0)^2) / var(r0). The latent reconstruction gets `latent_steps` (default: the same number) of plain
    Adam refinement, so the two differ only in where they optimise."""
    if steps < 0:
        raise LatentcompError(f"steps must be >= 0; got {steps}")
    if feature_weight < 0:
        raise LatentcompError(f"feature weight must be >= 0; got {feature_weight}")
    t0 = time.perf_counter()
    G = pipe.generator
    layer = check_layer(G, layer)
    x = pipe._images(x)
    m = pipe._mask(mask, x)
    if x.shape[0] == 1 and m.shape[0] > 1:
        x = x.expand(m.shape[0], -1, -1, -1)
    x = x * m
    with torch.no_grad():
        latent = pipe.run_regressor(x, m)
    ls = steps if latent_steps is None else latent_steps
    if ls:
        cfg = OptimConfig(steps=ls, l1_weight=l1_weight, perceptual_weight=perceptual_weight)
        latent = optimise_latent(G, pipe.run_regressor, pipe.space, x, m, latent, cfg).latent
    with torch.no_grad():
        r0 = G.features(latent, layer, space=pipe.space)
        latent_image = G(latent, space=pipe.space).clamp(-1, 1)
    scale = float(r0.std()) or 1.0
    r = r0.detach().clone().requires_grad_(True)
    perc = perceptual(x.device) if perceptual_weight > 0 else None
    opt = torch.optim.Adam([r], lr=lr * scale)
    losses: list[float] = []
    rng = range(steps)
    if progress:
        from tqdm import tqdm

        rng = tqdm(rng, desc=f"layer-wise inversion ({layer})", unit="step", leave=False)
    for _ in rng:
        out = G.synthesize_from(r, layer, latent, space=pipe.space)
        loss = l1_weight * masked_l1(out, x, m)
        if perc is not None:
            loss = loss + perceptual_weight * perc(out, x, m)
        if feature_weight > 0:
            loss = loss + feature_weight * (r - r0).pow(2).flatten(1).mean(1) / scale**2
        total = loss.sum()
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        losses.append(float(total.detach()))
    with torch.no_grad():
        image = G.synthesize_from(r.detach(), layer, latent, space=pipe.space).clamp(-1, 1)
    return LayerInversion(
        image=image.cpu(),
        latent_image=latent_image.cpu(),
        features=r.detach().cpu(),
        latent=latent.detach().cpu(),
        layer=layer,
        known_l1=masked_l1(image, x, m).cpu(),
        latent_known_l1=masked_l1(latent_image, x, m).cpu(),
        seconds=time.perf_counter() - t0,
        losses=losses,
    )
