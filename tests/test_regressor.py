import json
from types import SimpleNamespace

import pytest
import torch

from latentcomp.errors import LatentcompError
from latentcomp.regressors import Regressor, build_regressor, load_regressor, save_regressor
from latentcomp.regressors import io as reg_io


def fake_generator(resolution=32, channels=3, latent_shape=(16,), spaces=("z",), num_ws=0, w_dim=0):
    return SimpleNamespace(
        spec="builtin:tiny-random", resolution=resolution, channels=channels, latent_shape=latent_shape,
        latent_spaces=spaces, num_ws=num_ws, w_dim=w_dim,
    )  # fmt: skip


STYLE = dict(spaces=("z", "w", "w+"), latent_shape=(24,), num_ws=6, w_dim=24)


@pytest.mark.parametrize("backbone", ["small", "resnet18", "resnet34"])
@pytest.mark.parametrize(("space", "expected"), [("z", (2, 24)), ("w", (2, 24)), ("w+", (2, 6, 24))])
def test_head_shapes(backbone, space, expected):
    torch.manual_seed(0)
    reg = build_regressor(fake_generator(**STYLE), space=space, backbone=backbone).eval()
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    m = (torch.rand(2, 1, 32, 32) > 0.5).float()
    with torch.no_grad():
        out = reg(x, m)
    assert out.shape == expected
    assert torch.isfinite(out).all()
    assert reg.space == space and reg.rgbm and reg.channels == 3 and reg.resolution == 32


def test_z_head_keeps_the_generator_latent_shape():
    reg = build_regressor(fake_generator(latent_shape=(8, 1, 1)), backbone="small").eval()
    with torch.no_grad():
        assert reg(torch.zeros(3, 3, 32, 32)).shape == (3, 8, 1, 1)


def test_rgbm_input_and_rgb_only_variant():
    g = fake_generator(resolution=28, channels=1)
    reg = build_regressor(g, backbone="small")
    assert reg.backbone.body[0].in_channels == 2  # C + 1
    x = torch.rand(1, 1, 28, 28)
    m = torch.zeros(1, 1, 28, 28)
    m[..., :14] = 1
    inp = reg.prepare_input(x, m)
    assert inp.shape == (1, 2, 28, 28)
    assert torch.equal(inp[:, :1], x * m) and torch.equal(inp[:, 1:], m)
    rgb = build_regressor(g, backbone="small", rgbm=False)
    assert rgb.backbone.body[0].in_channels == 1 and not rgb.rgbm
    assert torch.equal(rgb.prepare_input(x, m), x * m)
    res = build_regressor(fake_generator(channels=3), backbone="resnet18")
    assert res.backbone.stem[0].in_channels == 4


def test_large_generators_are_resized_to_the_working_size():
    reg = build_regressor(fake_generator(resolution=512), backbone="resnet18")
    assert reg.input_size == 256
    assert reg.prepare_input(torch.zeros(1, 3, 512, 512)).shape == (1, 4, 256, 256)
    small = build_regressor(fake_generator(resolution=128), backbone="small")
    assert small.input_size == 64
    assert build_regressor(fake_generator(resolution=64)).backbone_name == "small"  # auto
    assert build_regressor(fake_generator(resolution=256)).backbone_name == "resnet18"
    assert build_regressor(fake_generator(resolution=1024)).backbone_name == "resnet34"


def test_wrong_input_is_a_clear_error():
    reg = build_regressor(fake_generator(), backbone="small")
    with pytest.raises(LatentcompError, match=r"expects images \(N, 3, H, W\)"):
        reg(torch.zeros(1, 1, 32, 32))
    with pytest.raises(LatentcompError, match="not offered"):
        build_regressor(fake_generator(), space="w+")
    with pytest.raises(LatentcompError, match="unknown backbone"):
        build_regressor(fake_generator(), backbone="vit")


def test_save_load_roundtrip(tmp_path):
    torch.manual_seed(0)
    reg = build_regressor(fake_generator(**STYLE), space="w+", backbone="small").eval()
    x = torch.rand(2, 3, 32, 32)
    save_regressor(reg, tmp_path / "model")
    cfg = json.loads((tmp_path / "model.json").read_text())
    assert cfg["generator_spec"] == "builtin:tiny-random" and cfg["space"] == "w+"
    for src in (tmp_path / "model.safetensors", tmp_path / "model"):
        loaded = load_regressor(src)
        assert isinstance(loaded, Regressor) and not loaded.training
        assert loaded.config == reg.config
        with torch.no_grad():
            assert torch.equal(loaded(x), reg(x))
    # a lone .safetensors (config in its metadata) and a float16 copy
    (tmp_path / "model.json").unlink()
    assert load_regressor(tmp_path / "model.safetensors").config == reg.config
    save_regressor(reg, tmp_path / "half", half=True)
    half = load_regressor(tmp_path / "half.safetensors")
    assert next(half.parameters()).dtype == torch.float32
    with torch.no_grad():
        assert torch.allclose(half(x), reg(x), atol=5e-2)


def test_run_folder_and_builtin(tmp_path, monkeypatch):
    reg = build_regressor(fake_generator(), backbone="small").eval()
    run = tmp_path / "run"
    save_regressor(reg, run / "last", write_json=False)
    (run / "config.json").write_text(json.dumps({**reg.config, "train": {"steps": 1}}))
    assert load_regressor(run).config == reg.config
    save_regressor(reg, run / "best", write_json=False)
    assert reg_io.resolve_regressor_file(run).name == "best.safetensors"

    monkeypatch.setattr(reg_io, "WEIGHTS_DIR", tmp_path / "weights")
    save_regressor(reg, tmp_path / "weights" / "tiny-reg")
    assert load_regressor("builtin:tiny-reg").config == reg.config
    assert reg_io.builtin_regressors() == ["tiny-reg"]
    with pytest.raises(LatentcompError, match="unknown builtin regressor 'builtin:nope'.*builtin:tiny-reg"):
        load_regressor("builtin:nope")


def test_bad_files_name_the_file(tmp_path):
    with pytest.raises(LatentcompError, match="regressor not found: .*missing"):
        load_regressor(tmp_path / "missing.safetensors")
    with pytest.raises(LatentcompError, match="holds no best.safetensors or last.safetensors"):
        load_regressor(tmp_path)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file at all")
    with pytest.raises(LatentcompError, match=f"cannot read regressor weights {bad}"):
        load_regressor(bad)
    # weights of another architecture than the config says
    reg = build_regressor(fake_generator(), backbone="small")
    save_regressor(reg, tmp_path / "m")
    cfg = json.loads((tmp_path / "m.json").read_text())
    (tmp_path / "m.json").write_text(json.dumps({**cfg, "latent_shape": [99], "out_shape": [99]}))
    with pytest.raises(LatentcompError, match=r"m.safetensors do not match its config.*head.weight"):
        load_regressor(tmp_path / "m.safetensors")
    (tmp_path / "m.json").write_text("{broken")
    with pytest.raises(LatentcompError, match="m.json is not valid JSON"):
        load_regressor(tmp_path / "m.safetensors")


def test_load_generator_from_recorded_spec():
    reg = build_regressor(fake_generator(latent_shape=(64,)), backbone="small").eval()
    G = reg.load_generator()
    assert G.spec == "builtin:tiny-random" and G.resolution == reg.resolution
    with torch.no_grad():
        assert G(reg(torch.zeros(1, 3, 32, 32))).shape == (1, 3, 32, 32)
