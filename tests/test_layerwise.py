"""Layer-wise inversion (Bau et al.): synthesis from an intermediate layer, `invert_layer`, the omissions
probe and `latentcomp invert --layer`."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from clirun import run_cli
from PIL import Image

from latentcomp import load_generator
from latentcomp.data.toyfaces import ToyFaces
from latentcomp.edit import Pipeline
from latentcomp.edit.layerwise import check_layer, default_layer, invert_layer, spatial_layers
from latentcomp.errors import LatentcompError
from latentcomp.regressors import build_regressor, save_regressor

TINY = ["builtin:tiny-random", "builtin:tiny-random-stylegan2"]


@pytest.mark.parametrize("spec", TINY)
def test_synthesize_from_replaces_one_layer(spec):
    G = load_generator(spec)
    z = G.sample_latent(2, generator=torch.Generator().manual_seed(1))
    x = G(z)
    layers = spatial_layers(G)
    assert layers and not any("rgb" in k or k == "mapping" for k in layers)
    for name, shape in layers.items():
        f = G.features(z, name)
        assert tuple(f.shape[1:]) == shape
        assert torch.equal(G.synthesize_from(f, name, z), x)  # its own features: the same image
        other = G.features(G.sample_latent(2, generator=torch.Generator().manual_seed(2)), name)
        assert (G.synthesize_from(other, name, z) - x).abs().mean() > 1e-3
    name = next(iter(layers))
    with pytest.raises(LatentcompError, match="expected"):
        G.synthesize_from(torch.zeros(2, 1, 1, 1), name, z)
    with pytest.raises(LatentcompError, match="unknown feature layer"):
        G.synthesize_from(f, "nope", z)
    # gradients reach the features, not the frozen weights
    f = G.features(z, name).requires_grad_(True)
    G.synthesize_from(f, name, z).square().mean().backward()
    assert f.grad is not None and f.grad.abs().sum() > 0
    assert all(p.grad is None for p in G.parameters())


def test_layer_choice():
    G = load_generator("builtin:tiny-random")
    assert list(spatial_layers(G)) == ["4x4", "8x8", "16x16"]
    assert default_layer(G) == "4x4"  # 32 px: the first layer of at least 4 x 4
    assert check_layer(G, "auto") == "4x4" and check_layer(G, "16x16") == "16x16"
    with pytest.raises(LatentcompError, match="cannot be inverted into; .*4x4 128x4x4, 8x8 64x8x8"):
        check_layer(G, "32x32")
    Gs = load_generator("builtin:tiny-random-stylegan2")
    with pytest.raises(LatentcompError, match="cannot be inverted into"):
        check_layer(Gs, "rgb8x8")


@pytest.mark.parametrize("spec", TINY)
def test_layerwise_draws_what_the_latent_cannot(spec, make_pipe):
    pipe = make_pipe(spec)
    x, _, _ = ToyFaces(32, seed=4).render_batch(range(3))  # nothing like what a random GAN draws
    m = torch.ones(1, 1, 32, 32)
    m[..., :, 24:] = 0
    res = invert_layer(pipe, x, m, layer="auto", steps=15, lr=0.1)
    assert res.image.shape == x.shape and res.latent_image.shape == x.shape
    assert (res.known_l1 < res.latent_known_l1 - 0.02).all(), (res.known_l1, res.latent_known_l1)
    assert res.losses[-1] < res.losses[0]
    # no steps: both are the regressor's reconstruction
    zero = invert_layer(pipe, x, m, steps=0)
    assert torch.allclose(zero.image, zero.latent_image, atol=1e-5)
    assert torch.allclose(zero.image, pipe.reconstruct(x, m).cpu(), atol=1e-5)
    # a strong pull back to the latent's features keeps the reconstruction near the latent one
    held = invert_layer(pipe, x, m, steps=15, lr=0.1, feature_weight=1e4)
    assert float((held.image - held.latent_image).abs().mean()) < float(
        (res.image - res.latent_image).abs().mean()
    )
    with pytest.raises(LatentcompError, match="steps must be >= 0"):
        invert_layer(pipe, x, m, steps=-1)


def test_omissions_probe_on_a_tiny_pipeline(pipe):
    from latentcomp.metrics.analyzer import load_analyzer
    from latentcomp.probe.omissions import markdown, omissions

    res = omissions(pipe, load_analyzer("builtin:toyfaces-analyzer"), n=4, steps=5, batch=2)
    assert res["layer"] == "4x4" and res["n"] == 4
    assert res["known_l1_layer"] < res["known_l1_latent"]
    assert "background" in res["parts"] and set(res["attributes"]) >= {"glasses", "hair_style"}
    for p in res["parts"].values():
        assert p["omission"] == pytest.approx(p["recall_layer"] - p["recall_latent"])
        assert 0 <= p["recall_latent"] <= 1 and 0 <= p["recall_layer"] <= 1
    ranked = sorted(res["parts"], key=lambda k: -res["parts"][k]["omission"])
    assert res["omitted_most"] == ranked[:3]
    assert "| part | pixels |" in markdown(res)
    G = load_generator("builtin:tiny-random")

    class Gray(Pipeline):
        @property
        def channels(self):
            return 1

    with pytest.raises(LatentcompError, match="needs a toyfaces model"):
        omissions(Gray(G, build_regressor(G)), None, n=1)


def test_cli_invert_and_probe_omissions(tmp_path, capsys):
    G = load_generator("builtin:tiny-random")
    torch.manual_seed(0)
    save_regressor(build_regressor(G), tmp_path / "reg")
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(
        tmp_path / "a.png"
    )
    model = tmp_path / "reg.safetensors"
    code, so, err = run_cli(
        [
            "invert",
            "--model",
            model,
            "--image",
            tmp_path / "a.png",
            "--layer",
            "8x8",
            "--steps",
            "3",
            "--out",
            tmp_path / "o.png",
        ],
        capsys,
    )
    assert code == 0, err
    assert "layer-wise inversion into 8x8" in so
    for name in ("o.png", "o_latent.png", "o_gap.png"):
        assert (tmp_path / name).is_file()
    code, so, err = run_cli(
        [
            "invert",
            "--model",
            model,
            "--image",
            tmp_path / "a.png",
            "--steps",
            "2",
            "--out",
            tmp_path / "l.png",
        ],
        capsys,
    )
    assert code == 0 and "latent inversion" in so and (tmp_path / "l.png").is_file()
    code, _, err = run_cli(
        [
            "invert",
            "--model",
            model,
            "--image",
            tmp_path / "a.png",
            "--layer",
            "64x64",
            "--out",
            tmp_path / "x.png",
        ],
        capsys,
    )
    assert code == 2 and err.count("\n") == 1 and "spatial feature layers of this generator: 4x4" in err
    out = tmp_path / "om"
    code, so, err = run_cli(
        ["probe", "omissions", "--model", "builtin:tiny-random", "--n", "2", "--steps", "2", "--out", out],
        capsys,
    )
    assert code == 0, err
    for name in ("omissions.md", "omissions.json", "omissions.png"):
        assert (out / name).is_file()
    assert "parts omitted most" in (out / "omissions.md").read_text()
