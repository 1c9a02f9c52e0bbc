"""The embedded default: bundled generators and regressors load and produce the documented shapes."""

import json

import pytest
import torch

import latentcomp as lc
from latentcomp.generators.builtin import BUNDLED, WEIGHTS_DIR

SIZE_LIMITS_MB = {"generator": 10, "regressor": 15}


@pytest.mark.parametrize(
    "name,spaces",
    [
        ("toyfaces-dcgan", ("z",)),
        ("toyfaces-stylegan2", ("z", "w", "w+")),
        ("toyfaces-gansformer", ("z", "w", "w+")),
    ],
)
def test_bundled_generator(name, spaces):
    G = lc.load_generator(f"builtin:{name}")
    assert G.resolution == 64 and G.channels == 3 and G.latent_spaces == spaces
    z = G.sample_latent(4, torch.Generator().manual_seed(0))
    x = G(z)
    assert x.shape == (4, 3, 64, 64) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1
    assert torch.equal(x, G(G.sample_latent(4, torch.Generator().manual_seed(0))))
    path = WEIGHTS_DIR / BUNDLED[name][1]
    assert path.stat().st_size < SIZE_LIMITS_MB["generator"] * 2**20
    assert (WEIGHTS_DIR / f"{name}.md").is_file()  # model card


@pytest.mark.parametrize(
    "name,space",
    [
        ("toyfaces-dcgan-regressor", "z"),
        ("toyfaces-stylegan2-regressor", "w+"),
        ("toyfaces-gansformer-regressor", "w"),
    ],
)
def test_bundled_regressor(name, space):
    E = lc.load_regressor(f"builtin:{name}")
    G = E.load_generator()
    assert E.space == space
    x = G(G.sample_latent(2, torch.Generator().manual_seed(1)))
    with torch.no_grad():
        latent = E(x, torch.ones_like(x[:, :1]))
    assert latent.shape == (2, *G.space_shape(space))
    y = G(latent, space=space)
    assert y.shape == x.shape
    assert (WEIGHTS_DIR / f"{name}.safetensors").stat().st_size < SIZE_LIMITS_MB["regressor"] * 2**20
    assert (WEIGHTS_DIR / f"{name}.md").is_file()
    json.loads((WEIGHTS_DIR / f"{name}.json").read_text())
