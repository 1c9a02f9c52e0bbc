"""progan:PATH — pytorch_GAN_zoo PGAN files and the GAN Dissect ProGAN layout.

The state dicts are built by hand with the official key names and containers; the expected images come
from small functional references written here (F.linear / F.conv2d straight from the tensors).
"""

import math
import sys
import types
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from latentcomp import LatentcompError, load_generator
from latentcomp.generators.progan import WScale, ZooEqualized

NZ = 16


def pn(x):
    return x * torch.rsqrt(x.pow(2).mean(1, keepdim=True) + 1e-8)


def up2(x):
    return x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)


# ------------------------------------------------------------------------------------- GAN zoo


def zoo_state_dict(depths=(8, 6, 4), channels=3, seed=0):
    g = torch.Generator().manual_seed(seed)

    def r(*shape):
        return torch.randn(*shape, generator=g)

    d0 = depths[0]
    sd = OrderedDict()
    sd["formatLayer.module.weight"] = r(16 * d0, NZ)
    sd["formatLayer.module.bias"] = r(16 * d0) * 0.5
    sd["groupScale0.0.module.weight"] = r(d0, d0, 3, 3)
    sd["groupScale0.0.module.bias"] = r(d0) * 0.5
    for i, (a, b) in enumerate(zip(depths[:-1], depths[1:], strict=True)):
        sd[f"scaleLayers.{i}.0.module.weight"] = r(b, a, 3, 3)
        sd[f"scaleLayers.{i}.0.module.bias"] = r(b) * 0.5
        sd[f"scaleLayers.{i}.1.module.weight"] = r(b, b, 3, 3)
        sd[f"scaleLayers.{i}.1.module.bias"] = r(b) * 0.5
    for i, d in enumerate(depths):
        sd[f"toRGBLayers.{i}.module.weight"] = r(channels, d, 1, 1)
        sd[f"toRGBLayers.{i}.module.bias"] = r(channels) * 0.5
    return sd


