"""stylegan2: rosinality .pt and latentcomp safetensors loading, plus the numerics of the native ops."""

from __future__ import annotations

import argparse
import math
import os
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from latentcomp.errors import LatentcompError
from latentcomp.generators import load_generator
from latentcomp.generators.ops import (
    EqualConv2d,
    EqualLinear,
    ModulatedConv2d,
    fused_leaky_relu,
    make_kernel,
    upfirdn2d,
)
from latentcomp.generators.stylegan2 import (
    StyleGAN2Discriminator,
    StyleGAN2Net,
    infer_stylegan2_config,
    save_stylegan2,
)

SMALL = {4: 16, 8: 16, 16: 8, 32: 8}


def small_net(seed=0, img_channels=3, **kw) -> StyleGAN2Net:
    torch.manual_seed(seed)
    net = StyleGAN2Net(32, style_dim=32, n_mlp=3, channels=SMALL, img_channels=img_channels, **kw)
    with torch.no_grad():  # non-zero noise strengths and biases so that every parameter matters
        for name, p in net.named_parameters():
            if name.endswith("noise.weight") or name.endswith("bias"):
                p.add_(0.1 * torch.randn(p.shape))
    return net


def save_rosinality(net: StyleGAN2Net, path, latent_avg=None, **extra) -> None:
    """The exact container of rosinality's train.py / convert_weight.py."""
    ckpt = {
        "g": net.state_dict(),
        "d": {"convs.0.0.weight": torch.randn(8, 3, 1, 1)},
        "g_ema": net.state_dict(),
        "g_optim": {"state": {}, "param_groups": [{"lr": 0.002, "betas": (0.0, 0.99), "params": [0, 1]}]},
        "args": argparse.Namespace(
            size=net.size, n_mlp=net.n_mlp, latent=net.style_dim, channel_multiplier=2
        ),
        "ada_aug_p": 0.0,
    }
    if latent_avg is not None:
        ckpt["latent_avg"] = latent_avg
    ckpt.update(extra)
    torch.save(ckpt, path)


@pytest.fixture
def ros_path(tmp_path):
    net = small_net()
    path = tmp_path / "stylegan2-32.pt"
    save_rosinality(net, path, latent_avg=net.mean_latent(256).reshape(-1))
    return path, net


# ------------------------------------------------------------------------------------------------- ops
def _upfirdn_reference(x: np.ndarray, k: np.ndarray, up: int, down: int, pad: tuple[int, int, int, int]):
    """Direct sums: zero-upsample, pad (negative = crop), correlate with the flipped kernel, subsample."""
    n, c, h, w = x.shape
    u = np.zeros((n, c, h * up, w * up))
    u[:, :, ::up, ::up] = x
    x0, x1, y0, y1 = pad
    p = np.pad(u, ((0, 0), (0, 0), (max(y0, 0), max(y1, 0)), (max(x0, 0), max(x1, 0))))
    p = p[:, :, max(-y0, 0) : p.shape[2] - max(-y1, 0), max(-x0, 0) : p.shape[3] - max(-x1, 0)]
    kf = k[::-1, ::-1]
    kh, kw = k.shape
    oh, ow = p.shape[2] - kh + 1, p.shape[3] - kw + 1
    out = np.zeros((n, c, oh, ow))
    for i in range(kh):
        for j in range(kw):
            out += kf[i, j] * p[:, :, i : i + oh, j : j + ow]
    return out[:, :, ::down, ::down]


@pytest.mark.parametrize(
    "up,down,pad",
    [
        (1, 1, (1, 2, 1, 2)),
        (2, 1, (2, 1, 2, 1)),
        (1, 2, (1, 1, 1, 1)),
        (2, 2, (0, -1, 1, -1)),
        (3, 1, (-2, 3, 0, 0)),
    ],
)
def test_upfirdn2d_matches_direct_convolution(up, down, pad):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 7, 6, generator=g, dtype=torch.float64)
    k = torch.randn(4, 3, generator=g, dtype=torch.float64)  # asymmetric: checks the flip
    got = upfirdn2d(x, k, up=up, down=down, pad=pad)
    ref = _upfirdn_reference(x.numpy(), k.numpy(), up, down, pad)
    assert got.shape == ref.shape
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-10, atol=1e-10)


