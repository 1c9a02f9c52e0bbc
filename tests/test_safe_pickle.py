"""Malicious pickles: refused by safe_load and by every checkpoint loader, without running their payload."""

import argparse
import importlib.util
import os
import pickle
import sys
import types

import pytest
import torch

from latentcomp import LatentcompError, load_generator
from latentcomp.safe_pickle import Stub, safe_load


class SystemPayload:
    """Unpickling calls os.system('touch MARKER')."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


class OpenPayload:
    """Unpickling calls open(MARKER, 'w'), which creates the file."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


class ExecPayload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').close()",))


PAYLOADS = [SystemPayload, OpenPayload, ExecPayload]


def container(payload):
    """A checkpoint-looking dict that every loader would open: tensors next to the payload."""
    return {
        "config": payload,
        "netG": {"main.0.weight": torch.zeros(4, 2, 4, 4)},
        "avgG": {"formatLayer.module.weight": torch.zeros(32, 4)},
        "g_ema": {"style.1.weight": torch.zeros(4, 4)},
        "latent_avg": torch.zeros(4),
        "args": payload,
    }


def write(path, obj, how):
    if how == "zip":
        torch.save(obj, path)
    elif how == "legacy":
        torch.save(obj, path, _use_new_zipfile_serialization=False)
    else:
        with open(path, "wb") as f:
            pickle.dump(obj, f, protocol=2)


@pytest.mark.parametrize("payload", PAYLOADS)
@pytest.mark.parametrize("how", ["zip", "legacy", "pickle"])
def test_safe_load_refuses(tmp_path, payload, how):
    marker = tmp_path / "pwned"
    path = tmp_path / "ckpt.pt"
    write(path, container(payload(marker)), how)
    assert not marker.exists()
    with pytest.raises(LatentcompError, match="refusing to unpickle global") as e:
        safe_load(path, stub=("models.utils.config.", "argparse.Namespace"))
    assert str(path) in str(e.value) and "\n" not in str(e.value)
    assert not marker.exists()


def _kinds():
    kinds = []
    for kind, module in [
        ("dcgan", "latentcomp.generators.dcgan"),
        ("progan", "latentcomp.generators.progan"),
        ("stylegan2", "latentcomp.generators.stylegan2"),
        ("stylegan2-ada", "latentcomp.generators.stylegan2_ada"),
    ]:
        present = importlib.util.find_spec(module) is not None
        skip = pytest.mark.skipif(not present, reason=f"{module} not written yet")
        kinds.append(pytest.param(kind, marks=skip))
    return kinds


@pytest.mark.parametrize("kind", _kinds())
@pytest.mark.parametrize("how", ["zip", "pickle"])
def test_every_loader_refuses(tmp_path, kind, how):
    marker = tmp_path / "pwned"
    for payload in PAYLOADS:
        path = tmp_path / f"{payload.__name__}.pkl"
        write(path, container(payload(marker)), how)
        with pytest.raises(LatentcompError, match="refus") as e:
            load_generator(f"{kind}:{path}")
        assert "\n" not in str(e.value)
        assert not marker.exists(), f"{kind} ran the payload of {payload.__name__}"


def _install_fake_zoo_config(monkeypatch):
    mod = types.ModuleType("models.utils.config")

    class BaseConfig:
        pass

    BaseConfig.__module__, BaseConfig.__qualname__ = "models.utils.config", "BaseConfig"
    mod.BaseConfig = BaseConfig
    for name in ("models", "models.utils"):
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    monkeypatch.setitem(sys.modules, "models.utils.config", mod)
    return BaseConfig


def _remove_fake_zoo_config(monkeypatch):
    for name in ("models.utils.config", "models.utils", "models"):
        monkeypatch.delitem(sys.modules, name)


def test_payload_inside_a_stubbed_class_is_refused(tmp_path, monkeypatch):
    """A class read as a stub (zoo config, argparse.Namespace) cannot smuggle a payload in its state."""
    marker = tmp_path / "pwned"
    BaseConfig = _install_fake_zoo_config(monkeypatch)
    bad, good = BaseConfig(), BaseConfig()
    bad.lossCriterion = SystemPayload(marker)
    good.lossCriterion = "WGANGP"
    torch.save({"config": bad, "netG": {}, "avgG": {}}, tmp_path / "zoo.pt")
    torch.save({"config": good}, tmp_path / "ok.pt")
    torch.save({"args": argparse.Namespace(size=OpenPayload(marker)), "g_ema": {}}, tmp_path / "rosi.pt")
    _remove_fake_zoo_config(monkeypatch)
    for spec in (f"progan:{tmp_path / 'zoo.pt'}", f"stylegan2:{tmp_path / 'rosi.pt'}"):
        with pytest.raises(LatentcompError, match="refusing to unpickle global"):
            load_generator(spec)
    assert not marker.exists()
    # the same class with harmless state is read as an inert record, without importing it
    out = safe_load(tmp_path / "ok.pt", stub=("models.utils.config.",))
    assert isinstance(out["config"], Stub) and out["config"].state == {"lossCriterion": "WGANGP"}
    assert "models.utils.config" not in sys.modules


class _Scripted(torch.nn.Module):
    def forward(self, x):
        return x + 1


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_torchscript_archive_is_refused(tmp_path):
    """torch.load(weights_only=False) would hand it to torch.jit.load, which can run code on load."""
    torch.jit.save(torch.jit.script(_Scripted()), str(tmp_path / "ts.pt"))
    with pytest.raises(LatentcompError, match="TorchScript archive; refusing"):
        safe_load(tmp_path / "ts.pt")
    with pytest.raises(LatentcompError, match="TorchScript"):
        load_generator(f"dcgan:{tmp_path / 'ts.pt'}")


def test_plain_tensors_still_load(tmp_path):
    torch.save({"w": torch.arange(3.0)}, tmp_path / "ok.pt")
    assert torch.equal(safe_load(tmp_path / "ok.pt")["w"], torch.arange(3.0))
    with open(tmp_path / "ok.pkl", "wb") as f:
        pickle.dump({"a": [1, 2], "b": (3.0, "x")}, f, protocol=2)
    assert safe_load(tmp_path / "ok.pkl") == {"a": [1, 2], "b": (3.0, "x")}
    with pytest.raises(LatentcompError, match="checkpoint file not found"):
        safe_load(tmp_path / "absent.pt")