def zoo_reference(sd, z, alpha=0.0):
    """The zoo GNet forward, pre output activation: equalized layers scale (W x + b) by sqrt(2 / fan_in)."""

    def lin(x, name):
        w, b = sd[f"{name}.module.weight"], sd[f"{name}.module.bias"]
        return F.linear(x, w, b) * math.sqrt(2 / w.shape[1])

    def conv(x, name):
        w, b = sd[f"{name}.module.weight"], sd[f"{name}.module.bias"]
        return F.conv2d(x, w, b, padding=w.shape[-1] // 2) * math.sqrt(2 / (w.shape[1] * w.shape[2] ** 2))

    x = pn(F.leaky_relu(lin(pn(z), "formatLayer"), 0.2).view(z.shape[0], -1, 4, 4))
    x = pn(F.leaky_relu(conv(x, "groupScale0.0"), 0.2))
    n = sum(1 for k in sd if k.startswith("scaleLayers.") and k.endswith(".0.module.weight"))
    prev = x
    for i in range(n):
        prev = x
        x = up2(x)
        x = pn(F.leaky_relu(conv(x, f"scaleLayers.{i}.0"), 0.2))
        x = pn(F.leaky_relu(conv(x, f"scaleLayers.{i}.1"), 0.2))
    out = conv(x, f"toRGBLayers.{n}")
    if alpha > 0:
        out = alpha * up2(conv(prev, f"toRGBLayers.{n - 1}")) + (1 - alpha) * out
    return out


@pytest.fixture
def fake_zoo_config_class(monkeypatch):
    """A class pickled as models.utils.config.BaseConfig, removed again before loading."""
    mod = types.ModuleType("models.utils.config")

    class BaseConfig:
        pass

    BaseConfig.__module__ = "models.utils.config"
    BaseConfig.__qualname__ = "BaseConfig"
    mod.BaseConfig = BaseConfig
    for parent in ("models", "models.utils"):
        monkeypatch.setitem(sys.modules, parent, types.ModuleType(parent))
    monkeypatch.setitem(sys.modules, "models.utils.config", mod)
    return BaseConfig


def save_zoo(path, config, sd_avg, sd_g=None):
    sd_g = sd_g if sd_g is not None else OrderedDict((k, torch.zeros_like(v)) for k, v in sd_avg.items())
    torch.save({"config": config, "netG": sd_g, "netD": OrderedDict(), "avgG": sd_avg}, path)


def check_generator(G, shape, n=3):
    z = G.sample_latent(n, generator=torch.Generator().manual_seed(0))
    assert torch.equal(z, G.sample_latent(n, generator=torch.Generator().manual_seed(0)))
    x = G(z)
    assert x.shape == (n, *shape) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1 and x.std() > 0
    assert torch.equal(G(z.clone()), x)
    z.requires_grad_(True)
    G(z).square().mean().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    assert all(not p.requires_grad and p.grad is None for p in G.parameters())


def test_zoo_pgan_file_with_config_object(tmp_path, fake_zoo_config_class, monkeypatch):
    cfg = fake_zoo_config_class()
    cfg.__dict__.update(
        depthScale0=8, depthOtherScales=[6, 4], lossCriterion="MSE", leakyReluLeak=0.2,
        perChannelNormalization=True, equalizedlR=True, alpha=0, latentVectorDim=NZ, dimOutput=3,
    )
    sd = zoo_state_dict()
    save_zoo(tmp_path / "celeba_s2_i96000.pt", cfg, sd)
    for name in ("models.utils.config", "models.utils", "models"):
        monkeypatch.delitem(sys.modules, name)  # the loader must not need (or import) the class
    G = load_generator(f"progan:{tmp_path / 'celeba_s2_i96000.pt'}")
    assert "models.utils.config" not in sys.modules
    assert (G.latent_shape, G.resolution, G.channels) == ((NZ,), 16, 3)
    check_generator(G, (3, 16, 16))
    z = torch.randn(4, NZ)
    with torch.no_grad():
        # avgG (not netG); the config object's lossCriterion MSE means a tanh output
        assert torch.allclose(G(z), torch.tanh(zoo_reference(sd, z)), atol=1e-5)
        netg_only = load_generator(f"progan:{tmp_path / 'celeba_s2_i96000.pt'}", use_avg=False)
        assert netg_only(z).abs().max() == 0  # netG was saved as zeros
    assert list(G.feature_layers()) == ["scale0", "scale1", "scale2", "output"]
    assert G.features(z, "scale1").shape == (4, 6, 8, 8)


def test_zoo_key_variants_dict_config_tanh_alpha(tmp_path):
    sd = zoo_state_dict(depths=(8, 4), channels=1)
    z = torch.randn(3, NZ)
    expect = zoo_reference(sd, z)
    # keys without the `.module` infix (what loadStateDictCompatible accepts) and with a DataParallel prefix
    plain = OrderedDict((k.replace(".module.", "."), v) for k, v in sd.items())
    dp = OrderedDict(("module." + k, v) for k, v in sd.items())
    for i, variant in enumerate((plain, dp)):
        save_zoo(tmp_path / f"v{i}.pt", {"lossCriterion": "DCGAN"}, variant)
        G = load_generator(f"progan:{tmp_path / f'v{i}.pt'}")
        assert G.channels == 1 and G.resolution == 8
        with torch.no_grad():
            assert torch.allclose(G(z), torch.tanh(expect), atol=1e-5)
    save_zoo(tmp_path / "alpha.pt", {"alpha": 0.4}, sd)
    G = load_generator(f"progan:{tmp_path / 'alpha.pt'}")
    with torch.no_grad():
        assert torch.allclose(G(z), zoo_reference(sd, z, alpha=0.4).clamp(-1, 1), atol=1e-5)
    torch.save(sd, tmp_path / "bare.pth")  # a bare GNet state dict
    with torch.no_grad():
        bare = load_generator(f"progan:{tmp_path / 'bare.pth'}")
        assert torch.allclose(bare(z), expect.clamp(-1, 1), atol=1e-5)


def test_equalized_lr_scaling():
    # zoo: scale applied after the bias: (W x + b) * sqrt(2 / fan_in)
    lin = nn.Linear(8, 4)
    nn.init.ones_(lin.weight)
    nn.init.ones_(lin.bias)
    assert torch.allclose(ZooEqualized(lin)(torch.ones(1, 8)), torch.full((1, 4), 9 * math.sqrt(2 / 8)))
    conv = nn.Conv2d(4, 2, 3, padding=1)
    assert ZooEqualized(conv).scale == pytest.approx(math.sqrt(2 / 36))
    # GAN Dissect: x * gain / sqrt(fan_in) + b, bias not scaled; gain sqrt(2) / k
    ws = WScale(2, fan_in=8, gain=math.sqrt(2) / 3)
    with torch.no_grad():
        ws.b.fill_(1.0)
    expected = 1 + math.sqrt(2) / 3 / math.sqrt(8)
    assert torch.allclose(ws(torch.ones(1, 2, 1, 1)), torch.full((1, 2, 1, 1), expected))


# --------------------------------------------------------------------------------- GAN Dissect


def dissect_state_dict(sizes=(NZ, 8, 6, 4), channels=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    sd = OrderedDict()
    sd["layer1.conv.weight"] = torch.randn(sizes[1], sizes[0], 4, 4, generator=g)
    sd["layer1.wscale.b"] = torch.randn(sizes[1], generator=g) * 0.5
    sd["layer2.conv.weight"] = torch.randn(sizes[1], sizes[1], 3, 3, generator=g)
    sd["layer2.wscale.b"] = torch.randn(sizes[1], generator=g) * 0.5
    n = 2
    for a, b in zip(sizes[1:-1], sizes[2:], strict=True):
        for cin in (a, b):
            n += 1
            sd[f"layer{n}.conv.weight"] = torch.randn(b, cin, 3, 3, generator=g)
            sd[f"layer{n}.wscale.b"] = torch.randn(b, generator=g) * 0.5
    res = 4 * 2 ** (len(sizes) - 2)
    sd[f"output_{res}x{res}.conv.weight"] = torch.randn(channels, sizes[-1], 1, 1, generator=g)
    sd[f"output_{res}x{res}.wscale.b"] = torch.randn(channels, generator=g) * 0.5
    return sd


def dissect_reference(sd, z):
    x = z.view(z.shape[0], -1, 1, 1)
    n = sum(1 for k in sd if k.startswith("layer") and k.endswith(".conv.weight"))
    for i in range(1, n + 1):
        w, b = sd[f"layer{i}.conv.weight"], sd[f"layer{i}.wscale.b"]
        x = pn(x)
        if i >= 3 and i % 2 == 1:
            x = up2(x)
        k = w.shape[-1]
        x = F.conv2d(x, w, padding=3 if i == 1 else 1) * (math.sqrt(2) / k / math.sqrt(w.shape[1]))
        x = F.leaky_relu(x + b.view(1, -1, 1, 1), 0.2)
    (wk,) = [k for k in sd if k.startswith("output_") and k.endswith("conv.weight")]
    w, b = sd[wk], sd[wk.replace("conv.weight", "wscale.b")]
    return (F.conv2d(pn(x), w) / math.sqrt(w.shape[1]) + b.view(1, -1, 1, 1)).clamp(-1, 1)


def test_gan_dissect_layout(tmp_path):
    sd = dissect_state_dict()
    assert list(sd)[-2:] == ["output_16x16.conv.weight", "output_16x16.wscale.b"]
    torch.save(sd, tmp_path / "churchoutdoor_lsun.pth")
    G = load_generator(f"progan:{tmp_path / 'churchoutdoor_lsun.pth'}")
    assert (G.latent_shape, G.resolution, G.channels) == ((NZ,), 16, 3)
    check_generator(G, (3, 16, 16))
    z = torch.randn(4, NZ)
    with torch.no_grad():
        assert torch.allclose(G(z), dissect_reference(sd, z), atol=1e-5)
    assert list(G.feature_layers()) == [f"layer{i}" for i in range(1, 7)] + ["output"]
    assert G.features(z, "layer4").shape == (4, 6, 8, 8)
    # older naming features.i.* / output.* and a {"state_dict": ...} wrapper
    old = OrderedDict()
    for k, v in sd.items():
        if k.startswith("layer"):
            i, rest = k[len("layer"):].split(".", 1)
            old[f"features.{int(i) - 1}.{rest}"] = v
        else:
            old["output." + k.split(".", 1)[1]] = v
    torch.save({"state_dict": old}, tmp_path / "old.pth")
    with torch.no_grad():
        assert torch.allclose(load_generator(f"progan:{tmp_path / 'old.pth'}")(z), G(z))


def test_errors(tmp_path):
    with pytest.raises(LatentcompError, match="ProGAN checkpoint file not found: .*missing.pth"):
        load_generator(f"progan:{tmp_path / 'missing.pth'}")
    sd = dissect_state_dict()
    sd["layer2.conv.weight"] = torch.zeros(8, 8, 5, 5)
    torch.save(sd, tmp_path / "bad.pth")
    with pytest.raises(LatentcompError) as e:
        load_generator(f"progan:{tmp_path / 'bad.pth'}")
    msg = str(e.value)
    assert "bad.pth" in msg and "layer2.conv.weight" in msg and "(8, 8, 3, 3)" in msg and "\n" not in msg
    zoo = zoo_state_dict(depths=(8, 4))
    zoo["toRGBLayers.1.module.weight"] = torch.zeros(3, 5, 1, 1)
    save_zoo(tmp_path / "badzoo.pt", {}, zoo)
    with pytest.raises(LatentcompError, match=r"badzoo.pt: tensor toRGBLayers.1.module.weight .*\(3, 4, 1"):
        load_generator(f"progan:{tmp_path / 'badzoo.pt'}")
    torch.save({"foo": torch.zeros(2)}, tmp_path / "other.pth")
    with pytest.raises(LatentcompError, match="other.pth: not a ProGAN checkpoint"):
        load_generator(f"progan:{tmp_path / 'other.pth'}")