def test_upsample_blur_keeps_a_constant_image_constant():
    k = make_kernel([1, 3, 3, 1]) * 4
    out = upfirdn2d(torch.ones(1, 1, 6, 6), k, up=2, pad=(2, 1))
    assert out.shape == (1, 1, 12, 12)
    torch.testing.assert_close(out[..., 2:-2, 2:-2], torch.ones(1, 1, 8, 8))
    assert abs(make_kernel([1, 3, 3, 1]).sum().item() - 1) < 1e-6


def test_equalized_lr_scaling():
    torch.manual_seed(0)
    lin = EqualLinear(20, 7, bias_init=0.3, lr_mul=0.01)
    assert lin.weight.std() > 10  # stored at N(0, 1) / lr_mul
    x = torch.randn(5, 20)
    ref = F.linear(x, lin.weight * (1 / math.sqrt(20)) * 0.01, lin.bias * 0.01)
    torch.testing.assert_close(lin(x), ref)
    act = EqualLinear(20, 7, lr_mul=0.5, activation="fused_lrelu")
    with torch.no_grad():
        act.bias.normal_()
    pre = F.linear(x, act.weight * (0.5 / math.sqrt(20))) + act.bias * 0.5
    torch.testing.assert_close(act(x), F.leaky_relu(pre, 0.2) * math.sqrt(2))
    conv = EqualConv2d(3, 4, 3, padding=1)
    xi = torch.randn(2, 3, 5, 5)
    torch.testing.assert_close(conv(xi), F.conv2d(xi, conv.weight / math.sqrt(27), conv.bias, padding=1))


def test_fused_leaky_relu_formula_and_double_backward():
    x = torch.randn(2, 3, 4, 4, requires_grad=True)
    b = torch.randn(3)
    y = fused_leaky_relu(x, b)
    z = x + b.view(1, 3, 1, 1)
    torch.testing.assert_close(y, torch.where(z > 0, z, 0.2 * z) * math.sqrt(2))
    (g,) = torch.autograd.grad(y.square().sum(), x, create_graph=True)
    g.sum().backward()  # second order works (R1 / path-length regularisation)
    assert x.grad is not None


def test_modulated_conv_matches_per_sample_computation():
    torch.manual_seed(0)
    mc = ModulatedConv2d(4, 5, 3, style_dim=6)
    x, style = torch.randn(2, 4, 6, 6), torch.randn(2, 6)
    out = mc(x, style)
    for i in range(2):
        s = F.linear(style[i : i + 1], mc.modulation.weight / math.sqrt(6), mc.modulation.bias)[0]
        w = mc.weight[0] / math.sqrt(4 * 9) * s.view(1, 4, 1, 1)
        w = w / torch.sqrt((w**2).sum(dim=(1, 2, 3), keepdim=True) + 1e-8)
        torch.testing.assert_close(out[i : i + 1], F.conv2d(x[i : i + 1], w, padding=1), rtol=1e-4, atol=1e-5)
    up = ModulatedConv2d(4, 5, 3, style_dim=6, upsample=True)
    assert up(x, style).shape == (2, 5, 12, 12)


# ----------------------------------------------------------------------------------------- the network
def test_net_key_layout_and_num_ws():
    net = small_net()
    keys = set(net.state_dict())
    for k in [
        "style.1.weight",
        "style.3.bias",
        "input.input",
        "conv1.conv.weight",
        "conv1.conv.modulation.bias",
        "conv1.noise.weight",
        "conv1.activate.bias",
        "to_rgb1.bias",
        "to_rgb1.conv.weight",
        "convs.0.conv.blur.kernel",
        "convs.5.conv.weight",
        "to_rgbs.2.upsample.kernel",
        "noises.noise_6",
    ]:
        assert k in keys, k
    assert net.num_ws == 8 and net.state_dict()["convs.0.conv.weight"].shape == (1, 16, 16, 3, 3)
    assert net.state_dict()["noises.noise_6"].shape == (1, 1, 32, 32)


