"""gansformer: official PyTorch GANsformer pickles (random weights in the official key layout, written with
the exact torch_utils.persistence structure), read safely; our safetensors format; attention mixing; training.

`official_layout` is an independent listing of the official `training/networks.py` parameter and buffer names
and shapes (dorarad/gansformer, pytorch_version), written from reading that code; the native network must
match it exactly. GOLDEN holds outputs of the official code for the seeded weights below (computed once,
offline, with the official networks.py on CPU).
"""

from __future__ import annotations

import math
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
from latentcomp.generators.gansformer import GANsformerNet, save_gansformer

BUFFERS = ("resample_kernel", "noise_const", "grid_pos", "w_avg")

# a GANsformer in the official default style (resnet, duplex/k-means, mul + layer norm, latent self-attention,
# learned latent positions, 2 heads), 16 px, 3 local components + 1 global
DUPLEX = dict(
    z_dim=8,
    c_dim=0,
    w_dim=8,
    k=4,
    img_resolution=16,
    img_channels=3,
    mapping_kwargs=dict(
        num_layers=3, transformer=True, use_pos=True, resnet=True, ltnt2ltnt=True, num_heads=2
    ),
    synthesis_kwargs=dict(
        channel_base=256,
        channel_max=16,
        transformer=True,
        use_pos=True,
        architecture="resnet",
        kmeans=True,
        integration="mul",
        norm="layer",
        num_heads=2,
    ),
)
# simplex attention, skip architecture, additive integration, conditional, latent and image gates
SIMPLEX = dict(
    z_dim=16,
    c_dim=2,
    w_dim=16,
    k=3,
    img_resolution=16,
    img_channels=3,
    mapping_kwargs=dict(num_layers=2, transformer=True, ltnt_gate=True),
    synthesis_kwargs=dict(
        channel_base=256, channel_max=16, transformer=True, ltnt_gate=True, img_gate=True, start_res=3
    ),
)


# --------------------------------------------------------------------------------------------------
# the official layout, listed independently of the implementation
def _fc(prefix, out_dim, in_dim):
    return {f"{prefix}.weight": (out_dim, in_dim), f"{prefix}.bias": (out_dim,)}


