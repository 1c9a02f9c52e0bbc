"""In-domain inversion (refine_method="in-domain"): the regressor as a domain regulariser of the latent."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from clirun import run_cli
from PIL import Image

from latentcomp import load_generator
from latentcomp.edit.refine import OptimConfig, masked_l1, optimise_latent
from latentcomp.errors import LatentcompError
from latentcomp.regressors import build_regressor, save_regressor

RES = 32


def _left(n=1):
    m = torch.zeros(n, 1, RES, RES)
    m[..., : RES // 2] = 1
    return m


def test_in_domain_fits_known_pixels_and_stays_in_domain(any_pipe):
    pipe = any_pipe
    x, m = pipe.sample(3, seed=11), _left()
    start = pipe.invert(x, m)
    base = masked_l1(pipe.generate(start), x, m)
    plain = pipe.refine(x, m, steps=10, lr=0.05)
    dom = pipe.refine(x, m, steps=10, lr=0.05, method="in-domain")
    # it optimises the image: every image's known pixels fit better than the regressor's answer alone
    assert (dom.known_l1 < base - 0.01).all(), (dom.known_l1, base)
    # and it keeps the latent nearer E(G(latent)) than plain refinement does, image by image
    assert dom.domain_gap is not None and dom.domain_gap.shape == (3,)
    gap_plain = pipe.domain_gap(plain.latent)
    assert (dom.domain_gap < gap_plain).all(), (dom.domain_gap, gap_plain)
    assert torch.allclose(dom.domain_gap, pipe.domain_gap(dom.latent), atol=1e-5)
    # a stronger domain term trades known-pixel fit for a smaller gap, still fitting better than E alone
    strong = pipe.refine(x, m, steps=10, lr=0.05, method="in-domain", domain_weight=8.0)
    assert (strong.domain_gap < 0.8 * gap_plain).all(), (strong.domain_gap, gap_plain)
    assert float(strong.domain_gap.mean()) < float(dom.domain_gap.mean())
    assert float(strong.known_l1.mean()) > float(dom.known_l1.mean())
    assert (strong.known_l1 < base).all()


def test_domain_gap_is_the_distance_to_the_regressors_answer(any_pipe):
    pipe = any_pipe
    lat = pipe.invert(pipe.sample(2, seed=3))
    lat = lat + 0.3 * torch.randn(lat.shape, generator=torch.Generator().manual_seed(0))
    img = pipe.generate(lat)
    want = (pipe.invert(img) - lat).pow(2).flatten(1).mean(1).sqrt()
    assert torch.allclose(pipe.domain_gap(lat), want, atol=1e-5)


def test_zero_domain_weight_is_plain_adam_without_the_latent_term(pipe):
    x, m = pipe.sample(2, seed=5), _left()
    x = x * m
    init = pipe.invert(x, m)
    G, E = pipe.generator, pipe.run_regressor
    a = optimise_latent(G, E, "z", x, m, init, OptimConfig(steps=4, lr=0.05, latent_weight=0.0))
    cfg = OptimConfig(steps=4, lr=0.05, method="in-domain", domain_weight=0)
    b = optimise_latent(G, E, "z", x, m, init, cfg)
    assert torch.allclose(a.latent, b.latent, atol=1e-6)
    c = optimise_latent(G, E, "z", x, m, init, OptimConfig(steps=4, lr=0.05, method="in-domain"))
    assert not torch.allclose(a.latent, c.latent, atol=1e-4)


def test_compose_inpaint_edit_take_the_method(any_pipe):
    pipe = any_pipe
    x, m = pipe.sample(1, seed=2), _left()
    other = pipe.sample(1, seed=4)
    c_adam = pipe.compose([x, other], [m, 1 - m], refine=3, refine_method="adam")
    c_dom = pipe.compose([x, other], [m, 1 - m], refine=3, refine_method="in-domain", domain_weight=5.0)
    assert not torch.allclose(c_adam.latent, c_dom.latent, atol=1e-4)
    assert float(pipe.domain_gap(c_dom.latent)[0]) < float(pipe.domain_gap(c_adam.latent)[0])
    i_dom = pipe.inpaint(x, m, n=2, refine=3, refine_method="in-domain", domain_weight=5.0)
    i_adam = pipe.inpaint(x, m, n=2, refine=3)
    assert i_dom.images.shape == (1, 2, 3, RES, RES)
    assert float(pipe.domain_gap(i_dom.latents[0]).mean()) < float(pipe.domain_gap(i_adam.latents[0]).mean())
    e_dom = pipe.edit(x, other, 1 - m, refine=3, refine_method="in-domain", domain_weight=5.0)
    e_adam = pipe.edit(x, other, 1 - m, refine=3)
    assert float(pipe.domain_gap(e_dom.latent)[0]) < float(pipe.domain_gap(e_adam.latent)[0])


@pytest.mark.parametrize(
    "kw, words",
    [
        ({"refine_method": "in_domain"}, "unknown optimiser 'in_domain'; accepted: adam, lbfgs, in-domain"),
        ({"refine_method": "in-domain", "domain_weight": -1.0}, "domain weight must be"),
        ({"refine_method": "in-domain", "domain_weight": float("nan")}, "domain weight must be"),
    ],
)
def test_bad_options_are_refused(kw, words, pipe):
    x = pipe.sample(1)
    for call in (
        lambda: pipe.compose([x], refine=1, **kw),
        lambda: pipe.inpaint(x, _left(), refine=1, **kw),
        lambda: pipe.edit(x, x, _left(), refine=1, **kw),
    ):
        with pytest.raises(LatentcompError, match=words.replace("(", r"\(")):
            call()


def test_cli_refine_method_in_domain(tmp_path, capsys):
    G = load_generator("builtin:tiny-random")
    torch.manual_seed(0)
    save_regressor(build_regressor(G), tmp_path / "reg")
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    top = np.zeros((32, 32), dtype=np.uint8)
    top[:16] = 255
    Image.fromarray(top).save(tmp_path / "top.png")
    model = str(tmp_path / "reg.safetensors")
    common = ["--model", model, "--refine", "2", "--refine-method", "in-domain", "--domain-weight", "1"]
    a, mask = str(tmp_path / "a.png"), str(tmp_path / "top.png")
    cmds = [
        ["compose", "--part", f"{a}:{mask}", "--out", str(tmp_path / "c.png")],
        ["inpaint", "--image", a, "--mask", mask, "--out", str(tmp_path / "i.png")],
        ["edit", "--image", a, "--example", a, "--region", mask, "--out", str(tmp_path / "e.png")],
    ]
    for cmd in cmds:
        code, so, err = run_cli(cmd + common, capsys)
        assert code == 0, err
        assert so.startswith("wrote ")
    for name in ("c", "i", "e"):
        assert (tmp_path / f"{name}.png").is_file()
    code, so, err = run_cli(
        cmds[0][:3] + ["--out", str(tmp_path / "bad.png"), "--model", model, "--refine-method", "indomain"],
        capsys,
    )
    assert code == 2 and err.strip().count("\n") == 0
    assert "unknown optimiser 'indomain'" in err and "in-domain" in err
    assert not (tmp_path / "bad.png").exists()
    for cmd in ("compose", "inpaint", "edit"):
        code, so, _ = run_cli([cmd, "--help"], capsys)
        assert code == 0 and "in-domain" in so and "--domain-weight" in so
