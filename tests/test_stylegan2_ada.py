"""stylegan2-ada: NVlabs network pickles, built here with the exact persistence structure, read safely."""

from __future__ import annotations

import os
import pickle
import sys
import types
from collections import OrderedDict
from contextlib import contextmanager

import numpy as np
import pytest
import torch

from latentcomp.errors import LatentcompError
from latentcomp.generators import load_generator
from latentcomp.generators.stylegan2 import StyleGAN2Net
from latentcomp.generators.stylegan2_ada import StyleGAN2AdaNet, read_network_pickle

# channel_base / res capped by channel_max: {4: 16, 8: 16, 16: 16, 32: 8}
KW = dict(z_dim=24, c_dim=0, w_dim=16, img_resolution=32, img_channels=3)
SYN = dict(channel_base=256, channel_max=16, num_fp16_res=2, conv_clamp=256)
MAP = dict(num_layers=2)
FAKE_SRC = "# training/networks.py source would be here; it must never be executed\n"


@contextmanager
def fake_nvlabs_modules():
    """`torch_utils.persistence` and `dnnlib.util` stand-ins, present only while a pickle is written."""
    names = ("torch_utils", "torch_utils.persistence", "dnnlib", "dnnlib.util")
    saved = {n: sys.modules.get(n) for n in names}
    mods = {n: types.ModuleType(n) for n in names}

    def _reconstruct_persistent_obj(meta):  # pragma: no cover - only its name is pickled
        raise AssertionError("never called")

    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    mods["torch_utils.persistence"]._reconstruct_persistent_obj = _reconstruct_persistent_obj
    easy = type("EasyDict", (dict,), {"__module__": "dnnlib.util", "__qualname__": "EasyDict"})
    mods["dnnlib.util"].EasyDict = easy
    sys.modules.update(mods)
    try:
        yield _reconstruct_persistent_obj, easy
    finally:
        for n, m in saved.items():
            if m is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = m


class _Persistent:
    """Pickles exactly as a torch_utils.persistence object: `_reconstruct_persistent_obj(meta)`."""

    def __init__(self, fn, meta):
        self.fn, self.meta = fn, meta

    def __reduce__(self):
        return (self.fn, (self.meta,))


def _persist(module, fn, init_kwargs=None, src=FAKE_SRC):
    # NVlabs modules hold numpy scalars (weight_gain = lr / np.sqrt(n), act_gain = np.sqrt(2))
    state = {k: np.float64(v) if isinstance(v, float) else v for k, v in module.__dict__.items()}
    state["_parameters"] = OrderedDict(module._parameters)
    state["_buffers"] = OrderedDict(module._buffers)
    state["_modules"] = OrderedDict((k, _persist(m, fn, src=src)) for k, m in module._modules.items())
    state["_init_args"] = ()
    state["_init_kwargs"] = init_kwargs or {}
    name = {"StyleGAN2AdaNet": "Generator"}.get(type(module).__name__, type(module).__name__)
    return _Persistent(fn, dict(type="class", version=6, module_src=src, class_name=name, state=state))


def make_net(seed=0, kw=KW, syn=SYN, mapping=MAP) -> StyleGAN2AdaNet:
    torch.manual_seed(seed)
    net = StyleGAN2AdaNet(**kw, mapping_kwargs=dict(mapping), synthesis_kwargs=dict(syn))
    with torch.no_grad():  # non-trivial noise strengths, biases and w_avg
        for name, t in net.state_dict().items():
            if name.endswith("noise_strength") or name.endswith("bias") or name.endswith("w_avg"):
                t.add_(0.2 * torch.randn(t.shape))
    return net.eval()


def write_nvlabs_pickle(path, net, kw=KW, syn=SYN, mapping=MAP, src=FAKE_SRC, extra=None):
    """The container of stylegan2-ada-pytorch's network-snapshot-*.pkl, with fake persistence classes."""
    with fake_nvlabs_modules() as (fn, easy):
        init_kwargs = dict(kw, mapping_kwargs=easy(mapping), synthesis_kwargs=easy(syn))
        disc = torch.nn.Module()
        disc.b32 = torch.nn.Linear(2, 2)
        data = {
            "training_set_kwargs": easy(path="ffhq32.zip", resolution=32, use_labels=False, max_size=70000),
            "G": _persist(net, fn, init_kwargs, src),
            "D": _persist(disc, fn, {"c_dim": 0}, src),
            "G_ema": _persist(net, fn, init_kwargs, src),
            "augment_pipe": None,
            **(extra or {}),
        }
        with open(path, "wb") as f:
            pickle.dump(data, f)
    assert "torch_utils.persistence" not in sys.modules and "dnnlib.util" not in sys.modules


@pytest.fixture
def ada(tmp_path):
    net = make_net()
    path = tmp_path / "network-snapshot-000100.pkl"
    write_nvlabs_pickle(path, net)
    return path, net