def _attention(prefix, dim, pos_dim, from_dim, to_dim, to_len, kw, from_gate=False, to_gate=False):
    heads = kw.get("num_heads", 1)
    keys = {}
    for name, d_in in (("to_queries", from_dim), ("to_keys", to_dim), ("to_values", to_dim)):
        keys.update(_fc(f"{prefix}.{name}", dim, d_in))
    keys.update(_fc(f"{prefix}.from_pos_map", dim, pos_dim))
    keys.update(_fc(f"{prefix}.to_pos_map", dim, pos_dim))
    for name, on in (("to_gate_attention", to_gate), ("from_gate_attention", from_gate)):
        if on:
            keys.update(_fc(f"{prefix}.{name}.gate", heads, dim))
            keys.update(_fc(f"{prefix}.{name}.gate_pos", heads, pos_dim))
    keys.update(_fc(f"{prefix}.modulation", 2 * dim if kw.get("integration") == "both" else dim, dim))
    if kw.get("kmeans"):
        keys[f"{prefix}.att_weight"] = (heads, 1, 2 * dim // heads)
        keys[f"{prefix}.centroids"] = (1, heads, to_len, 2 * dim // heads)
    return keys


def _mlp(prefix, channels, resnet, sa_kw=None, to_len=0, gate=False):
    keys = {}
    n = len(channels) // 2 if resnet else len(channels) - 1
    for i in range(n):
        if sa_kw is not None:
            d = channels[i]
            keys.update(_attention(f"{prefix}.sa{i}", d, d, d, d, to_len, sa_kw, gate, gate))
        if resnet:
            keys.update(_fc(f"{prefix}.l{i}.fc0", channels[i], channels[i]))
            keys.update(_fc(f"{prefix}.l{i}.fc1", channels[i], channels[i]))
        else:
            keys.update(_fc(f"{prefix}.l{i}", channels[i + 1], channels[i]))
    keys.update(_fc(f"{prefix}.out_layer", channels[-1], channels[-1]))
    return keys


def official_layout(cfg) -> dict[str, tuple[int, ...]]:
    z, c, w, k, res_out = cfg["z_dim"], cfg["c_dim"], cfg["w_dim"], cfg["k"], cfg["img_resolution"]
    m, s = cfg["mapping_kwargs"], cfg["synthesis_kwargs"]
    keys: dict[str, tuple[int, ...]] = {"pos": (k - 1, w)}
    # mapping
    keys["mapping.w_avg"] = (w,)
    e = (m.get("embed_dim") or z) if c else 0
    if c:
        keys.update(_fc("mapping.embed", e, c))
    layers = [m.get("layer_dim") or w] * (m.get("num_layers", 8) - 1) + [w]
    keys.update(_mlp("mapping.global_mlp", [z + e] + layers, m.get("resnet", False)))
    sa_kw = dict(num_heads=m.get("num_heads", 1)) if m.get("ltnt2ltnt") else None
    gate = m.get("ltnt_gate", False)
    keys.update(_mlp("mapping.mlp", [z] + layers, m.get("resnet", False), sa_kw, k - 1, gate))
    # synthesis
    arch = s.get("architecture", "skip")
    width = lambda r: min(s["channel_base"] // r, s["channel_max"])  # noqa: E731
    pos_dim = s.get("pos_dim") or w
    for r in [2**i for i in range(2, int(math.log2(res_out)) + 1)]:
        b = f"synthesis.b{r}"
        keys[f"{b}.resample_kernel"] = (4, 4)
        att = s.get("transformer") and s.get("start_res", 0) <= math.log2(r) < s.get("end_res", 20)

        def layer(name, d_in, d_out, plain=False, r=r, b=b, att=att):
            keys.update(_fc(f"{b}.{name}.affine", d_in, w))
            keys[f"{b}.{name}.weight"] = (d_out, d_in, 3, 3)
            keys[f"{b}.{name}.resample_kernel"] = (4, 4)
            if plain:
                return
            keys[f"{b}.{name}.noise_const"] = (r, r)
            keys[f"{b}.{name}.noise_strength"] = ()
            keys[f"{b}.{name}.biasAct.bias"] = (d_out,)
            if att:
                keys[f"{b}.{name}.grid_pos"] = (r, r, pos_dim)
                keys.update(
                    _attention(
                        f"{b}.{name}.transformer",
                        d_out,
                        pos_dim,
                        d_out,
                        w,
                        k - 1,
                        s,
                        s.get("img_gate", False),
                        s.get("ltnt_gate", False),
                    )
                )

        if r == 4:
            keys[f"{b}.const"] = (width(4), 4, 4)
        else:
            layer("conv0", width(r // 2), width(r))
            if arch == "resnet":
                keys[f"{b}.skip.weight"] = (width(r), width(r // 2), 1, 1)
                keys[f"{b}.skip.resample_kernel"] = (4, 4)
        layer("conv1", width(r), width(r))
        if r == res_out or arch == "skip":
            keys.update(_fc(f"{b}.torgb.affine", width(r), w))
            keys[f"{b}.torgb.weight"] = (cfg["img_channels"], width(r), 1, 1)
            keys[f"{b}.torgb.biasAct.bias"] = (cfg["img_channels"],)
        if r == res_out:
            layer("conv_last", width(r), width(r), plain=True)
    return keys


def official_tensors(cfg, seed=0) -> dict[str, torch.Tensor]:
    """Seeded random values for every official tensor (buffers: the real filter, sinus positions)."""
    from latentcomp.generators.gansformer import sinusoidal_grid
    from latentcomp.generators.stylegan2_ada import setup_filter

    gen = torch.Generator().manual_seed(seed)
    out = {}
    for name, shape in official_layout(cfg).items():
        leaf = name.rsplit(".", 1)[-1]
        if leaf == "resample_kernel":
            out[name] = setup_filter([1, 3, 3, 1])
        elif leaf == "grid_pos":
            out[name] = sinusoidal_grid(shape[0], shape[2])
        elif leaf == "noise_strength":
            out[name] = torch.randn(shape, generator=gen) * 0.3
        else:
            out[name] = torch.randn(shape, generator=gen)
    return out


# values of the official networks.py (CPU, float32) for official_tensors(DUPLEX, 0) and z of seed 5
GOLDEN_Z_SEED = 5
GOLDEN = {
    "mean": 1.4685081243515015,
    "std": 2.306684970855713,
    "pixel": [0.35488924384117126, 4.810672760009766],
}


# --------------------------------------------------------------------------------------------------
# writing an official network pickle (the torch_utils.persistence structure)
FAKE_SRC = "open('{marker}', 'w').close()  # training/networks.py would be here; never executed\n"
_CLASS = {
    "": "Generator",
    "mapping": "MappingNetwork",
    "global_mlp": "MLP",
    "mlp": "MLP",
    "synthesis": "SynthesisNetwork",
    "conv0": "SynthesisLayer",
    "conv1": "SynthesisLayer",
    "conv_last": "SynthesisLayer",
    "torgb": "ToRGBLayer",
    "biasAct": "BiasActLayer",
    "skip": "Conv2dLayer",
    "transformer": "TransformerLayer",
    "to_gate_attention": "GateAttention",
    "from_gate_attention": "GateAttention",
}


@contextmanager
def fake_official_modules():
    """`torch_utils.persistence` and `dnnlib.util` stand-ins, present only while a pickle is written."""
    names = ("torch_utils", "torch_utils.persistence", "dnnlib", "dnnlib.util")
    saved = {n: sys.modules.get(n) for n in names}
    mods = {n: types.ModuleType(n) for n in names}

    def _reconstruct_persistent_obj(meta):  # pragma: no cover - only its name is pickled
        raise AssertionError("never called")

    _reconstruct_persistent_obj.__module__ = "torch_utils.persistence"
    _reconstruct_persistent_obj.__qualname__ = "_reconstruct_persistent_obj"
    mods["torch_utils.persistence"]._reconstruct_persistent_obj = _reconstruct_persistent_obj
    mods["dnnlib.util"].EasyDict = type(
        "EasyDict", (dict,), {"__module__": "dnnlib.util", "__qualname__": "EasyDict"}
    )
    sys.modules.update(mods)
    try:
        yield _reconstruct_persistent_obj, mods["dnnlib.util"].EasyDict
    finally:
        for n, mod in saved.items():
            if mod is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = mod


class _Persistent:
    def __init__(self, fn, meta):
        self.fn, self.meta = fn, meta

    def __reduce__(self):
        return (self.fn, (self.meta,))


def _class_of(name: str) -> str:
    if name in _CLASS:
        return _CLASS[name]
    if name.startswith("b") and name[1:].isdigit():
        return "SynthesisBlock"
    if name.startswith("sa") and name[2:].isdigit():
        return "TransformerLayer"
    return "FullyConnectedLayer"


def _records(tensors: dict, fn, easy, init_kwargs, marker):
    """Nested persistence records from flat official names; TransformerLayers get their Dropout and gates."""
    tree: dict = {}
    for name, t in tensors.items():
        node = tree
        *path, leaf = name.split(".")
        for part in path:
            node = node.setdefault(part, {})
        node[leaf] = t

    def build(node, name, path):
        cls = _class_of(name)
        if name.startswith("l") and name[1:].isdigit() and any(isinstance(v, dict) for v in node.values()):
            cls = "ResnetLayer"
        children = {k: v for k, v in node.items() if isinstance(v, dict)}
        leaves = {k: v for k, v in node.items() if not isinstance(v, dict)}
        params = OrderedDict(
            (k, torch.nn.Parameter(v, requires_grad=False)) for k, v in leaves.items() if k not in BUFFERS
        )
        buffers = OrderedDict((k, v) for k, v in leaves.items() if k in BUFFERS)
        mods = OrderedDict((k, build(v, k, f"{path}{k}.")) for k, v in children.items())
        if cls == "TransformerLayer":
            mods["att_dp"] = torch.nn.Dropout(p=0.06)  # a plain torch module, as in the official networks
            for g in ("to_gate_attention", "from_gate_attention"):
                mods.setdefault(g, build({}, g, f"{path}{g}."))
        state = {
            "training": False,
            "w_gain": np.float64(0.125),  # NVlabs-style modules hold numpy scalars
            "_parameters": params,
            "_buffers": buffers,
            "_non_persistent_buffers_set": set(),
            "_modules": mods,
            "_forward_hooks": OrderedDict(),
            "_init_args": (),
            "_init_kwargs": init_kwargs if cls == "Generator" else easy(),
        }
        src = FAKE_SRC.format(marker=marker)
        return _Persistent(fn, dict(type="class", version=6, module_src=src, class_name=cls, state=state))

    return build(tree, "", "")


def write_official_pickle(
    path, cfg, tensors=None, marker="never-created", kwargs_patch=None, key="Gs", drop=()
):
    tensors = official_tensors(cfg) if tensors is None else tensors
    with fake_official_modules() as (fn, easy):
        kw = easy(cfg)
        kw["mapping_kwargs"] = easy(cfg["mapping_kwargs"])
        kw["synthesis_kwargs"] = easy(cfg["synthesis_kwargs"], **(kwargs_patch or {}))
        kw.update(
            reg_interval=4, component_dropout=0.0, crop_ratio=None
        )  # top-level options the code ignores
        for name in drop:
            del kw[name]
        G = _records(tensors, fn, easy, kw, marker)
        data = {
            "dataset_args": easy(path="datasets/x", resolution=cfg["img_resolution"]),
            "G": G,
            "D": None,
            key: G,
        }
        with open(path, "wb") as f:
            pickle.dump(data, f, protocol=4)
    return path


@pytest.fixture(scope="module")
def official_pkl(tmp_path_factory):
    return write_official_pickle(tmp_path_factory.mktemp("gf") / "network-snapshot-000100.pkl", DUPLEX)


def _z(G, n=2, seed=0):
    return G.sample_latent(n, torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("cfg", [DUPLEX, SIMPLEX], ids=["duplex-resnet", "simplex-skip-gates-cond"])
def test_native_network_has_the_official_keys_and_shapes(cfg):
    own = {k: tuple(v.shape) for k, v in GANsformerNet(**cfg).state_dict().items()}
    official = official_layout(cfg)
    assert sorted(set(own) - set(official)) == [] and sorted(set(official) - set(own)) == []
    assert {k: s for k, s in own.items() if official[k] != s} == {}


def test_official_pickle_loads_with_the_official_numbers(official_pkl):
    G = load_generator(f"gansformer:{official_pkl}")
    assert G.latent_shape == (4, 8) and G.w_dim == 8 and G.components == 4
    assert G.num_ws == 7  # b4: 1, b8: 2, b16: 2 + conv_last + torgb
    assert G.resolution == 16 and G.channels == 3 and G.latent_spaces == ("z", "w", "w+")
    tensors = official_tensors(DUPLEX)
    assert torch.equal(
        G.net.synthesis.b8.conv0.transformer.centroids, tensors["synthesis.b8.conv0.transformer.centroids"]
    )
    assert "ignored_options" not in G.config  # every given option is read
    # same numbers as the official networks.py with these weights (unclamped)
    raw = load_generator(f"gansformer:{official_pkl}", clamp=False)
    z = torch.randn(2, 4, 8, generator=torch.Generator().manual_seed(GOLDEN_Z_SEED))
    img = raw(z)
    assert img.mean().item() == pytest.approx(GOLDEN["mean"], abs=1e-4)
    assert img.std().item() == pytest.approx(GOLDEN["std"], abs=1e-4)
    assert img[1, :2, 7, 9].tolist() == pytest.approx(GOLDEN["pixel"], abs=1e-4)
    x = G(z)
    assert x.dtype == torch.float32 and x.shape == (2, 3, 16, 16) and x.min() >= -1 and x.max() <= 1


def test_spaces_determinism_and_latent_checks(official_pkl):
    G = load_generator(f"gansformer:{official_pkl}")
    z = _z(G, 3)
    x = G(z)
    assert torch.equal(x, G(z))  # fixed noise: reproducible
    assert torch.equal(x, load_generator(f"gansformer:{official_pkl}")(z))
    w = G.mapping(z)
    assert w.shape == (3, 4, 8)
    wp = G.to_wplus(z, "z")
    assert wp.shape == (3, 4, 7, 8)
    torch.testing.assert_close(G(w, space="w"), x)
    torch.testing.assert_close(G(wp, space="w+"), x)
    assert torch.equal(_z(G, 3), z) and z.shape == (3, 4, 8)
    # gradients reach the latent, not the weights
    w = w.clone().requires_grad_(True)
    G(w, space="w").sum().backward()
    assert w.grad is not None and w.grad.abs().sum() > 0
    assert all(p.grad is None for p in G.parameters())
    for bad, space in [(torch.zeros(2, 32), "z"), (torch.zeros(2, 8), "w"), (torch.zeros(2, 7, 8), "w+")]:
        with pytest.raises(LatentcompError, match=r"expected \(N, 4, ") as e:
            G(bad, space=space)
        assert "\n" not in str(e.value)
    with pytest.raises(LatentcompError, match="NaN"):
        G(torch.full((1, 4, 8), float("nan")))
    # truncation 0: every component at w_avg, so every z gives the same image
    T = load_generator(f"gansformer:{official_pkl}", truncation=0.0)
    torch.testing.assert_close(T(_z(T, 1, 1)), T(_z(T, 1, 2)))


def test_attention_mixes_the_components_into_the_image(official_pkl):
    G = load_generator(f"gansformer:{official_pkl}")
    w = G.mapping(_z(G, 1))
    base = G(w, space="w")
    for j in range(G.components - 1):  # each local component reaches the image only through attention
        w2 = w.clone()
        w2[:, j] += 1.0
        assert (G(w2, space="w") - base).abs().max() > 1e-3, j
    maps = G.attention_maps(w, space="w")
    assert set(maps) == {f"b{r}.conv{i}" for r in (8, 16) for i in (0, 1)} | {"b4.conv1"}
    m = maps["b16.conv1"]
    assert m.shape == (1, 2, 3, 16, 16)  # heads, local components, positions
    torch.testing.assert_close(m.sum(2), torch.ones(1, 2, 16, 16))
    assert G.features(w, "b16.conv1", space="w").shape == (1, 16, 16, 16)


def test_simplex_with_gates_and_label_loads(tmp_path):
    path = write_official_pickle(tmp_path / "s.pkl", SIMPLEX, key="Gs")
    G = load_generator(f"gansformer:{path}", class_idx=1)
    assert G.latent_shape == (3, 16)
    z = _z(G)
    x = G(z)
    assert x.shape == (2, 3, 16, 16) and torch.isfinite(x).all()
    assert not torch.equal(x, load_generator(f"gansformer:{path}", class_idx=0)(z))
    w = G.mapping(z)
    w2 = w.clone()
    w2[:, 0] += 1.0
    assert (G(w2, space="w") - G(w, space="w")).abs().max() > 1e-3
    with pytest.raises(LatentcompError, match="class_idx 5 out of range"):
        load_generator(f"gansformer:{path}", class_idx=5)


def test_safetensors_roundtrip(tmp_path):
    torch.manual_seed(0)
    net = GANsformerNet(**DUPLEX)
    net.load_state_dict(official_tensors(DUPLEX, seed=3))
    out = save_gansformer(net, tmp_path / "run", extra_config={"trained_steps": 0})
    assert (
        out == tmp_path / "run" / "generator.safetensors" and (tmp_path / "run" / "generator.json").is_file()
    )
    single = save_gansformer(net, tmp_path / "g.safetensors")
    assert not list(tmp_path.rglob("*.tmp"))
    G = load_generator(f"gansformer:{tmp_path / 'run'}")
    z = _z(G)
    with torch.no_grad():
        ref = net.eval()(z).clamp(-1, 1)
    torch.testing.assert_close(G(z), ref)
    torch.testing.assert_close(load_generator(f"gansformer:{single}")(z), ref)
    assert G.config["trained_steps"] == 0


@pytest.mark.parametrize("payload", ["system", "module_src"])
def test_malicious_pickles_are_refused_or_never_executed(tmp_path, payload):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    if payload == "system":

        class Evil:
            def __reduce__(self):
                return (os.system, (f"touch '{marker}'",))

        with open(path, "wb") as f:
            pickle.dump({"G": Evil(), "Gs": Evil()}, f)
        with pytest.raises(LatentcompError, match="refusing to unpickle global") as e:
            load_generator(f"gansformer:{path}")
        assert "\n" not in str(e.value)
    else:  # the module source in every persistence record would create the marker if executed
        write_official_pickle(path, DUPLEX, marker=marker)
        load_generator(f"gansformer:{path}")
    assert not marker.exists()


def test_bad_files_give_one_line_errors(tmp_path):
    def err(spec, match, **kw):
        with pytest.raises(LatentcompError, match=match) as e:
            load_generator(spec, **kw)
        assert "\n" not in str(e.value), str(e.value)

    err(f"gansformer:{tmp_path / 'missing.pkl'}", "not found")
    (tmp_path / "junk.pkl").write_bytes(b"not a pickle at all")
    err(f"gansformer:{tmp_path / 'junk.pkl'}", "cannot read")
    with open(tmp_path / "list.pkl", "wb") as f:
        pickle.dump([1, 2], f)
    err(f"gansformer:{tmp_path / 'list.pkl'}", "expected a dict with 'Gs'")
    with open(tmp_path / "nog.pkl", "wb") as f:
        pickle.dump({"D": None}, f)
    err(f"gansformer:{tmp_path / 'nog.pkl'}", "no 'Gs' generator")
    # a StyleGAN2-ADA-like generator (no k) is pointed at the right kind
    write_official_pickle(tmp_path / "ada.pkl", DUPLEX, drop=("k",))
    err(f"gansformer:{tmp_path / 'ada.pkl'}", "stylegan2-ada")
    # a tensor of the wrong shape, an option we cannot reproduce, a TensorFlow pickle
    tensors = official_tensors(DUPLEX)
    tensors["synthesis.b8.conv1.weight"] = torch.zeros(16, 16, 1, 1)
    write_official_pickle(tmp_path / "shape.pkl", DUPLEX, tensors=tensors)
    err(f"gansformer:{tmp_path / 'shape.pkl'}", r"synthesis.b8.conv1.weight has shape \(16, 16, 1, 1\)")
    write_official_pickle(tmp_path / "iter.pkl", DUPLEX, kwargs_patch={"iterative": True})
    err(f"gansformer:{tmp_path / 'iter.pkl'}", "unsupported GANsformer options: synthesis iterative=True")
    tensors = official_tensors(DUPLEX)
    del tensors["mapping.w_avg"]
    write_official_pickle(tmp_path / "missing.pkl", DUPLEX, tensors=tensors)
    err(f"gansformer:{tmp_path / 'missing.pkl'}", r"missing \['mapping.w_avg'\]")
    names = ("dnnlib", "dnnlib.tflib", "dnnlib.tflib.network")
    saved = {n: sys.modules.get(n) for n in names}
    sys.modules.update({n: types.ModuleType(n) for n in names})
    network = type("Network", (dict,), {"__module__": "dnnlib.tflib.network"})
    sys.modules["dnnlib.tflib.network"].Network = network
    try:
        with open(tmp_path / "tf.pkl", "wb") as f:
            pickle.dump((network(a=1), network(), network()), f, protocol=4)
    finally:
        for n, mod in saved.items():
            if mod is None:
                sys.modules.pop(n, None)
            else:
                sys.modules[n] = mod
    err(f"gansformer:{tmp_path / 'tf.pkl'}", "TensorFlow GANsformer pickle; convert it")
    # our format: missing config, wrong format name
    torch.manual_seed(0)
    save_gansformer(GANsformerNet(**SIMPLEX), tmp_path / "own")
    (tmp_path / "own" / "generator.json").write_text('{"format": "other", "architecture": {}}')
    err(f"gansformer:{tmp_path / 'own'}", "format is 'other'")
    (tmp_path / "own" / "generator.json").unlink()
    err(f"gansformer:{tmp_path / 'own'}", "file not found: .*generator.json")
    err(f"gansformer:{tmp_path / 'own'}", "unknown option", foo=1)


def test_gan_training_exports_a_loadable_gansformer(tmp_path):
    from latentcomp.training.gan import GANConfig, GANTrainer

    cfg = GANConfig(
        arch="gansformer",
        resolution=32,
        steps=2,
        batch=2,
        pool_size=8,
        z_dim=16,
        width=2,
        checkpoint_every=2,
        sample_every=1000,
    )
    trainer = GANTrainer(cfg, tmp_path / "run")
    trainer.train(progress=False, log_dir=False)
    assert trainer.step == 2 and (tmp_path / "run" / "samples.png").is_file()
    G = load_generator(f"gansformer:{tmp_path / 'run' / 'generator.safetensors'}")
    assert G.resolution == 32 and G.latent_shape == (4, 4) and G.config["trained_steps"] == 2
    z = _z(G, 2)
    x = G(z)
    assert x.shape == (2, 3, 32, 32) and torch.isfinite(x).all()
    with torch.no_grad():  # the export is the EMA network, as trained
        ref = trainer.G_ema(z, noise_mode="const").clamp(-1, 1)
    torch.testing.assert_close(x, ref)
    with pytest.raises(LatentcompError, match="--z-dim divisible by 16"):
        GANTrainer(GANConfig(arch="gansformer", resolution=32, pool_size=8, z_dim=24), tmp_path / "bad")


def test_regressor_and_pipeline_work_in_z_space(tmp_path):
    from latentcomp.edit.pipeline import Pipeline
    from latentcomp.generators.gansformer import build_gansformer
    from latentcomp.regressors import build_regressor

    torch.manual_seed(0)
    save_gansformer(build_gansformer(32, 64, width=4), tmp_path / "g")
    G = load_generator(f"gansformer:{tmp_path / 'g'}")
    E = build_regressor(G, space="z")
    assert E.space == "z" and E.latent_shape == G.latent_shape
    pipe = Pipeline(G, E)
    a, b = G(_z(G, 1, seed=1)), G(_z(G, 1, seed=2))
    top = torch.zeros(1, 1, 32, 32)
    top[..., :16, :] = 1
    out = pipe.compose([a, b], [top, 1 - top])
    assert out.image.shape == (1, 3, 32, 32) and out.latent.shape == (1, *G.latent_shape)
    assert torch.isfinite(out.image).all()


@pytest.mark.parametrize("space", ["w", "w+"])
def test_per_component_w_regressors_train_reload_and_compose(tmp_path, space):
    """w and w+ regressors predict one w (row) per component: (k, w_dim) and (k, num_ws, w_dim)."""
    from latentcomp.edit.pipeline import Pipeline
    from latentcomp.generators.gansformer import build_gansformer
    from latentcomp.regressors import load_regressor
    from latentcomp.training.regressor import TrainConfig, train_regressor

    torch.manual_seed(0)
    save_gansformer(build_gansformer(32, 64, width=4), tmp_path / "g")
    spec = f"gansformer:{tmp_path / 'g'}"
    G = load_generator(spec)
    cfg = TrainConfig(
        generator=spec, out=str(tmp_path / "reg"), space=space, backbone="small", steps=2, batch=4,
        lpips="none", eval_every=2, test_size=4, tensorboard=False, progress=False, device="cpu",
    )  # fmt: skip
    train_regressor(cfg)
    E = load_regressor(str(tmp_path / "reg"))
    assert E.space == space and E.out_shape == G.space_shape(space)
    pipe = Pipeline(G, E)
    a, b = G(_z(G, 1, seed=1)), G(_z(G, 1, seed=2))
    top = torch.zeros(1, 1, 32, 32)
    top[..., :16, :] = 1
    out = pipe.compose([a, b], [top, 1 - top])
    assert out.latent.shape == (1, *G.space_shape(space)) and torch.isfinite(out.image).all()
    opt = pipe.optimize(a, top, steps=2)  # starts from the mean w, broadcast to every component
    assert opt.latent.shape == (1, *G.space_shape(space)) and torch.isfinite(opt.known_l1).all()
    method = "style" if space == "w+" else "fill"  # style: resample the fine layers of every component
    completions = pipe.inpaint(a, top, n=3, method=method)
    assert completions.images.shape == (1, 3, 3, 32, 32) and torch.isfinite(completions.images).all()
    assert float(completions.diversity.mean()) > 0


def test_independence_reports_which_component_carries_each_part(tmp_path):
    from latentcomp.edit.pipeline import Pipeline
    from latentcomp.generators.gansformer import build_gansformer
    from latentcomp.probe.common import Sizes
    from latentcomp.probe.independence import component_shares, run_independence
    from latentcomp.regressors import build_regressor

    old = torch.zeros(2, 4, 3)
    new = old.clone()
    new[0, 2] = 1.0  # pair 0: only component 2 moves
    new[1] = 0.5  # pair 1: every component moves alike
    shares = component_shares(new, old)
    torch.testing.assert_close(shares, torch.tensor([[0.0, 0.0, 1.0, 0.0], [0.25] * 4]))

    torch.manual_seed(0)
    save_gansformer(build_gansformer(32, 64, width=4), tmp_path / "g")
    G = load_generator(f"gansformer:{tmp_path / 'g'}")
    pipe = Pipeline(G, build_regressor(G, space="w", backbone="small"))
    res = run_independence([pipe], tmp_path / "ind", analyzer=None, sizes=Sizes.quick())
    entry = res["models"][0]
    measured = [c for c in entry["parts"].values() if c.get("pairs")]
    k = G.components
    assert measured and entry["components"] == k == 8
    for c in measured:
        assert len(c["component_share"]) == k and sum(c["component_share"]) == pytest.approx(1.0)
        assert 1 / k - 1e-6 <= c["top_component_share"] <= 1
        assert c["component_share"][c["top_component"]] == max(c["component_share"])
    assert 1 <= entry["distinct_top_components"] <= k
