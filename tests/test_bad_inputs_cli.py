"""The hostile-input matrix of issue 27 (docs/reliability.md lists it): run folders and inputs are never
overwritten without --overwrite; bad --batch / --device / config files / sizes give one `error:` line and
exit code 2, never a traceback; the CLI pixel limit; one-line torch.load refusals; notices for what is
skipped or converted. Each test asserts the exit code, the single error line and that no file was written
or changed."""

from __future__ import annotations

import json
import os
import pickle
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from latentcomp import load_generator
from latentcomp.cli import main
from latentcomp.errors import LatentcompError
from latentcomp.regressors import build_regressor, save_regressor

RES = 32


# --------------------------------------------------------------------------------------------- helpers
def run(args, capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as e:
        code = e.code or 0
    out, err = capsys.readouterr()
    return code, out, err


def refused(args, capsys, *words) -> str:
    """Run a command that must fail with exit 2, one `error:` line (containing `words`), no traceback."""
    code, _, err = run(args, capsys)
    lines = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert code == 2, err[-3000:]
    assert len(lines) == 1 and "Traceback" not in err, err[-3000:]
    for w in words:
        assert str(w) in lines[0], lines[0]
    return lines[0]


def snapshot(folder: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under `folder` with its bytes and modification time (ns)."""
    return {
        str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def png_header_only(path: Path, w: int, h: int) -> Path:
    """A PNG whose header claims w x h pixels, with almost no data: what a decompression bomb looks like
    before it is decoded (a real 10000x10000 PNG of one colour is only ~300 KB)."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
        )

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * (3 * w + 1))  # one row
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("hostile_inputs")
    G = load_generator("builtin:tiny-random")
    torch.manual_seed(0)
    save_regressor(build_regressor(G), d / "reg")
    rng = np.random.default_rng(0)
    (d / "imgs").mkdir()
    for name in ("a", "b"):
        Image.fromarray(rng.integers(0, 256, (RES, RES, 3), dtype=np.uint8)).save(d / "imgs" / f"{name}.png")
    top = np.zeros((RES, RES), dtype=np.uint8)
    top[: RES // 2] = 255
    Image.fromarray(top).save(d / "top.png")
    return d


def fresh_inputs(files: Path, tmp: Path) -> tuple[Path, Path, Path]:
    """Copies of two images and a mask in `tmp` (tests may see them overwritten)."""
    a, b, m = tmp / "a.png", tmp / "b.png", tmp / "m.png"
    a.write_bytes((files / "imgs" / "a.png").read_bytes())
    b.write_bytes((files / "imgs" / "b.png").read_bytes())
    m.write_bytes((files / "top.png").read_bytes())
    return a, b, m


REG = ["regressor", "train", "--generator", "builtin:tiny-random"]
REG_TRAIN = [
    *REG,
    "--steps",
    "1",
    "--batch",
    "2",
    "--lpips",
    "none",
    "--test-size",
    "2",
    "--eval-every",
    "1",
    "--no-tensorboard",
    "--device",
    "cpu",
]
GAN = [
    "gan",
    "train",
    "--resolution",
    "32",
    "--pool-size",
    "4",
    "--width",
    "4",
    "--z-dim",
    "8",
    "--steps",
    "1",
]
GAN_TRAIN = [*GAN, "--batch", "2", "--threads", "1"]


# ------------------------------------------------------------------------ 4. one line, never a traceback
def no_files(folder: Path) -> bool:
    return not any(p.is_file() for p in folder.rglob("*"))


@pytest.mark.parametrize("value", ["0", "-1"])
def test_batch_below_one(files, tmp_path, capsys, value):
    reg, m = files / "reg.safetensors", files / "top.png"
    commands = {
        "inpaint": [
            "inpaint",
            "--model",
            reg,
            "--image",
            files / "imgs",
            "--mask",
            m,
            "--out",
            tmp_path / "o",
        ],
        "regressor train": [*REG, "--out", tmp_path / "r"],
        "gan train": [*GAN, "--out", tmp_path / "g"],
        "evaluate composition": [
            "evaluate",
            "composition",
            "--model",
            reg,
            "--n",
            "2",
            "--out",
            tmp_path / "e",
        ],
        "metrics fid": ["metrics", "fid", files / "imgs", files / "imgs", "--features", "pixels"],
        "analyzer eval": ["analyzer", "eval", "--n", "2"],
    }
    for name, args in commands.items():
        refused([*args, "--batch", value], capsys, "--batch", value)
        assert no_files(tmp_path), name


DEVICE_COMMANDS = [
    "sample",
    "compose",
    "inpaint",
    "regressor train",
    "gan train",
    "metrics fid",
    "probe",
    "evaluate composition",
    "directions compute",
    "analyzer eval",
]


def _device_args(name: str, files: Path, out: Path) -> list:
    reg, a, m = files / "reg.safetensors", files / "imgs" / "a.png", files / "top.png"
    return {
        "sample": ["sample", "-g", "builtin:tiny-random", "--out", out / "g.png"],
        "compose": ["compose", "--model", reg, "--part", a, "--out", out / "c.png"],
        "inpaint": ["inpaint", "--model", reg, "--image", a, "--mask", m, "--out", out / "i.png"],
        "regressor train": [*REG_TRAIN[:-2], "--out", out / "run"],
        "gan train": [*GAN_TRAIN, "--out", out / "gan"],
        "metrics fid": ["metrics", "fid", files / "imgs", files / "imgs", "--features", "pixels"],
        "probe": ["probe", "parts", "--model", reg, "--out", out / "probe", "--quick", "--analyzer", "none"],
        "evaluate composition": ["evaluate", "composition", "--model", reg, "--n", "2", "--out", out / "e"],
        "directions compute": [
            "directions",
            "compute",
            "--generator",
            "builtin:tiny-random",
            "--method",
            "sefa",
            "--out",
            out / "dirs",
        ],
        "analyzer eval": ["analyzer", "eval", "--n", "2"],
    }[name]


@pytest.mark.parametrize("command", DEVICE_COMMANDS)
def test_bad_device(files, tmp_path, capsys, command):
    bad = ["tpu", "cuda:abc", "gpu0", "meta"]
    if torch.cuda.is_available():
        bad += [f"cuda:{torch.cuda.device_count()}"]  # one past the last GPU
    else:
        bad += ["cuda", "cuda:1"]
    for device in bad:
        line = refused([*_device_args(command, files, tmp_path), "--device", device], capsys, repr(device))
        assert "cpu" in line  # says what is accepted
    assert no_files(tmp_path)


def test_bad_device_in_the_api():
    from latentcomp.devices import parse_device
    from latentcomp.edit import Pipeline

    for device in ("tpu", "cuda:abc", "xla"):
        with pytest.raises(LatentcompError, match="accepted: cpu"):
            parse_device(device)
        with pytest.raises(LatentcompError, match=repr(device)):
            Pipeline.from_pretrained("builtin:tiny-random", device=device)
    assert parse_device("cpu") == torch.device("cpu") and parse_device(None) is None


# -------------------------------------------------------------------------------- 5. CLI pixel limit
def test_pixel_bomb_is_refused_from_the_header(files, tmp_path, capsys):
    big = png_header_only(tmp_path / "big.png", 10000, 10000)
    line = refused(
        [
            "inpaint",
            "--model",
            files / "reg.safetensors",
            "--image",
            big,
            "--mask",
            files / "top.png",
            "--out",
            tmp_path / "o.png",
        ],
        capsys,
        "big.png",
        "100,000,000 pixels",
        "LATENTCOMP_MAX_PIXELS",
    )
    assert "truncated" not in line  # refused before decoding, not after trying
    assert not (tmp_path / "o.png").exists()
    refused(
        [
            "compose",
            "--model",
            files / "reg.safetensors",
            "--part",
            f"{files / 'imgs' / 'a.png'}:{big}",
            "--out",
            tmp_path / "o.png",
        ],
        capsys,
        "big.png",
    )


@pytest.mark.parametrize(
    "side, env",
    [(5000, None), (10000, None), (20000, None), (10000, str(10**12)), (20000, str(10**12))],
)
def test_pixel_limit_and_pillow_bombs_give_the_same_error(tmp_path, monkeypatch, side, env):
    """Above our limit (default 4096^2), or above Pillow's bomb limits (89M pixels: a warning, 179M: an
    error) when the limit is raised past them: the same one line, from the header, before decoding."""
    from latentcomp import io

    big = png_header_only(tmp_path / "big.png", side, side)
    if env:
        monkeypatch.setenv("LATENTCOMP_MAX_PIXELS", env)
    for call in (io.load_image, io.image_size, io.load_mask):
        with pytest.raises(LatentcompError) as e:
            call(big)
        msg = str(e.value)
        assert "\n" not in msg and "big.png" in msg, msg
        assert f"{side * side:,} pixels" in msg and "the limit is" in msg, msg


def test_pixel_limit_is_overridable(files, monkeypatch):
    from latentcomp import io

    a = files / "imgs" / "a.png"
    assert io.load_image(a).shape == (1, 3, RES, RES)
    monkeypatch.setenv("LATENTCOMP_MAX_PIXELS", "1000")
    with pytest.raises(LatentcompError, match="32x32 = 1,024 pixels; the limit is 1,000 pixels"):
        io.load_image(a)
    monkeypatch.setenv("LATENTCOMP_MAX_PIXELS", "lots")
    with pytest.raises(LatentcompError, match="LATENTCOMP_MAX_PIXELS='lots'"):
        io.load_image(a)


def test_pixel_limit_covers_training_image_folders(tmp_path):
    from latentcomp.data.folder import load_resized

    big = png_header_only(tmp_path / "big.png", 10000, 10000)
    with pytest.raises(LatentcompError, match="100,000,000 pixels"):
        load_resized(big, 32)


# ------------------------------------------------------------------------------------------- 6. smaller
def _evil_pickle(path: Path) -> Path:
    class Payload:
        def __reduce__(self):
            return (os.system, ("echo PWNED",))

    torch.save({"step": 1, "payload": Payload()}, path)
    return path


def test_refused_torch_load_is_one_short_line(tmp_path, capsys):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    _evil_pickle(run_dir / "state.pt")
    (run_dir / "config.json").write_text(json.dumps({"train": {}}))
    line = refused([*REG_TRAIN, "--out", run_dir, "--resume"], capsys, "state.pt", "system")
    assert "weights_only" not in line and "PWNED" not in line and len(line) < 300, line
    gan = tmp_path / "gan"
    gan.mkdir()
    _evil_pickle(gan / "checkpoint.pt")
    line = refused([*GAN_TRAIN, "--out", gan, "--resume"], capsys, "checkpoint.pt", "system")
    assert "weights_only" not in line and len(line) < 300, line


def test_refused_generator_pickle_is_one_short_line(tmp_path, capsys):
    (tmp_path / "g.pth").write_bytes(pickle.dumps({"a": 1}, protocol=2)[:-3] + b"\x00garbage")
    line = refused(
        ["sample", "-g", f"dcgan:{tmp_path / 'g.pth'}", "--out", tmp_path / "g.png"], capsys, "g.pth"
    )
    assert "weights_only" not in line and len(line) < 400, line
