"""dcgan:PATH — pytorch/examples netG state dicts and our safetensors format."""

import json
from collections import OrderedDict

import pytest
import torch
from torch import nn

from latentcomp import LatentcompError, load_generator
from latentcomp.generators.dcgan import DCGANNet, infer_dcgan_config, load_dcgan_net, save_dcgan


def official_netg(nz: int, ngf: int, nc: int, n_convs: int) -> nn.Sequential:
    """The pytorch/examples netG `main` Sequential (64x64 has n_convs=5), written out by hand here."""
    layers = []
    chans = [nz] + [ngf * 2 ** (n_convs - 2 - i) for i in range(n_convs - 1)]
    for i in range(n_convs - 1):
        stride, pad = (1, 0) if i == 0 else (2, 1)
        layers += [nn.ConvTranspose2d(chans[i], chans[i + 1], 4, stride, pad, bias=False)]
        layers += [nn.BatchNorm2d(chans[i + 1]), nn.ReLU(True)]
    layers += [nn.ConvTranspose2d(ngf, nc, 4, 2, 1, bias=False), nn.Tanh()]
    main = nn.Sequential(*layers)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in main.modules():
            if isinstance(m, nn.ConvTranspose2d):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * 0.2)
            elif isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(1 + 0.1 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
                m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(1 + torch.rand(m.running_var.shape, generator=g))
    return main.eval()


def save_official(path, nz=16, ngf=4, nc=3, n_convs=4, prefix=""):
    main = official_netg(nz, ngf, nc, n_convs)
    sd = OrderedDict((f"{prefix}main.{k}", v) for k, v in main.state_dict().items())
    torch.save(sd, path)
    return main


def check_generator(G, shape, n=3):
    z = G.sample_latent(n, generator=torch.Generator().manual_seed(0))
    z2 = G.sample_latent(n, generator=torch.Generator().manual_seed(0))
    assert torch.equal(z, z2)
    x = G(z)
    assert x.shape == (n, *shape) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1 and x.std() > 0
    assert torch.equal(G(z2), x)  # deterministic
    z.requires_grad_(True)
    G(z).square().mean().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    assert all(not p.requires_grad and p.grad is None for p in G.parameters())
    assert not G.training


def test_official_layout_64px_keys(tmp_path):
    main = save_official(tmp_path / "netG_epoch_24.pth", nz=100, ngf=4, nc=3, n_convs=5)
    keys = list(torch.load(tmp_path / "netG_epoch_24.pth", weights_only=True))
    assert keys[0] == "main.0.weight" and "main.12.weight" in keys and "main.10.running_var" in keys
    assert list(DCGANNet(100, 4, 3, 64).state_dict()) == keys  # same layout as our trainable net
    G = load_generator(f"dcgan:{tmp_path / 'netG_epoch_24.pth'}")
    assert (G.latent_shape, G.resolution, G.channels, G.latent_spaces) == ((100,), 64, 3, ("z",))
    z = torch.randn(2, 100)
    with torch.no_grad():
        assert torch.allclose(G(z), main(z[:, :, None, None]), atol=1e-6)


@pytest.mark.parametrize("n_convs,nc,res", [(4, 3, 32), (4, 1, 32), (6, 3, 128)])
def test_load_official(tmp_path, n_convs, nc, res):
    save_official(tmp_path / "g.pth", nz=8, ngf=4, nc=nc, n_convs=n_convs)
    G = load_generator(f"dcgan:{tmp_path / 'g.pth'}")
    assert G.resolution == res and G.channels == nc and G.latent_shape == (8,)
    check_generator(G, (nc, res, res))
    assert list(G.feature_layers())[-1] == "output"
    f = G.features(torch.randn(2, 8), "layer1")
    assert f.shape[-1] == 4


def test_dataparallel_prefix_and_nested(tmp_path):
    ref = save_official(tmp_path / "a.pth")
    save_official(tmp_path / "b.pth", prefix="module.")
    torch.save({"netG": torch.load(tmp_path / "a.pth", weights_only=True), "epoch": 3}, tmp_path / "c.pth")
    z = torch.randn(2, 16)
    for name in ("b.pth", "c.pth"):
        G = load_generator(f"dcgan:{tmp_path / name}")
        with torch.no_grad():
            assert torch.allclose(G(z), ref(z[:, :, None, None]), atol=1e-6)


def test_safetensors_roundtrip_and_trainable(tmp_path):
    net = DCGANNet(nz=12, ngf=4, nc=3, resolution=16).reset_parameters_dcgan(torch.Generator().manual_seed(0))
    path = save_dcgan(net, tmp_path / "toy.safetensors", extra={"trained_on": "toyfaces"})
    cfg = json.loads((tmp_path / "toy.json").read_text())
    assert cfg["nz"] == 12 and cfg["resolution"] == 16 and cfg["trained_on"] == "toyfaces"
    back = load_dcgan_net(path)
    assert back.training and all(p.requires_grad for p in back.parameters())
    net.eval()
    back.eval()
    z = torch.randn(3, 12)
    assert torch.equal(back(z), net(z))
    G = load_generator(f"dcgan:{path}")
    check_generator(G, (3, 16, 16))
    assert torch.equal(G(z), net(z))
    # without the JSON side file the config comes from the safetensors metadata
    (tmp_path / "toy.json").unlink()
    assert load_dcgan_net(path).config["nz"] == 12


def test_infer_config():
    sd = DCGANNet(nz=7, ngf=3, nc=1, resolution=32).state_dict()
    cfg = infer_dcgan_config(sd)
    assert cfg == {"format": "latentcomp-dcgan", "nz": 7, "ngf": 3, "nc": 1, "resolution": 32}


def test_errors(tmp_path):
    with pytest.raises(LatentcompError, match="unknown generator kind 'dgan'"):
        load_generator("dgan:x.pth")
    with pytest.raises(LatentcompError, match="not found: .*nope.pth"):
        load_generator(f"dcgan:{tmp_path / 'nope.pth'}")
    save_official(tmp_path / "g.pth")
    sd = torch.load(tmp_path / "g.pth", weights_only=True)
    sd["main.3.weight"] = torch.zeros(16, 5, 4, 4)  # wrong out channels: expected (16, 8, 4, 4)
    torch.save(sd, tmp_path / "bad.pth")
    with pytest.raises(LatentcompError) as e:
        load_generator(f"dcgan:{tmp_path / 'bad.pth'}")
    msg = str(e.value)
    assert "bad.pth" in msg and "main.3.weight" in msg and "(16, 8, 4, 4)" in msg and "\n" not in msg
    torch.save({"foo.weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(LatentcompError, match="other.pth: no DCGAN generator weights"):
        load_generator(f"dcgan:{tmp_path / 'other.pth'}")
    with pytest.raises(LatentcompError, match="resolution 48"):
        DCGANNet(resolution=48)