def test_net_trains_and_discriminator_double_backward():
    net, d = small_net(), StyleGAN2Discriminator(32, channels=SMALL)
    net.train()
    img = net(torch.randn(4, 32))
    F.softplus(-d(img)).mean().backward()
    assert all(p.grad is not None for n, p in net.named_parameters()), "every generator parameter gets a grad"
    real = torch.randn(6, 3, 32, 32, requires_grad=True)
    (g,) = torch.autograd.grad(d(real).sum(), real, create_graph=True)
    g.square().sum().backward()
    a, b = net(torch.zeros(1, 32)), net(torch.zeros(1, 32))
    assert not torch.equal(a, b)  # random noise while training
    net.eval()
    assert torch.equal(net(torch.zeros(1, 32)), net(torch.zeros(1, 32)))


@pytest.mark.parametrize("size", [32, 64, 128, 256, 512, 1024])
@pytest.mark.parametrize("cm", [1, 2])
def test_infer_architecture_from_key_shapes(size, cm):
    with torch.device("meta"):
        net = StyleGAN2Net(size, style_dim=512, n_mlp=8, channel_multiplier=cm)
    arch = infer_stylegan2_config(net.state_dict(), "x.pt")
    assert arch == {"size": size, "style_dim": 512, "n_mlp": 8, "channels": net.channels, "img_channels": 3}


# ----------------------------------------------------------------------------------------- the loader
def test_rosinality_checkpoint_loads(ros_path):
    path, net = ros_path
    G = load_generator(f"stylegan2:{path}")
    assert G.resolution == 32 and G.channels == 3 and G.latent_shape == (32,)
    assert G.latent_spaces == ("z", "w", "w+") and G.num_ws == 8 and G.w_dim == 32
    assert G.config["args"]["size"] == 32
    z = G.sample_latent(4, generator=torch.Generator().manual_seed(0))
    x = G(z)
    assert x.shape == (4, 3, 32, 32) and x.dtype == torch.float32
    assert torch.isfinite(x).all() and x.min() >= -1 and x.max() <= 1
    # same weights as the net that was saved (fixed noise = the stored buffers), clamped
    net.eval()
    torch.testing.assert_close(x, net(z, noise_mode="const").clamp(-1, 1))
    z2 = G.sample_latent(4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(z, z2) and torch.equal(G(z2), x)
    # spaces agree
    w = G.mapping(z)
    torch.testing.assert_close(G(w, space="w"), x)
    torch.testing.assert_close(G(G.to_wplus(z, "z"), space="w+"), x)
    # gradients reach the latent, never the weights
    wp = G.to_wplus(z, "z").detach().requires_grad_()
    G(wp, space="w+").sum().backward()
    assert wp.grad is not None and wp.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in G.parameters())


def test_truncation_and_noise_options(ros_path):
    path, net = ros_path
    G0 = load_generator(f"stylegan2:{path}", truncation=0.0)
    z = torch.randn(3, 32)
    x = G0(z)
    torch.testing.assert_close(x[0], x[2])  # psi = 0: every z maps to latent_avg
    torch.testing.assert_close(G0.mapping(z)[1], G0.latent_avg[0])
    Gr = load_generator(f"stylegan2:{path}", noise_mode="random")
    assert not torch.equal(Gr(z[:1]), Gr(z[:1]))
    Gu = load_generator(f"stylegan2:{path}", clamp=False)
    assert torch.isfinite(Gu(z)).all()
    with pytest.raises(LatentcompError, match="unknown option"):
        load_generator(f"stylegan2:{path}", psi=0.5)


