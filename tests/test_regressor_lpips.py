"""LPIPS for the regressor loss: backbone weights from a path or the torch hub cache, never downloaded."""

import pytest
import torch
import torchvision

from latentcomp import losses
from latentcomp.errors import LatentcompError
from latentcomp.training.regressor import TrainConfig, train_regressor


@pytest.fixture
def no_download(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("tried to download")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)


@pytest.fixture
def hub(tmp_path):
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    yield tmp_path / "hub" / "checkpoints"
    torch.hub.set_dir(old)


def fake_alexnet_weights(path):
    """A torchvision-layout AlexNet state dict (random values; only `features.*` are used by LPIPS)."""
    torch.manual_seed(0)
    features = torchvision.models.alexnet(weights=None).features
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({f"features.{k}": v for k, v in features.state_dict().items()}, path)
    return path


def test_missing_backbone_names_the_file(hub, no_download):
    with pytest.raises(LatentcompError) as e:
        losses.load_lpips("vgg")
    msg = str(e.value)
    assert str(hub / "vgg16-397923af.pth") in msg and "--lpips none" in msg
    with pytest.raises(LatentcompError, match="LPIPS backbone weights file not found: .*nope.pth"):
        losses.load_lpips("alex", weights="nope.pth")
    with pytest.raises(LatentcompError, match="unknown LPIPS network"):
        losses.load_lpips("squeeze")


def test_lpips_from_hub_cache_and_from_a_path(hub, no_download, tmp_path):
    fake_alexnet_weights(hub / "alexnet-owt-7be5be79.pth")
    lp = losses.load_lpips("alex")
    assert lp.weights_path == str(hub / "alexnet-owt-7be5be79.pth")
    assert not any(p.requires_grad for p in lp.parameters())
    x = torch.rand(3, 1, 28, 28) * 2 - 1  # grey and small: repeated to RGB, upsampled to 64 px
    y = torch.rand(3, 1, 28, 28) * 2 - 1
    d = lp(x, y)
    assert d.shape == (3,) and (d > 0).all()
    assert torch.allclose(lp(x, x), torch.zeros(3), atol=1e-6)
    # gradients flow to the images
    x.requires_grad_(True)
    lp(x, y).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    # a wrong file is named
    bad = tmp_path / "bad.pth"
    torch.save({"conv.weight": torch.zeros(1)}, bad)
    with pytest.raises(LatentcompError, match=f"{bad} is not an ImageNet AlexNet state dict"):
        losses.load_lpips("alex", weights=bad)


def test_training_with_lpips_weights_path(tmp_path, hub, no_download):
    w = fake_alexnet_weights(tmp_path / "alex.pth")
    run = TrainConfig(generator="builtin:tiny-random", out=str(tmp_path / "run"), steps=1, batch=4,
                      eval_every=1, test_size=4, lpips="alex", lpips_weights=str(w), tensorboard=False,
                      progress=False, device="cpu")  # fmt: skip
    res = train_regressor(run)
    assert "lpips" in res.last_test and res.last_test["lpips"] > 0