def test_pickle_loads_through_the_spec(ada):
    path, net = ada
    G = load_generator(f"stylegan2-ada:{path}")
    assert G.resolution == 32 and G.channels == 3 and G.latent_shape == (24,) and G.w_dim == 16
    assert G.num_ws == 8 and G.latent_spaces == ("z", "w", "w+")
    assert G.config["training_set_kwargs"]["resolution"] == 32
    z = G.sample_latent(3, generator=torch.Generator().manual_seed(0))
    x = G(z)
    assert x.shape == (3, 3, 32, 32) and x.dtype == torch.float32
    assert torch.isfinite(x).all() and x.min() >= -1 and x.max() <= 1
    torch.testing.assert_close(x, net(z, noise_mode="const").clamp(-1, 1))
    assert torch.equal(G(G.sample_latent(3, generator=torch.Generator().manual_seed(0))), x)
    torch.testing.assert_close(G(G.mapping(z), space="w"), x)
    torch.testing.assert_close(G(G.to_wplus(z, "z"), space="w+"), x)
    wp = G.to_wplus(z, "z").detach().requires_grad_()
    G(wp, space="w+").square().sum().backward()
    assert wp.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in G.parameters())


def test_truncation_uses_w_avg(ada):
    path, net = ada
    G = load_generator(f"stylegan2-ada:{path}", truncation=0.0)
    w = G.mapping(torch.randn(2, 24))
    torch.testing.assert_close(w, net.mapping.w_avg.expand(2, -1))
    G5 = load_generator(f"stylegan2-ada:{path}", truncation=0.5, noise_mode="random")
    z = torch.randn(1, 24)
    torch.testing.assert_close(G5.mapping(z), net.mapping.w_avg.lerp(net.mapping(z), 0.5))
    assert not torch.equal(G5(z), G5(z))  # random noise on request


