"""`latentcomp sample --generator SPEC --n N --seed S --out grid.png`."""

import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from latentcomp import LatentcompError
from latentcomp.cli import app
from latentcomp.commands.sample import sample_images
from latentcomp.generators.dcgan import DCGANNet, save_dcgan

runner = CliRunner()


@pytest.fixture
def dcgan_spec(tmp_path):
    net = DCGANNet(nz=8, ngf=4, nc=3, resolution=16).reset_parameters_dcgan(torch.Generator().manual_seed(0))
    return f"dcgan:{save_dcgan(net, tmp_path / 'g.safetensors')}"


def test_sample_grid(tmp_path, dcgan_spec):
    out = tmp_path / "sub" / "grid.png"
    args = ["sample", "--generator", dcgan_spec, "--n", "6", "--seed", "0", "--out", str(out)]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "wrote" in res.output and out.is_file()
    img = Image.open(out)
    assert img.size == (3 * 16 + 4 * 2, 2 * 16 + 3 * 2)  # 3 per row, padding 2
    assert [p.name for p in out.parent.iterdir()] == ["grid.png"]  # no temp file left behind
    again = tmp_path / "again.png"
    runner.invoke(app, ["sample", "-g", dcgan_spec, "--n", "6", "--seed", "0", "--out", str(again)])
    assert again.read_bytes() == out.read_bytes()
    other = tmp_path / "other.png"
    runner.invoke(app, ["sample", "-g", dcgan_spec, "--n", "6", "--seed", "1", "--out", str(other)])
    assert other.read_bytes() != out.read_bytes()


def test_truncation_and_spaces(dcgan_spec):
    full = sample_images(dcgan_spec, n=4, seed=0)
    trunc = sample_images(dcgan_spec, n=4, seed=0, truncation=0.5)
    assert full.shape == trunc.shape == (4, 3, 16, 16) and not torch.equal(full, trunc)
    spec = "builtin:tiny-random-stylegan2"
    z_imgs = sample_images(spec, n=2, seed=0, space="z")
    w_imgs = sample_images(spec, n=2, seed=0, space="w+")
    assert torch.allclose(z_imgs, w_imgs, atol=1e-5)
    t = sample_images(spec, n=2, seed=0, space="w", truncation=0.0001)
    assert (t[0] - t[1]).abs().max() < 0.05  # psi -> 0 collapses to the average w


def test_errors(tmp_path, dcgan_spec):
    res = runner.invoke(app, ["sample", "--generator", "nokind:x", "--out", str(tmp_path / "a.png")])
    assert res.exit_code != 0 and isinstance(res.exception, LatentcompError)
    assert "unknown generator kind 'nokind'" in str(res.exception)
    res = runner.invoke(app, ["sample", "-g", dcgan_spec, "--space", "w", "--out", str(tmp_path / "a.png")])
    assert isinstance(res.exception, LatentcompError) and "--space 'w'" in str(res.exception)
    args = ["sample", "-g", dcgan_spec, "--truncation", "1.5", "--out", str(tmp_path / "a.png")]
    res = runner.invoke(app, args)
    assert isinstance(res.exception, LatentcompError) and "(0, 1]" in str(res.exception)
    assert not (tmp_path / "a.png").exists()
