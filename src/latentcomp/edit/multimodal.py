"""Multimodal completion: K different completions of one masked input, all keeping the known region.

The regressor alone is deterministic: E(x, m) gives one latent. Diversity comes from the input:
- "fill": the hidden region is filled with the content of a random generator sample (a different one
  per completion) and the whole image is regressed; the GAN turns the pasted sample content into a
  coherent completion while the known pixels anchor the rest. Works for every latent space.
- "style" (w+ only): the fine-layer styles (the last half of the w+ vectors) of E(x, m) are replaced by a
  random sample's w, the result is generated, its hidden region is pasted around the known pixels and
  the whole image is regressed again (re-projection), so the known region is kept.
- "auto": "fill".
Completion 0 is always the regressor's own answer E(x, m).
"""

from __future__ import annotations

import torch

from ..errors import LatentcompError
from .refine import pairwise_l1

METHODS = ("auto", "fill", "style")
_CHUNK = 64


def resolve_method(pipe, method: str) -> str:
    if method not in METHODS:
        raise LatentcompError(f"unknown completion method {method!r}; accepted: {', '.join(METHODS)}")
    if method == "auto":
        return "fill"
    if method == "style" and pipe.space != "w+":
        raise LatentcompError(
            f"completion method 'style' needs a w+ regressor; this one outputs {pipe.space!r}"
        )
    return method


def _chunked(fn, *tensors):
    n = tensors[0].shape[0]
    return torch.cat([fn(*(t[i : i + _CHUNK] for t in tensors)) for i in range(0, n, _CHUNK)])


@torch.no_grad()
def completion_latents(pipe, x: torch.Tensor, m: torch.Tensor, k: int, seed: int, method: str = "auto"):
    """Latents (N, K, ...) for K completions of x (N, C, H, W) with known mask m (N, 1, H, W)."""
    method = resolve_method(pipe, method)
    G, E = pipe.generator, pipe.run_regressor  # E in the pipeline's regressor precision
    base = E(x, m)
    if k == 1:
        return base.unsqueeze(1)
    n = x.shape[0]
    g = torch.Generator().manual_seed(int(seed))
    z = G.sample_latent(n * (k - 1), generator=g).to(pipe.device)
    xs, ms = x.repeat_interleave(k - 1, 0), m.repeat_interleave(k - 1, 0)
    ones = torch.ones_like(ms)
    with pipe.inference_context():
        if method == "fill":
            samples = _chunked(lambda zz: G(zz, space="z"), z).clamp(-1, 1)
        else:
            w = G.to_wplus(G.mapping(z), "w")  # the layer axis is -2 (a GANsformer has components before it)
            mixed = base.repeat_interleave(k - 1, 0).clone()
            split = max(1, mixed.shape[-2] // 2)
            mixed[..., split:, :] = w[..., split:, :]
            samples = _chunked(lambda ll: G(ll, space="w+"), mixed).clamp(-1, 1)
    filled = xs * ms + samples * (1 - ms)
    lat = _chunked(lambda a, b: E(a, b), filled, ones)
    lat = lat.view(n, k - 1, *lat.shape[1:])
    return torch.cat([base.unsqueeze(1), lat], 1)


def diversity(images: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
    """Mean pairwise L1 inside the hidden region: images (N, K, C, H, W), hidden (N, 1, H, W) -> (N,)."""
    return pairwise_l1(images, hidden)