def test_same_image_as_rosinality_layout(ada):
    """Two independent code paths (NVlabs conv2d_resample vs rosinality transposed conv + blur) agree."""
    path, ada_net = ada
    sd = ada_net.state_dict()
    s = "synthesis."
    ros = {}  # synthesis only; the mapping is compared below

    def styled(dst, src, noise_idx):
        ros[f"{dst}.conv.weight"] = sd[f"{src}.weight"][None]
        ros[f"{dst}.conv.modulation.weight"] = sd[f"{src}.affine.weight"]
        ros[f"{dst}.conv.modulation.bias"] = sd[f"{src}.affine.bias"]
        ros[f"{dst}.noise.weight"] = sd[f"{src}.noise_strength"].reshape(1)
        ros[f"{dst}.activate.bias"] = sd[f"{src}.bias"]
        ros[f"noises.noise_{noise_idx}"] = sd[f"{src}.noise_const"][None, None]

    def rgb(dst, src):
        ros[f"{dst}.conv.weight"] = sd[f"{src}.weight"][None]
        ros[f"{dst}.conv.modulation.weight"] = sd[f"{src}.affine.weight"]
        ros[f"{dst}.conv.modulation.bias"] = sd[f"{src}.affine.bias"]
        ros[f"{dst}.bias"] = sd[f"{src}.bias"].reshape(1, -1, 1, 1)

    ros["input.input"] = sd[s + "b4.const"][None]
    styled("conv1", s + "b4.conv1", 0)
    rgb("to_rgb1", s + "b4.torgb")
    for j, res in enumerate([8, 16, 32]):
        styled(f"convs.{2 * j}", f"{s}b{res}.conv0", 2 * j + 1)
        styled(f"convs.{2 * j + 1}", f"{s}b{res}.conv1", 2 * j + 2)
        rgb(f"to_rgbs.{j}", f"{s}b{res}.torgb")
    rnet = StyleGAN2Net(32, style_dim=16, n_mlp=2, channels={4: 16, 8: 16, 16: 16, 32: 8}).eval()
    own = rnet.state_dict()
    own.update(ros)
    rnet.load_state_dict(own)
    G = load_generator(f"stylegan2-ada:{path}")
    wp = torch.randn(2, 8, 16)
    torch.testing.assert_close(G.net.synthesis(wp), rnet.synthesis(wp), rtol=1e-4, atol=1e-4)
    # and the mapping, for a net whose z is as wide as w (rosinality's constraint)
    net16 = make_net(kw=dict(KW, z_dim=16))
    for i in range(2):
        own[f"style.{i + 1}.weight"] = net16.state_dict()[f"mapping.fc{i}.weight"]
        own[f"style.{i + 1}.bias"] = net16.state_dict()[f"mapping.fc{i}.bias"]
    rnet.load_state_dict(own)
    z16 = torch.randn(2, 16)
    torch.testing.assert_close(net16.mapping(z16), rnet.mapping(z16), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("architecture", ["orig", "resnet"])
def test_other_synthesis_architectures_and_grayscale(tmp_path, architecture):
    kw, syn = dict(KW, img_channels=1), dict(SYN, architecture=architecture)
    net = make_net(kw=kw, syn=syn)
    write_nvlabs_pickle(tmp_path / "g.pkl", net, kw=kw, syn=syn)
    G = load_generator(f"stylegan2-ada:{tmp_path / 'g.pkl'}")
    z = torch.randn(2, 24)
    assert G(z).shape == (2, 1, 32, 32)
    torch.testing.assert_close(G(z), net(z).clamp(-1, 1))
    assert "b8.torgb" not in G.feature_layers() and "b32.torgb" in G.feature_layers()  # ToRGB only at the end


def test_conditional_network_and_features(tmp_path):
    kw = dict(KW, c_dim=3)
    net = make_net(kw=kw)
    write_nvlabs_pickle(tmp_path / "c.pkl", net, kw=kw)
    z = torch.randn(2, 24)
    G1 = load_generator(f"stylegan2-ada:{tmp_path / 'c.pkl'}", class_idx=1)
    c = torch.tensor([[0.0, 1.0, 0.0]]).expand(2, -1)
    torch.testing.assert_close(G1.mapping(z), net.mapping(z, c))
    with pytest.raises(LatentcompError, match="class_idx 5 out of range"):
        load_generator(f"stylegan2-ada:{tmp_path / 'c.pkl'}", class_idx=5)
    assert G1.features(z, "b16.conv0").shape == (2, 16, 16, 16)
    assert G1.features(z, "b4.conv1").shape == (2, 16, 4, 4)
    assert G1.features(z, "mapping").shape == (2, 16)


def test_malicious_pickles_are_refused_and_never_run(tmp_path, ada):
    target = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {target}",))

    class EvilOpen:
        def __reduce__(self):
            return (open, (str(target), "w"))

    for i, payload in enumerate([Evil(), EvilOpen()]):
        with open(tmp_path / f"evil{i}.pkl", "wb") as f:
            pickle.dump({"G_ema": payload}, f)
        with pytest.raises(LatentcompError, match="refusing to unpickle global"):
            load_generator(f"stylegan2-ada:{tmp_path / f'evil{i}.pkl'}")
    # a persistent object whose module source would write the file if it were exec()ed: read, never run
    src = f"open({str(target)!r}, 'w').write('pwned')\n"
    write_nvlabs_pickle(tmp_path / "src.pkl", make_net(), src=src)
    G = load_generator(f"stylegan2-ada:{tmp_path / 'src.pkl'}")
    assert G(torch.randn(1, 24)).shape == (1, 3, 32, 32)
    # a persistence call with a non-class record
    with fake_nvlabs_modules() as (fn, _):
        with open(tmp_path / "odd.pkl", "wb") as f:
            pickle.dump({"G_ema": _Persistent(fn, {"type": "exec", "module_src": src})}, f)
    with pytest.raises(LatentcompError, match="not a plain class record"):
        load_generator(f"stylegan2-ada:{tmp_path / 'odd.pkl'}")
    assert not target.exists()


def test_errors(tmp_path, ada):
    path, net = ada
    with pytest.raises(LatentcompError, match="not found"):
        load_generator(f"stylegan2-ada:{tmp_path / 'nope.pkl'}")
    with open(tmp_path / "nog.pkl", "wb") as f:
        pickle.dump({"D": 1}, f)
    with pytest.raises(LatentcompError, match="nog.pkl: no 'G_ema'"):
        load_generator(f"stylegan2-ada:{tmp_path / 'nog.pkl'}")
    # weights that do not fit the init kwargs
    wrong = dict(SYN, channel_max=8)
    write_nvlabs_pickle(tmp_path / "bad.pkl", net, syn=wrong)
    with pytest.raises(LatentcompError) as e:
        load_generator(f"stylegan2-ada:{tmp_path / 'bad.pkl'}")
    msg = str(e.value)
    assert "bad.pkl" in msg and "has shape" in msg and "expected" in msg and "\n" not in msg
    with pytest.raises(LatentcompError, match="unknown option"):
        load_generator(f"stylegan2-ada:{path}", psi=0.7)


def test_read_network_pickle_gives_inert_records(ada):
    data = read_network_pickle(ada[0])
    assert set(data) == {"training_set_kwargs", "G", "D", "G_ema", "augment_pipe"}
    G = data["G_ema"]
    assert G.class_name == "Generator" and G.init_kwargs["z_dim"] == 24
    assert G.init_kwargs["synthesis_kwargs"]["channel_base"] == 256
    tensors = G.named_tensors()
    assert tensors["synthesis.b8.conv0.weight"].shape == (16, 16, 3, 3)
    assert tensors["synthesis.b4.const"].shape == (16, 4, 4)
    assert tensors["mapping.w_avg"].shape == (16,)
    assert {"SynthesisLayer", "ToRGBLayer", "FullyConnectedLayer"} <= G.class_names()
    assert "torch_utils" not in sys.modules
