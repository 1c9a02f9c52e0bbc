"""Multi-code GAN prior (mGANprior): `invert_multicode`, its tasks and `latentcomp invert --codes`."""

from __future__ import annotations

import pytest
import torch
from clirun import run_cli, write_tiny_inputs

from latentcomp import load_generator
from latentcomp.data.toyfaces import ToyFaces
from latentcomp.edit import Pipeline
from latentcomp.edit.multicode import degrade, grey, invert_multicode, invert_multicode_pipe, observe
from latentcomp.errors import LatentcompError
from latentcomp.regressors import build_regressor

TINY = ["builtin:tiny-random", "builtin:tiny-random-stylegan2"]
#: where the codes are mixed: the tiny StyleGAN2's styles (from code 1) dominate its 4x4 layer
LAYER = {"builtin:tiny-random": "auto", "builtin:tiny-random-stylegan2": "convs.1"}


def _faces(n=2):
    x, _, _ = ToyFaces(32, seed=4).render_batch(range(n))  # nothing like what a random GAN draws
    return x


@pytest.mark.parametrize("spec", TINY)
def test_more_codes_fit_what_one_code_cannot(spec):
    G = load_generator(spec)
    torch.manual_seed(0)
    pipe = Pipeline(G, build_regressor(G))
    x = _faces()
    res = invert_multicode_pipe(pipe, x, codes=4, steps=15, lr=0.1, layer=LAYER[spec])
    assert res.image.shape == x.shape and res.single_image.shape == x.shape
    assert res.codes.shape[:2] == (2, 4) and res.importance.shape[:2] == (2, 4)
    assert res.observed_l1.mean() < res.single_observed_l1.mean() - 0.01, (
        res.observed_l1,
        res.single_observed_l1,
    )
    assert res.losses[-1] < res.losses[0]
    # every code took part: the importance of codes 2..4 left zero
    assert (res.importance[:, 1:].abs().amax(-1) > 0).all()
    # no steps: code 1 alone, i.e. the regressor's reconstruction, and the single code agrees
    zero = invert_multicode_pipe(pipe, x, codes=4, steps=0)
    assert torch.allclose(zero.image, pipe.reconstruct(x).cpu(), atol=1e-5)
    assert torch.allclose(zero.image, zero.single_image, atol=1e-5)


def test_tasks_observe_what_they_say():
    x = _faces(1)
    m = torch.ones(1, 1, 32, 32)
    g, gm = observe(x, m, "colorize")
    assert g.shape == (1, 1, 32, 32) and torch.equal(gm, m)
    assert torch.allclose(g, 0.299 * x[:, :1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:], atol=1e-6)
    low, lm = observe(x, m, "superres", 4)
    assert low.shape == (1, 3, 8, 8) and lm.shape == (1, 1, 8, 8)
    m2 = m.clone()
    m2[..., 0, 0] = 0  # one hidden pixel hides its whole low-res block
    assert observe(x, m2, "superres", 4)[1].sum() == 63
    d = degrade(x, "colorize")
    assert torch.equal(d[:, 0], d[:, 1]) and torch.allclose(grey(d), grey(x), atol=1e-6)
    assert torch.allclose(observe(degrade(x, "superres", 4), m, "superres", 4)[0], low, atol=1e-6)


def test_colorize_fits_the_grey_and_leaves_colour_free():
    G = load_generator("builtin:tiny-random")
    x = _faces(2)
    res = invert_multicode(G, degrade(x, "colorize"), task="colorize", codes=3, steps=10, lr=0.1, n_init=8)
    out_grey_err = (grey(res.image) - grey(x)).abs().flatten(1).mean(1)
    assert torch.allclose(out_grey_err, res.observed_l1, atol=1e-4)  # the loss is on the grey only
    assert res.task == "colorize" and res.losses[-1] < res.losses[0]


def test_inpaint_ignores_hidden_pixels():
    G = load_generator("builtin:tiny-random")
    x = _faces(1)
    m = torch.ones(1, 1, 32, 32)
    m[..., 8:24, 8:24] = 0
    noisy = x.clone()
    noisy[..., 8:24, 8:24] = torch.rand(1, 3, 16, 16) * 2 - 1
    kw = dict(task="inpaint", codes=3, steps=5, n_init=8, single=False)
    a = invert_multicode(G, x, m, **kw)
    b = invert_multicode(G, noisy, m, **kw)
    assert torch.allclose(a.image, b.image, atol=1e-5)


def test_bad_inputs():
    G = load_generator("builtin:tiny-random")
    x = _faces(1)
    with pytest.raises(LatentcompError, match="needs a mask"):
        invert_multicode(G, x, task="inpaint", steps=1)
    with pytest.raises(LatentcompError, match="unknown task 'sharpen'; accepted: invert, inpaint"):
        invert_multicode(G, x, task="sharpen", steps=1)
    with pytest.raises(
        LatentcompError, match="factor must be at least 2 and divide the resolution 32; got 3"
    ):
        invert_multicode(G, x, task="superres", factor=3, steps=1)
    with pytest.raises(LatentcompError, match="codes must be at least 1"):
        invert_multicode(G, x, codes=0)
    with pytest.raises(LatentcompError, match=r"images must be \(N, 3, 32, 32\)"):
        invert_multicode(G, x[:, :, :16])
    with pytest.raises(LatentcompError, match="cannot be inverted into"):
        invert_multicode(G, x, layer="nope", steps=1)


def test_cli_invert_codes(tmp_path, capsys):
    d = write_tiny_inputs(tmp_path, 32)
    base = ["invert", "--model", d / "reg.safetensors", "--image", d / "imgs" / "a.png", "--steps", "2"]
    code, so, err = run_cli([*base, "--codes", "3", "--task", "colorize", "--out", d / "o.png"], capsys)
    assert code == 0, err
    assert "colorize with 3 codes at 4x4" in so
    assert (d / "o.png").is_file() and (d / "o_single.png").is_file()
    code, so, err = run_cli([*base, "--codes", "2", "--task", "inpaint", "--out", d / "p.png"], capsys)
    assert code != 0 and "needs a mask" in err
    code, so, err = run_cli([*base, "--task", "superres", "--out", d / "q.png"], capsys)
    assert code != 0 and "needs --codes" in err
    code, so, err = run_cli([*base, "--codes", "0", "--out", d / "q.png"], capsys)
    assert code != 0 and "--codes must be at least 1" in err
