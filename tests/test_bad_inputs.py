"""Bad inputs not covered by test_io.py / test_edit_*.py / test_pipeline.py / test_regressor.py:
NaN / Inf tensors through every Pipeline method, regressor checkpoints of the wrong architecture or shape,
wrong latents through G(...), and an unwritable output folder for every CLI command that writes.
Each asserts a one-line LatentcompError (the CLI: exit 2 and one `error:` line) and no partial output."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from clirun import run_cli, write_tiny_inputs
from PIL import Image

from latentcomp import load_generator
from latentcomp.edit import Pipeline
from latentcomp.errors import LatentcompError
from latentcomp.regressors import build_regressor, load_regressor, save_regressor

RES = 32
NAN, INF = float("nan"), float("inf")


def one_line(e: pytest.ExceptionInfo, *words) -> str:
    msg = str(e.value)
    assert "\n" not in msg, msg
    for w in words:
        assert str(w) in msg, msg
    return msg


# ------------------------------------------------------------------------------------- NaN / Inf tensors
def _bad(value, shape=(1, 3, RES, RES), where=(0, 0, 5, 7)):
    t = torch.rand(shape) * 2 - 1
    t[where] = value
    return t


def _ok_mask():
    m = torch.zeros(1, 1, RES, RES)
    m[..., : RES // 2] = 1
    return m


def _calls(p, x, m):
    """Every public Pipeline method that takes images or masks, with image x and mask m."""
    good = p.sample(1, seed=0)
    return {
        "invert": lambda: p.invert(x, m),
        "reconstruct": lambda: p.reconstruct(x, m),
        "compose part 0": lambda: p.compose([x, good], [m, _ok_mask()]),
        "compose part 1": lambda: p.compose([good, x], [_ok_mask(), m]),
        "compose refine": lambda: p.compose([x], [m], refine=1),
        "inpaint": lambda: p.inpaint(x, m, n=2),
        "edit target": lambda: p.edit(x, good, m),
        "edit example": lambda: p.edit(good, x, m),
        "refine": lambda: p.refine(x, m, steps=1),
        "optimize": lambda: p.optimize(x, m, steps=1),
        "finetune": lambda: p.finetune(x, m, steps=1),
        "poisson": lambda: p.poisson([good, x], [_ok_mask(), m]),
        "raw_collage": lambda: p.raw_collage([x], [m]),
    }


@pytest.mark.parametrize("value", [NAN, INF, -INF])
def test_nan_inf_images_refused_everywhere(pipe_wplus, value):
    x = _bad(value)
    for name, call in _calls(pipe_wplus, x, _ok_mask()).items():
        with pytest.raises(LatentcompError) as e:
            call()
        one_line(e, "NaN or Inf")
        assert "image" in str(e.value) or "target" in str(e.value) or "example" in str(e.value), name


@pytest.mark.parametrize("value", [NAN, INF])
def test_nan_inf_masks_refused_everywhere(pipe_wplus, value):
    m = _ok_mask()
    m[0, 0, 3, 3] = value
    x = pipe_wplus.sample(1, seed=1)
    for name, call in _calls(pipe_wplus, x, m).items():
        with pytest.raises(LatentcompError) as e:
            call()
        one_line(e, "NaN or Inf")
        assert "mask" in str(e.value) or "region" in str(e.value), name


def test_nan_hidden_pixel_is_still_refused(pipe_wplus):
    """A NaN under a hidden pixel would poison x * m (NaN * 0 = NaN): refused, not silently used."""
    x = pipe_wplus.sample(1, seed=2)
    x[0, :, 0, RES - 1] = NAN  # right half is hidden
    with pytest.raises(LatentcompError, match="NaN or Inf"):
        pipe_wplus.inpaint(x, _ok_mask())


def test_nan_in_a_later_batch_item(pipe_wplus):
    x = pipe_wplus.sample(3, seed=3)
    x[2, 1, 4, 4] = INF
    with pytest.raises(LatentcompError) as e:
        pipe_wplus.compose([x], [_ok_mask()])
    one_line(e, "NaN or Inf")


def test_nan_inf_latents_refused(pipe_wplus):
    G = pipe_wplus.generator
    for space, shape in (("z", (1, 64)), ("w", (1, G.w_dim)), ("w+", (1, G.num_ws, G.w_dim))):
        for value in (NAN, INF):
            lat = torch.zeros(shape)
            lat[0, 0] = value
            with pytest.raises(LatentcompError) as e:
                G(lat, space=space)
            one_line(e, space, "NaN or Inf")
    with pytest.raises(LatentcompError, match="NaN or Inf"):
        pipe_wplus.generate(torch.full((1, G.num_ws, G.w_dim), NAN))
    with pytest.raises(LatentcompError, match="NaN or Inf"):
        bad = torch.full((1, G.num_ws, G.w_dim), NAN)
        pipe_wplus.refine(pipe_wplus.sample(1), _ok_mask(), latent=bad, steps=1)


def test_regressor_with_nan_weights_gives_an_error_not_a_nan_image(tmp_path, capsys):
    G = load_generator("builtin:tiny-random")
    torch.manual_seed(0)
    E = build_regressor(G)
    with torch.no_grad():
        E.head.bias.fill_(NAN)
    save_regressor(E, tmp_path / "nan")
    p = Pipeline.from_pretrained(str(tmp_path / "nan.safetensors"))
    with pytest.raises(LatentcompError) as e:
        p.compose([p.sample(1)], [_ok_mask()])
    one_line(e, "NaN or Inf")
    img = tmp_path / "a.png"
    Image.fromarray(np.zeros((RES, RES, 3), dtype=np.uint8)).save(img)
    code, err = _cli(
        [
            "compose",
            "--model",
            str(tmp_path / "nan.safetensors"),
            "--part",
            str(img),
            "--out",
            str(tmp_path / "out" / "o.png"),
        ],
        capsys,
    )
    assert code == 2 and _error_lines(err) and "NaN or Inf" in _error_lines(err)[0]
    assert not (tmp_path / "out" / "o.png").exists()


# ------------------------------------------------------------------------ regressor checkpoint mismatches
def _fake_generator(resolution=RES, latent_shape=(64,), spaces=("z",), num_ws=0, w_dim=0):
    return SimpleNamespace(
        spec="builtin:tiny-random",
        resolution=resolution,
        channels=3,
        latent_shape=latent_shape,
        latent_spaces=spaces,
        num_ws=num_ws,
        w_dim=w_dim,
    )


def test_weights_of_another_backbone(tmp_path):
    """resnet18 weights under a config that says `small` (e.g. a .json copied from another run)."""
    torch.manual_seed(0)
    save_regressor(build_regressor(_fake_generator(), backbone="resnet18"), tmp_path / "r")
    small = build_regressor(_fake_generator(), backbone="small")
    (tmp_path / "r.json").write_text(json.dumps(small.config))
    with pytest.raises(LatentcompError) as e:
        load_regressor(tmp_path / "r.safetensors")
    one_line(e, "r.safetensors", "do not match its config", "small")


def test_weights_for_another_latent_space(tmp_path):
    style = dict(spaces=("z", "w", "w+"), num_ws=8, w_dim=64)
    save_regressor(build_regressor(_fake_generator(**style), space="w+", backbone="small"), tmp_path / "r")
    cfg = json.loads((tmp_path / "r.json").read_text())
    (tmp_path / "r.json").write_text(json.dumps({**cfg, "space": "w"}))
    with pytest.raises(LatentcompError) as e:
        load_regressor(tmp_path / "r.safetensors")
    one_line(e, "r.safetensors", "head.weight")


def test_truncated_regressor_file(tmp_path):
    save_regressor(build_regressor(_fake_generator(), backbone="small"), tmp_path / "r")
    data = (tmp_path / "r.safetensors").read_bytes()
    for cut in (len(data) // 2, 200, 7):
        (tmp_path / "r.safetensors").write_bytes(data[:cut])
        with pytest.raises(LatentcompError) as e:
            load_regressor(tmp_path / "r.safetensors")
        one_line(e, "r.safetensors")


def test_generator_file_given_as_regressor(tmp_path):
    from latentcomp.generators.dcgan import DCGANNet, save_dcgan

    net = DCGANNet(nz=8, ngf=4, nc=3, resolution=16)
    path = save_dcgan(net, tmp_path / "generator.safetensors")
    with pytest.raises(LatentcompError) as e:
        load_regressor(path)
    one_line(e, "generator.safetensors", "no regressor config")
    with pytest.raises(LatentcompError):
        Pipeline.from_pretrained(str(path))


def test_regressor_for_another_resolution_or_space(tmp_path, capsys):
    """A regressor whose recorded generator makes other images than the regressor expects: refused when
    the pipeline is built (API and CLI), not deep inside a convolution."""
    save_regressor(build_regressor(_fake_generator(resolution=64), backbone="small"), tmp_path / "res64")
    with pytest.raises(LatentcompError) as e:
        Pipeline.from_pretrained(str(tmp_path / "res64.safetensors"))
    one_line(e, "64", "32", "do not belong together")
    style = dict(spaces=("z", "w", "w+"), num_ws=8, w_dim=64)
    save_regressor(
        build_regressor(_fake_generator(**style), space="w+", backbone="small"), tmp_path / "wplus"
    )
    with pytest.raises(LatentcompError) as e:
        Pipeline.from_pretrained(str(tmp_path / "wplus.safetensors"))  # recorded G: tiny-random, z only
    one_line(e, "w+")
    img = tmp_path / "a.png"
    Image.fromarray(np.zeros((RES, RES, 3), dtype=np.uint8)).save(img)
    code, err = _cli(
        [
            "inpaint",
            "--model",
            str(tmp_path / "res64.safetensors"),
            "--image",
            str(img),
            "--mask",
            str(img),
            "--out",
            str(tmp_path / "o.png"),
        ],
        capsys,
    )
    assert code == 2 and len(_error_lines(err)) == 1 and not (tmp_path / "o.png").exists()


def test_regressor_resume_with_a_foreign_state_file(tmp_path):
    """--resume where state.pt is not a regressor state (a GAN checkpoint copied in) or is truncated."""
    from latentcomp.training.regressor import TrainConfig, train_regressor

    def cfg(**kw):
        return TrainConfig(
            generator="builtin:tiny-random",
            out=str(tmp_path / "run"),
            steps=2,
            batch=2,
            lpips="none",
            eval_every=2,
            test_size=2,
            tensorboard=False,
            progress=False,
            device="cpu",
            **kw,
        )

    train_regressor(cfg())
    state = tmp_path / "run" / "state.pt"
    good = state.read_bytes()
    torch.save({"G": {"w": torch.zeros(2)}, "step": 3}, state)
    with pytest.raises(LatentcompError) as e:
        train_regressor(cfg(resume=True))
    one_line(e, "state.pt")
    state.write_bytes(good[: len(good) // 3])
    with pytest.raises(LatentcompError) as e:
        train_regressor(cfg(resume=True))
    one_line(e, "state.pt")


# --------------------------------------------------------------------------------- wrong latents in G(...)
GENERATORS = ["builtin:tiny-random", "builtin:tiny-random-stylegan2", "progan", "dcgan"]


def _generator(name: str):
    if name == "progan":
        from latentcomp.generators.progan import DissectProGANNet, ProGANGenerator

        torch.manual_seed(0)
        return ProGANGenerator(DissectProGANNet([16, 8, 8, 4]), "gan_dissect")
    if name == "dcgan":
        from latentcomp.generators.dcgan import DCGANGenerator, DCGANNet

        torch.manual_seed(0)
        return DCGANGenerator(DCGANNet(nz=8, ngf=4, nc=3, resolution=16))
    return load_generator(name)


@pytest.mark.parametrize("name", GENERATORS)
def test_wrong_latent_size_through_G(name):
    G = _generator(name)
    d = int(np.prod(G.latent_shape))
    bad = [
        torch.zeros(2, d + 1),  # one too many
        torch.zeros(2, max(d - 1, 1)),  # one too few
        torch.zeros(d),  # no batch dimension
        torch.zeros(2, d, 2),  # extra dimension
        torch.zeros(2, 2 * d).view(2, 2, d),
        np.zeros((2, d), dtype=np.float32),  # not a tensor
        [[0.0] * d],
    ]
    for lat in bad:
        with pytest.raises(LatentcompError) as e:
            G(lat)
        one_line(e, "latent", "expected")
    for space in ("w", "w+", "x"):
        if space in G.latent_spaces:
            with pytest.raises(LatentcompError) as e:
                G(torch.zeros(2, d + 3), space=space)
            one_line(e, space)
        else:
            with pytest.raises(LatentcompError) as e:
                G(torch.zeros(2, d), space=space)
            one_line(e, repr(space), "accepted")
    ok = G(G.sample_latent(2, generator=torch.Generator().manual_seed(0)))
    assert ok.shape == (2, G.channels, G.resolution, G.resolution)


def test_wrong_wplus_rows(pipe_wplus):
    G = pipe_wplus.generator
    for shape in ((1, G.num_ws + 1, G.w_dim), (1, G.num_ws - 1, G.w_dim), (1, G.num_ws, G.w_dim + 1)):
        with pytest.raises(LatentcompError) as e:
            G(torch.zeros(shape), space="w+")
        one_line(e, "w+", f"(N, {G.num_ws}, {G.w_dim})")
        with pytest.raises(LatentcompError):
            pipe_wplus.generate(torch.zeros(shape))


def test_wrong_z_size_through_mapping():
    G = load_generator("builtin:tiny-random-stylegan2")
    with pytest.raises(LatentcompError, match=rf"latent for space 'z' has shape \(2, {G.w_dim + 1}\)"):
        G.mapping(torch.zeros(2, G.w_dim + 1))
    with pytest.raises(LatentcompError, match="NaN or Inf"):
        G.mapping(torch.full((2, G.w_dim), float("nan")))
    with pytest.raises(LatentcompError, match="has no w space"):
        load_generator("builtin:tiny-random").mapping(torch.zeros(2, 64))


@pytest.mark.parametrize("dtype", [torch.float64, torch.int64])
def test_latent_of_another_dtype_is_used_as_float32(dtype):
    G = load_generator("builtin:tiny-random")
    z = torch.randn(2, 64, generator=torch.Generator().manual_seed(0)).mul(3).round()
    with torch.no_grad():
        out, ref = G(z.to(dtype)), G(z)
    assert out.dtype == torch.float32 and torch.equal(out, ref)
    with pytest.raises(LatentcompError, match="dtype torch.bool"):
        G(torch.zeros(2, 64, dtype=torch.bool))


# ------------------------------------------------------------------------------- unwritable output folder
def _cli(args, capsys):
    code, _, err = run_cli(args, capsys)
    return code, err


def _error_lines(err: str) -> list[str]:
    return [ln for ln in err.splitlines() if ln.startswith("error:")]


@pytest.fixture(scope="module")
def cli_files(tmp_path_factory):
    return write_tiny_inputs(tmp_path_factory.mktemp("unwritable_inputs"), RES)


def _commands(d: Path, blocked: Path) -> dict[str, list[str]]:
    """Every command that writes files, each aimed at a folder under `blocked` (a file, not a folder)."""
    reg, a, top = str(d / "reg.safetensors"), str(d / "imgs" / "a.png"), str(d / "top.png")
    out = blocked / "sub"
    return {
        "sample": [
            "sample",
            "-g",
            "builtin:tiny-random",
            "--n",
            "2",
            "--out",
            str(out / "g.png"),
            "--device",
            "cpu",
        ],
        "compose": ["compose", "--model", reg, "--part", f"{a}:{top}", "--out", str(out / "c.png")],
        "compose --save-inputs": [
            "compose",
            "--model",
            reg,
            "--part",
            a,
            "--out",
            str(out / "c.png"),
            "--save-inputs",
        ],
        "inpaint": [
            "inpaint",
            "--model",
            reg,
            "--image",
            a,
            "--mask",
            top,
            "--out",
            str(out / "i.png"),
            "--n",
            "2",
        ],
        "inpaint folder": [
            "inpaint",
            "--model",
            reg,
            "--image",
            str(d / "imgs"),
            "--mask",
            top,
            "--out",
            str(out / "folder"),
        ],
        "edit": [
            "edit",
            "--model",
            reg,
            "--image",
            a,
            "--example",
            a,
            "--region",
            top,
            "--out",
            str(out / "e.png"),
        ],
        "demo": ["demo", "--quick", "--model", reg, "--out", str(out / "demo")],
        "data render": [
            "data",
            "render",
            "toyfaces",
            "--n",
            "2",
            "--resolution",
            "32",
            "--out",
            str(out / "data"),
        ],
        "gan train": [
            "gan",
            "train",
            "--out",
            str(out / "gan"),
            "--resolution",
            "32",
            "--pool-size",
            "4",
            "--width",
            "4",
            "--z-dim",
            "8",
            "--batch",
            "2",
            "--steps",
            "1",
            "--threads",
            "1",
        ],
        "regressor train": [
            "regressor",
            "train",
            "--generator",
            "builtin:tiny-random",
            "--out",
            str(out / "run"),
            "--steps",
            "1",
            "--batch",
            "2",
            "--lpips",
            "none",
            "--test-size",
            "2",
            "--no-tensorboard",
            "--device",
            "cpu",
        ],
        "regressor export": ["regressor", "export", reg, str(out / "exported")],
        "metrics --json": [
            "metrics",
            "masked-l1",
            str(d / "imgs"),
            str(d / "imgs"),
            "--json",
            str(out / "m.json"),
        ],
        "evaluate composition": [
            "evaluate",
            "composition",
            "--model",
            reg,
            "--n",
            "2",
            "--out",
            str(out / "eval"),
        ],
        "analyzer train": ["analyzer", "train", "--out", str(out / "an"), "--steps", "1", "--batch", "2"],
    }


COMMANDS = list(_commands(Path("d"), Path("b")))


@pytest.mark.parametrize("command", COMMANDS)
def test_unwritable_output_folder(cli_files, tmp_path, capsys, command):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the output folder should be")
    before = {p.name: p.stat().st_size for p in tmp_path.iterdir()}
    code, err = _cli(_commands(cli_files, blocker)[command], capsys)
    lines = _error_lines(err)
    assert code == 2, err[-2000:]
    assert len(lines) == 1 and "Traceback" not in err, err[-2000:]
    assert "blocker" in lines[0], lines[0]  # names the path that could not be written
    assert {p.name: p.stat().st_size for p in tmp_path.iterdir()} == before  # nothing written


def test_seed_out_of_range_is_refused_before_anything_runs(tmp_path, capsys):
    out = tmp_path / "grid.png"
    args = ["sample", "--generator", "builtin:tiny-random", "--seed", str(2**64), "--out", str(out)]
    code, err = _cli(args, capsys)
    assert code == 2 and "--seed" in err and "9223372036854775807" in err
    assert not out.exists()
