"""Int8 regressors (post-training static quantization): real int8 kernels, close to the fp32 regressor, clear
errors for what cannot be quantized."""

from __future__ import annotations

import pytest
import torch
from torch.ao.nn import quantized as nnq

from latentcomp import load_generator
from latentcomp.edit import Pipeline
from latentcomp.edit.refine import masked_l1
from latentcomp.errors import LatentcompError
from latentcomp.masks import noise_masks
from latentcomp.regressors import build_regressor
from latentcomp.regressors.quantize import QuantizedRegressor, quantize_regressor


def _int8_convs(q: QuantizedRegressor) -> int:
    return sum(isinstance(mod, nnq.Conv2d) for mod in q.modules())


@pytest.mark.parametrize(
    ("spec", "backbone"),
    [
        ("builtin:tiny-random", "small"),
        ("builtin:tiny-random-stylegan2", "small"),
        ("builtin:tiny-random", "resnet18"),
    ],
)
def test_quantized_regressor_runs_int8_and_stays_near_fp32(spec, backbone):
    G = load_generator(spec)
    torch.manual_seed(0)
    E = build_regressor(G, backbone=backbone).eval()
    before = {k: v.clone() for k, v in E.state_dict().items()}
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        x = G(G.sample_latent(96, generator=g), space="z").clamp(-1, 1)
    m = noise_masks(96, G.resolution, generator=g)
    q = quantize_regressor(E, x[:64], m[:64])
    assert _int8_convs(q) >= 5  # every conv of the trunk became an int8 kernel
    with torch.no_grad():
        a, b = E(x[64:], m[64:]), q(x[64:], m[64:])
    assert b.shape == a.shape and b.dtype == torch.float32
    assert not torch.equal(a, b)
    # int8 rounding, small against the latents (random weights: 1% for the small net, 5% for a ResNet-18)
    assert (a - b).abs().mean() <= 0.1 * a.abs().mean()
    # the fp32 regressor is untouched
    assert all(torch.equal(before[k], v) for k, v in E.state_dict().items())


def test_quantized_bundled_regressor_keeps_its_known_pixel_error():
    pipe = Pipeline.from_pretrained("toyfaces")
    x = pipe.sample(64, seed=11)
    m = noise_masks(64, pipe.resolution, generator=torch.Generator().manual_seed(11))
    fp32 = masked_l1(pipe.reconstruct(x * m, m), x * m, m).mean()
    pipe.set_regressor_precision("int8")
    int8 = masked_l1(pipe.reconstruct(x * m, m), x * m, m).mean()
    assert int8 != fp32
    assert int8 <= 1.1 * fp32  # measured: +4% on 200 inputs (docs/benchmarks.md)


def test_quantize_refuses_what_it_cannot_serve():
    G = load_generator("builtin:tiny-random")
    E = build_regressor(G)
    x = torch.zeros(4, G.channels, G.resolution, G.resolution)
    with pytest.raises(LatentcompError, match="needs a latentcomp Regressor"):
        quantize_regressor(torch.nn.Identity(), x)
    with pytest.raises(LatentcompError, match=r"calibration images must have shape \(N, C, H, W\)"):
        quantize_regressor(E, x[0])
    with pytest.raises(LatentcompError, match="mask size"):
        quantize_regressor(E, x, torch.ones(4, 1, 8, 8))
