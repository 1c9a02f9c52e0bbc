"""`latentcomp compose | inpaint | edit` on files (tiny models); bad inputs: one-line errors, no output."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from latentcomp import load_generator
from latentcomp.cli import main
from latentcomp.regressors import build_regressor, save_regressor


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    G = load_generator("builtin:tiny-random")
    torch.manual_seed(0)
    save_regressor(build_regressor(G), d / "reg")
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(d / f"{name}.png")
    top = np.zeros((32, 32), dtype=np.uint8)
    top[:16] = 255
    Image.fromarray(top).save(d / "top.png")
    Image.fromarray(255 - top).save(d / "bottom.png")
    Image.fromarray(np.zeros((32, 32), dtype=np.uint8)).save(d / "empty.png")
    Image.fromarray(np.full((32, 32), 255, dtype=np.uint8)).save(d / "full.png")
    Image.fromarray(top[:20, :20]).save(d / "small_mask.png")
    (d / "junk.png").write_text("not an image")
    data = (d / "a.png").read_bytes()
    (d / "cut.png").write_bytes(data[: len(data) // 2])
    return d


def run(args, capsys):
    try:
        main(args)
        code = 0
    except SystemExit as e:
        code = e.code or 0
    out = capsys.readouterr()
    return code, out.out, out.err


def test_compose_writes_output_and_inputs(files, tmp_path, capsys):
    out = tmp_path / "o" / "out.png"
    code, so, _ = run(
        [
            "compose",
            "--model",
            str(files / "reg.safetensors"),
            "--part",
            f"{files / 'a.png'}:{files / 'top.png'}",
            "--part",
            str(files / "b.png"),
            "--out",
            str(out),
            "--save-inputs",
            "--refine",
            "2",
        ],
        capsys,
    )
    assert code == 0, so
    assert (
        out.is_file()
        and (tmp_path / "o" / "out_collage.png").is_file()
        and (tmp_path / "o" / "out_mask.png").is_file()
    )
    assert Image.open(out).size == (32, 32)
    assert "wrote" in so and "known-pixel L1" in so


def test_inpaint_single_and_multi(files, tmp_path, capsys):
    code, so, _ = run(
        [
            "inpaint",
            "--model",
            str(files / "reg.safetensors"),
            "--image",
            str(files / "a.png"),
            "--mask",
            str(files / "top.png"),
            "--out",
            str(tmp_path / "i.png"),
            "--n",
            "3",
        ],
        capsys,
    )
    assert code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["i_k0.png", "i_k1.png", "i_k2.png"]
    assert "diversity" in so


def test_inpaint_folder_mode(files, tmp_path, capsys):
    imgs, masks = tmp_path / "imgs", tmp_path / "masks"
    imgs.mkdir()
    masks.mkdir()
    for name in ("a", "b"):
        (imgs / f"{name}.png").write_bytes((files / f"{name}.png").read_bytes())
    (masks / "a.png").write_bytes((files / "top.png").read_bytes())
    (masks / "b.png").write_bytes((files / "bottom.png").read_bytes())
    code, so, _ = run(
        [
            "inpaint",
            "--model",
            str(files / "reg.safetensors"),
            "--image",
            str(imgs),
            "--mask",
            str(masks),
            "--out",
            str(tmp_path / "out"),
            "--batch",
            "1",
        ],
        capsys,
    )
    assert code == 0, so
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.png", "b.png"]
    (masks / "b.png").unlink()
    code, _, err = run(
        [
            "inpaint",
            "--model",
            str(files / "reg.safetensors"),
            "--image",
            str(imgs),
            "--mask",
            str(masks),
            "--out",
            str(tmp_path / "out2"),
        ],
        capsys,
    )
    assert code == 2 and "b.png" in err and not (tmp_path / "out2").exists()


def test_inpaint_folder_compiled_matches_eager(files, tmp_path, capsys):
    imgs, masks = tmp_path / "imgs", tmp_path / "masks"
    imgs.mkdir()
    masks.mkdir()
    for name, m in (("a", "top"), ("b", "bottom")):
        (imgs / f"{name}.png").write_bytes((files / f"{name}.png").read_bytes())
        (masks / f"{name}.png").write_bytes((files / f"{m}.png").read_bytes())
    base = ["inpaint", "--model", str(files / "reg.safetensors"), "--image", str(imgs), "--mask", str(masks)]
    assert run(base + ["--out", str(tmp_path / "eager")], capsys)[0] == 0
    code, so, _ = run(base + ["--out", str(tmp_path / "compiled"), "--compile"], capsys)
    assert code == 0, so
    for name in ("a.png", "b.png"):
        e = np.asarray(Image.open(tmp_path / "eager" / name), dtype=np.int16)
        c = np.asarray(Image.open(tmp_path / "compiled" / name), dtype=np.int16)
        assert np.abs(e - c).max() <= 1  # float differences of ~1e-5 may flip a rounding


def _inpaint_args(files):
    base = ["inpaint", "--model", str(files / "reg.safetensors"), "--image", str(files / "a.png")]
    return base + ["--mask", str(files / "top.png")]


@pytest.mark.parametrize(("precision", "max_mean_diff"), [("bf16", 2), ("int8", 4)])
def test_inpaint_regressor_precision(files, tmp_path, capsys, precision, max_mean_diff):
    base = _inpaint_args(files)
    assert run(base + ["--out", str(tmp_path / "fp32.png")], capsys)[0] == 0
    out = tmp_path / f"{precision}.png"
    code, so, _ = run(base + ["--out", str(out), "--regressor-precision", precision], capsys)
    assert code == 0, so
    e = np.asarray(Image.open(tmp_path / "fp32.png"), dtype=np.int16)
    p = np.asarray(Image.open(out), dtype=np.int16)
    assert 0 < np.abs(e - p).mean() <= max_mean_diff  # another image, close to the fp32 one


def test_inpaint_unknown_regressor_precision(files, tmp_path, capsys):
    args = _inpaint_args(files) + ["--out", str(tmp_path / "x.png"), "--regressor-precision", "fp16"]
    code, _, err = run(args, capsys)
    assert code == 2 and "fp16" in err and "accepted: fp32, bf16, int8" in err
    assert not (tmp_path / "x.png").exists()


def test_edit(files, tmp_path, capsys):
    code, so, _ = run(
        [
            "edit",
            "--model",
            str(files / "reg.safetensors"),
            "--image",
            str(files / "a.png"),
            "--example",
            str(files / "b.png"),
            "--region",
            str(files / "top.png"),
            "--out",
            str(tmp_path / "e.png"),
            "--paste",
        ],
        capsys,
    )
    assert code == 0 and (tmp_path / "e.png").is_file()
    out = np.asarray(Image.open(tmp_path / "e.png"))
    assert np.array_equal(out[16:], np.asarray(Image.open(files / "a.png"))[16:])  # outside the region kept


def test_full_mask_is_a_reconstruction_with_notice(files, tmp_path, capsys):
    code, _, err = run(
        [
            "inpaint",
            "--model",
            str(files / "reg.safetensors"),
            "--image",
            str(files / "a.png"),
            "--mask",
            str(files / "full.png"),
            "--out",
            str(tmp_path / "f.png"),
        ],
        capsys,
    )
    assert code == 0 and "reconstruction" in err and (tmp_path / "f.png").is_file()


@pytest.mark.parametrize(
    "image,mask,out,words",
    [
        ("junk.png", "top.png", "o.png", ["junk.png", "not a readable image"]),
        ("cut.png", "top.png", "o.png", ["cut.png", "truncated"]),
        ("a.png", "empty.png", "o.png", ["empty.png", "no known pixels"]),
        ("a.png", "small_mask.png", "o.png", ["small_mask.png", "20x20"]),
        ("missing.png", "top.png", "o.png", ["missing.png", "not found"]),
        ("a.png", "top.png", "o.gif", ["o.gif", ".png"]),
        ("a.png", "top.png", "blocker/x/o.png", ["cannot create output folder"]),
    ],
)
def test_bad_inputs_one_line_no_output(files, tmp_path, capsys, image, mask, out, words):
    (tmp_path / "blocker").write_text("a file where a folder is needed")
    before = sorted(p.name for p in tmp_path.iterdir())
    code, so, err = run(
        [
            "inpaint",
            "--model",
            str(files / "reg.safetensors"),
            "--image",
            str(files / image),
            "--mask",
            str(files / mask),
            "--out",
            str(tmp_path / out),
        ],
        capsys,
    )
    assert code == 2
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    for w in words:
        assert w in lines[0], lines[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written, no temp file left


def test_compose_part_spec_parsing(tmp_path):
    from pathlib import Path

    from latentcomp.commands.apps import split_part

    assert split_part("a.png:m.png") == (Path("a.png"), Path("m.png"))
    assert split_part("a.png") == (Path("a.png"), None)
    odd = tmp_path / "x:y.png"
    odd.write_bytes(b"")
    assert split_part(str(odd)) == (odd, None)  # an existing file name with a colon is kept whole


def test_rgba_part_uses_alpha(files, tmp_path, capsys):
    rgba = np.zeros((32, 32, 4), dtype=np.uint8)
    rgba[..., 1] = 200
    rgba[:10, :, 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "p.png")
    out = tmp_path / "c.png"
    code, _, err = run(
        [
            "compose",
            "--model",
            str(files / "reg.safetensors"),
            "--part",
            str(files / "a.png"),
            "--part",
            str(tmp_path / "p.png"),
            "--out",
            str(out),
            "--save-inputs",
        ],
        capsys,
    )
    assert code == 0 and "transparency is used as the mask" in err
    collage = np.asarray(Image.open(tmp_path / "c_collage.png"))
    assert (collage[:10, :, 1] == 200).all()
    assert np.array_equal(collage[10:], np.asarray(Image.open(files / "a.png"))[10:])


def test_part_spec_with_a_bmp_mask_is_split():
    from pathlib import Path

    from latentcomp.commands.apps import split_part

    assert split_part("a.png:m.bmp") == (Path("a.png"), Path("m.bmp"))
    assert split_part("a.png:notes.txt") == (Path("a.png:notes.txt"), None)