def test_bare_state_dict_and_computed_mean(tmp_path):
    net = small_net(img_channels=1)
    torch.save(net.state_dict(), tmp_path / "g.pt")
    G = load_generator(f"stylegan2:{tmp_path / 'g.pt'}", truncation=0.5)
    assert G.channels == 1 and G(torch.randn(2, 32)).shape == (2, 1, 32, 32)
    torch.testing.assert_close(
        G.latent_avg, net.mean_latent(4096, generator=torch.Generator().manual_seed(0))
    )


def test_own_format_roundtrip(tmp_path, ros_path):
    path, net = ros_path
    out = save_stylegan2(net, tmp_path / "run", extra_config={"dataset": "toyfaces"})
    assert out.name == "generator.safetensors" and (tmp_path / "run" / "generator.json").is_file()
    save_stylegan2(net, tmp_path / "g2.safetensors")
    z = torch.randn(2, 32)
    ref = load_generator(f"stylegan2:{path}")(z)
    for spec in (f"stylegan2:{tmp_path / 'run'}", f"stylegan2:{tmp_path / 'g2.safetensors'}"):
        G = load_generator(spec)
        torch.testing.assert_close(G(z), ref)
    assert load_generator(f"stylegan2:{tmp_path / 'run'}").config["dataset"] == "toyfaces"


def test_features(ros_path):
    G = load_generator(f"stylegan2:{ros_path[0]}")
    z = torch.randn(2, 32)
    layers = G.feature_layers()
    assert {"mapping", "conv4x4", "convs.0", "convs.5", "rgb32x32"} <= set(layers)
    assert G.features(z, "conv4x4").shape == (2, 16, 4, 4)
    assert G.features(z, "convs.3").shape == (2, 8, 16, 16)
    torch.testing.assert_close(G.features(z, "rgb32x32").clamp(-1, 1), G(z))
    with pytest.raises(LatentcompError, match="unknown feature layer"):
        G.features(z, "nope")


def test_errors_name_the_file(tmp_path, ros_path):
    path, net = ros_path
    with pytest.raises(LatentcompError, match="not found"):
        load_generator(f"stylegan2:{tmp_path / 'missing.pt'}")
    sd = net.state_dict()
    sd["convs.2.conv.weight"] = torch.randn(1, 8, 7, 3, 3)
    torch.save({"g_ema": sd}, tmp_path / "bad.pt")
    with pytest.raises(LatentcompError) as e:
        load_generator(f"stylegan2:{tmp_path / 'bad.pt'}")
    msg = str(e.value)
    assert "bad.pt" in msg and "convs.2.conv.weight" in msg and "(1, 8, 16, 3, 3)" in msg and "\n" not in msg
    torch.save({"something": 1}, tmp_path / "other.pt")
    with pytest.raises(LatentcompError, match="other.pt: no 'g_ema'"):
        load_generator(f"stylegan2:{tmp_path / 'other.pt'}")
    G = load_generator(f"stylegan2:{path}")
    with pytest.raises(LatentcompError, match=r"expected \(N, 8, 32\)"):
        G(torch.randn(2, 7, 32), space="w+")


class _Evil:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_malicious_checkpoint_is_refused(tmp_path, ros_path):
    target = tmp_path / "pwned"
    ckpt = {"g_ema": ros_path[1].state_dict(), "args": _Evil(target)}
    torch.save(ckpt, tmp_path / "evil.pt")
    with pytest.raises(LatentcompError, match="refusing"):
        load_generator(f"stylegan2:{tmp_path / 'evil.pt'}")
    with open(tmp_path / "evil_plain.pt", "wb") as f:
        pickle.dump(ckpt, f)
    with pytest.raises(LatentcompError, match="refusing"):
        load_generator(f"stylegan2:{tmp_path / 'evil_plain.pt'}")
    assert not target.exists()
