"""The public surface a newcomer meets: `import latentcomp as lc`, Pipeline.save_pretrained, `latentcomp
mask`, `sample --model`, `inpaint --paste` reporting its output's error, readable `--help`."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

import latentcomp as lc
from latentcomp.cli import COMMAND_GROUPS, EXAMPLES, main

SRC = Path(__file__).resolve().parents[1] / "src"


def run(args, capsys):
    try:
        main(args)
        code = 0
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_top_level_names():
    from latentcomp.data.toyfaces import ToyFaces
    from latentcomp.edit.pipeline import Pipeline
    from latentcomp.errors import LatentcompError
    from latentcomp.generators.custom import CustomGenerator
    from latentcomp.regressors import load_regressor

    assert lc.Pipeline is Pipeline and lc.load_regressor is load_regressor
    assert lc.CustomGenerator is CustomGenerator and lc.ToyFaces is ToyFaces
    assert lc.LatentcompError is LatentcompError and callable(lc.load_generator)
    assert callable(lc.io.load_image) and callable(lc.io.load_mask) and callable(lc.io.save_image)
    assert callable(lc.masks.box_mask)
    assert {"Pipeline", "io", "ToyFaces"} <= set(dir(lc))
    with pytest.raises(AttributeError):
        lc.nope  # noqa: B018


def test_import_stays_light():
    code = "import sys, latentcomp; print(any(m.startswith('latentcomp.edit') for m in sys.modules))"
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "False"


def test_save_pretrained_round_trip(tmp_path):
    pipe = lc.Pipeline.from_pretrained("toyfaces")
    folder = pipe.save_pretrained(tmp_path / "my-model")
    assert sorted(p.name for p in folder.iterdir()) == ["regressor.json", "regressor.safetensors"]
    back = lc.Pipeline.from_pretrained(folder)
    assert back.generator.spec == "builtin:toyfaces-dcgan" and back.space == pipe.space
    x = pipe.sample(2, seed=1)
    m = lc.masks.box_mask(64, (0, 0, 64, 32))
    a = pipe.inpaint(x, m, seed=0).images
    b = back.inpaint(x, m, seed=0).images
    assert torch.equal(a, b)
    # the CLI takes the folder as --model too
    assert lc.load_regressor(folder).generator_spec == "builtin:toyfaces-dcgan"


def test_save_pretrained_records_the_generator_in_use(tmp_path):
    pipe = lc.Pipeline.from_pretrained("toyfaces")
    folder = pipe.save_pretrained(tmp_path / "m", generator_spec="builtin:toyfaces-dcgan")
    assert '"generator_spec": "builtin:toyfaces-dcgan"' in (folder / "regressor.json").read_text()
    (tmp_path / "file").write_text("x")
    with pytest.raises(lc.LatentcompError, match="not a folder"):
        pipe.save_pretrained(tmp_path / "file")


def test_mask_command(tmp_path, capsys):
    code, out, err = run(["data", "render", "toyfaces", "--n", "6", "--out", str(tmp_path / "faces")], capsys)
    assert code == 0, err
    hair = tmp_path / "hair.png"
    code, out, err = run(
        [
            "mask",
            "--part-map",
            str(tmp_path / "faces/000005_parts.png"),
            "--part",
            "hair",
            "--out",
            str(hair),
        ],
        capsys,
    )
    assert code == 0, err
    parts = torch.from_numpy(__import__("numpy").array(Image.open(tmp_path / "faces/000005_parts.png")))
    m = lc.io.load_mask(hair)
    assert torch.equal(m[0, 0].bool(), parts == 2)  # hair is part 2
    top = tmp_path / "top.png"
    code, out, err = run(["mask", "--rect", "0,0,64,32", "--out", str(top)], capsys)
    assert code == 0 and "50% white" in out
    t = lc.io.load_mask(top)[0, 0]
    assert t[:32].all() and not t[32:].any()
    inv = tmp_path / "inv.png"
    code, out, err = run(["mask", "--threshold", str(top), "--invert", "--out", str(inv)], capsys)
    assert code == 0, err
    assert torch.equal(lc.io.load_mask(inv)[0, 0], 1 - t)
    for bad, msg in (
        (["--rect", "0,0,64"], "four integers"),
        (["--rect", "0,0,65,10"], "does not fit"),
        (["--part-map", str(tmp_path / "faces/000005_parts.png"), "--part", "hat"], "unknown part"),
        (["--part-map", str(tmp_path / "faces/000005.png"), "--part", "hair"], "indexed"),
        (["--rect", "0,0,64,64", "--invert"], "no white pixel"),
        ([], "exactly one of"),
    ):
        code, out, err = run(["mask", *bad, "--out", str(tmp_path / "x.png")], capsys)
        assert code == 2 and msg in err, (bad, err)


def test_sample_takes_a_model_name(tmp_path, capsys):
    code, out, err = run(
        ["sample", "--model", "toyfaces-stylegan2", "--n", "2", "--out", str(tmp_path / "a.png")], capsys
    )
    assert code == 0, err
    code, out, err = run(
        ["sample", "--generator", "builtin:toyfaces-stylegan2", "--n", "2", "--out", str(tmp_path / "b.png")],
        capsys,
    )
    assert code == 0, err
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    code, out, err = run(["sample", "--n", "2", "--out", str(tmp_path / "c.png")], capsys)  # default toyfaces
    assert code == 0 and "3x64x64" in out
    code, out, err = run(["sample", "--model", "toyfaces", "--generator", "builtin:tiny-random"], capsys)
    assert code == 2 and "not both" in err


def test_inpaint_paste_reports_the_written_output(tmp_path, capsys):
    pipe = lc.Pipeline.from_pretrained("toyfaces")
    lc.io.save_image(pipe.sample(1, seed=3)[0], tmp_path / "x.png")
    lc.io.save_mask(lc.masks.box_mask(64, (0, 0, 64, 40)), tmp_path / "m.png")
    base = ["inpaint", "--image", str(tmp_path / "x.png"), "--mask", str(tmp_path / "m.png")]
    code, plain, err = run([*base, "--out", str(tmp_path / "a.png")], capsys)
    assert code == 0, err
    code, pasted, err = run([*base, "--paste", "--out", str(tmp_path / "b.png")], capsys)
    assert code == 0, err
    gan = float(plain.split("known-pixel L1 ")[1].split()[0])
    assert "known-pixel L1 0.0000 (pasted; the generator's output before pasting: " in pasted
    assert f"{gan:.4f})" in pasted and gan > 0.01
    res = pipe.inpaint(lc.io.load_image(tmp_path / "x.png"), lc.io.load_mask(tmp_path / "m.png"), paste=True)
    assert float(res.output_known_error.max()) < 1e-6 and float(res.known_error.min()) > 0.01


def test_help_is_plain_grouped_and_has_examples(capsys):
    code, out, err = run(["--help"], capsys)
    assert code == 0
    assert "<bool>" not in out and "╭" not in out
    for title in COMMAND_GROUPS:
        assert f"{title}:" in out
    assert out.index("Use a model:") < out.index("\n  compose ") < out.index("Measure:")
    code, out, err = run(["inpaint", "--help"], capsys)
    assert code == 0 and "--regressor-precision" in out and "<bool>" not in out
    assert "--paste / --no-paste" in out and "Example:\n    latentcomp inpaint " in out
    # every command and sub-command has an example
    import click
    import typer

    from latentcomp.cli import app

    root = typer.main.get_command(app)
    ctx = click.Context(root)
    missing = []
    for name in root.list_commands(ctx):
        cmd = root.get_command(ctx, name)
        subs = cmd.list_commands(ctx) if isinstance(cmd, click.Group) else []
        for key in [name] + [f"{name} {s}" for s in subs]:
            if key not in EXAMPLES:
                missing.append(key)
    assert not missing
    assert all(len(e) < 110 for e in EXAMPLES.values())


def test_help_fits_80_columns():
    env = {**os.environ, "PYTHONPATH": str(SRC), "COLUMNS": "80"}
    for args in (["--help"], ["compose", "--help"], ["directions", "compute", "--help"]):
        out = subprocess.run(
            [sys.executable, "-m", "latentcomp.cli", *args],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        ).stdout
        long = [ln for ln in out.splitlines() if len(ln) > 80 and not ln.strip().startswith("latentcomp ")]
        assert not long, long
        assert "…" not in out
