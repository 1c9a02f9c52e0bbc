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
from clirun import run_cli as run
from clirun import write_tiny_inputs
from PIL import Image

from latentcomp import load_generator
from latentcomp.errors import LatentcompError
from latentcomp.regressors import load_regressor

RES = 32


# --------------------------------------------------------------------------------------------- helpers
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
    return write_tiny_inputs(tmp_path_factory.mktemp("hostile_inputs"), RES)


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


# ------------------------------------------------------------------ 2. run folders are not overwritten
def _finished_run(folder: Path, with_state: bool = False) -> dict:
    folder.mkdir(parents=True)
    for name in ("best.safetensors", "last.safetensors", "metrics.json", "config.json"):
        (folder / name).write_bytes(f"trained weights of an earlier run: {name}".encode())
    if with_state:
        (folder / "state.pt").write_bytes(b"not read: the folder is refused first")
    return snapshot(folder)


@pytest.mark.parametrize("resume", [False, True])
def test_regressor_train_refuses_a_folder_of_results(tmp_path, capsys, resume):
    run_dir = tmp_path / "run"
    before = _finished_run(run_dir)
    args = [*REG_TRAIN, "--out", run_dir] + (["--resume"] if resume else [])
    refused(args, capsys, str(run_dir), "best.safetensors", "--overwrite")
    assert snapshot(run_dir) == before


def test_regressor_train_refuses_a_folder_of_anything(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    refused([*REG_TRAIN, "--out", tmp_path], capsys, "notes.txt", "not empty")
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_regressor_train_overwrite_replaces_the_old_run(tmp_path, capsys):
    run_dir = tmp_path / "run"
    _finished_run(run_dir, with_state=True)
    code, out, err = run([*REG_TRAIN, "--out", run_dir, "--overwrite"], capsys)
    assert code == 0, err[-3000:]
    reg = load_regressor(run_dir)  # the junk weights were replaced by this run's
    assert reg.generator_spec == "builtin:tiny-random"
    assert json.loads((run_dir / "metrics.json").read_text())["step"] == 1


def test_gan_train_refuses_a_non_empty_folder(tmp_path, capsys):
    run_dir = tmp_path / "gan"
    run_dir.mkdir()
    (run_dir / "generator.safetensors").write_bytes(b"an earlier export")
    before = snapshot(run_dir)
    refused([*GAN_TRAIN, "--out", run_dir], capsys, str(run_dir), "generator.safetensors", "--overwrite")
    assert snapshot(run_dir) == before


def test_analyzer_train_refuses_a_non_empty_folder(tmp_path, capsys):
    (tmp_path / "analyzer.safetensors").write_bytes(b"an earlier analyzer")
    before = snapshot(tmp_path)
    refused(
        ["analyzer", "train", "--out", tmp_path, "--steps", "1", "--batch", "2"],
        capsys,
        "analyzer.safetensors",
    )
    assert snapshot(tmp_path) == before


def test_data_render_refuses_a_non_empty_folder_unless_overwrite(tmp_path, capsys):
    (tmp_path / "000000.png").write_bytes(b"my photo")
    args = ["data", "render", "toyfaces", "--n", "2", "--resolution", "32", "--out", tmp_path]
    refused(args, capsys, "not empty", "000000.png")
    assert (tmp_path / "000000.png").read_bytes() == b"my photo"
    code, _, err = run([*args, "--overwrite"], capsys)
    assert code == 0, err
    assert Image.open(tmp_path / "000000.png").size == (32, 32)


def test_directions_compute_refuses_an_existing_set(tmp_path, capsys):
    (tmp_path / "mine.safetensors").write_bytes(b"an earlier set")
    args = [
        "directions",
        "compute",
        "--generator",
        "builtin:tiny-random",
        "--method",
        "sefa",
        "--k",
        "2",
        "--name",
        "mine",
        "--out",
        tmp_path,
    ]
    refused(args, capsys, "mine.safetensors", "--overwrite")
    assert (tmp_path / "mine.safetensors").read_bytes() == b"an earlier set"


def test_regressor_export_refuses_its_own_file(files, tmp_path, capsys):
    (tmp_path / "reg.safetensors").write_bytes((files / "reg.safetensors").read_bytes())
    (tmp_path / "reg.json").write_bytes((files / "reg.json").read_bytes())
    before = snapshot(tmp_path)
    refused(["regressor", "export", tmp_path / "reg.safetensors", tmp_path / "reg", "--half"], capsys, "DEST")
    assert snapshot(tmp_path) == before


# ---------------------------------------------------------------------- 3. output onto its own input
def _apps(files: Path, tmp: Path) -> dict[str, tuple[list, str]]:
    """Commands whose --out names one of their inputs: (arguments, a word the error must name)."""
    reg = files / "reg.safetensors"
    a, b, m = fresh_inputs(files, tmp)
    (tmp / "dir").mkdir()
    for name in ("a.png", "b.png"):
        (tmp / "dir" / name).write_bytes(a.read_bytes())
    (tmp / "link.png").symlink_to(a)
    (tmp / "o_mask.png").write_bytes(m.read_bytes())
    return {
        "inpaint out=image": (["inpaint", "--model", reg, "--image", a, "--mask", m, "--out", a], "a.png"),
        "inpaint out=mask": (["inpaint", "--model", reg, "--image", a, "--mask", m, "--out", m], "m.png"),
        "inpaint out=symlink of image": (
            ["inpaint", "--model", reg, "--image", a, "--mask", m, "--out", tmp / "link.png"],
            "a.png",
        ),
        "inpaint DIR -> DIR": (
            ["inpaint", "--model", reg, "--image", tmp / "dir", "--mask", m, "--out", tmp / "dir"],
            "image folder",
        ),
        "inpaint DIR -> DIR --n 2": (
            [
                "inpaint",
                "--model",
                reg,
                "--image",
                tmp / "dir",
                "--mask",
                m,
                "--out",
                tmp / "dir",
                "--n",
                "2",
            ],
            "image folder",
        ),
        "compose out=part": (
            ["compose", "--model", reg, "--part", f"{a}:{m}", "--part", b, "--out", b],
            "part 2 image",
        ),
        "compose out=part mask": (
            ["compose", "--model", reg, "--part", f"{a}:{m}", "--out", m],
            "part 1 mask",
        ),
        "compose --save-inputs side=part": (
            [
                "compose",
                "--model",
                reg,
                "--part",
                tmp / "o_mask.png",
                "--out",
                tmp / "o.png",
                "--save-inputs",
            ],
            "o_mask.png",
        ),
        "edit out=example": (
            ["edit", "--model", reg, "--image", a, "--example", b, "--region", m, "--out", b],
            "example image",
        ),
        "edit out=region": (
            ["edit", "--model", reg, "--image", a, "--example", b, "--region", m, "--out", m],
            "region mask",
        ),
        "navigate out=image": (
            ["navigate", "--model", reg, "--image", a, "--direction", "x", "--out", a],
            "a.png",
        ),
    }


APPS = [
    "inpaint out=image",
    "inpaint out=mask",
    "inpaint out=symlink of image",
    "inpaint DIR -> DIR",
    "inpaint DIR -> DIR --n 2",
    "compose out=part",
    "compose out=part mask",
    "compose --save-inputs side=part",
    "edit out=example",
    "edit out=region",
    "navigate out=image",
]


@pytest.mark.parametrize("case", APPS)
def test_output_onto_its_own_input_is_refused(files, tmp_path, capsys, case):
    cases = _apps(files, tmp_path)
    assert sorted(cases) == sorted(APPS)
    args, word = cases[case]
    before = snapshot(tmp_path)
    refused(args, capsys, "--overwrite", word)
    assert snapshot(tmp_path) == before


def test_overwrite_lets_the_output_replace_its_input(files, tmp_path, capsys):
    a, _, m = fresh_inputs(files, tmp_path)
    old = a.read_bytes()
    code, _, err = run(
        [
            "inpaint",
            "--model",
            files / "reg.safetensors",
            "--image",
            a,
            "--mask",
            m,
            "--out",
            a,
            "--overwrite",
        ],
        capsys,
    )
    assert code == 0, err
    assert a.read_bytes() != old and Image.open(a).size == (RES, RES)


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


@pytest.mark.parametrize(
    "text", ["{not json", "[1, 2]", '{"train": 5}', '{"train": {"batch": "16"}}', "\xff\xfe"]
)
def test_regressor_resume_with_a_broken_config(tmp_path, capsys, text):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.json").write_bytes(text.encode("latin-1"))
    (run_dir / "state.pt").write_bytes(b"the state is never read: the config is refused first")
    before = snapshot(run_dir)
    refused(["regressor", "train", "--out", run_dir, "--resume", "--lpips", "none"], capsys, "config")
    assert snapshot(run_dir) == before


def test_sample_n_too_large(tmp_path, capsys):
    for n in ("10000000", str(2**62)):
        refused(["sample", "-g", "builtin:tiny-random", "--n", n, "--out", tmp_path / "g.png"], capsys, "--n")
    refused(
        ["sample", "-g", "builtin:tiny-random", "--nrow", "0", "--out", tmp_path / "g.png"], capsys, "--nrow"
    )
    assert list(tmp_path.iterdir()) == []


def test_sample_n_above_a_chunk_is_the_same_as_one_batch():
    from latentcomp.commands.sample import CHUNK, sample_images

    G = load_generator("builtin:tiny-random")
    z = G.sample_latent(CHUNK + 3, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        one_batch = G(z).clamp(-1, 1)
    assert torch.allclose(sample_images("builtin:tiny-random", n=CHUNK + 3, seed=4), one_batch, atol=1e-5)


def test_generator_file_with_a_zero_sized_dimension(tmp_path, capsys):
    from latentcomp.generators.dcgan import DCGANNet

    sd = DCGANNet(nz=8, ngf=4, nc=3, resolution=16).state_dict()
    sd["main.0.weight"] = torch.zeros(0, *sd["main.0.weight"].shape[1:])
    torch.save(sd, tmp_path / "zero.pth")
    refused(
        ["sample", "-g", f"dcgan:{tmp_path / 'zero.pth'}", "--out", tmp_path / "g.png"],
        capsys,
        "main.0.weight",
        "zero-sized",
    )
    assert not (tmp_path / "g.png").exists()


ABSURD = [
    {"latent_shape": [10**9]},
    {"latent_shape": [0]},
    {"latent_shape": [64, 0]},
    {"latent_shape": []},
    {"latent_shape": "64"},
    {"out_shape": [10**6, 10**6]},
    {"resolution": 10**6},
    {"resolution": -32},
    {"resolution": "32"},
    {"channels": 0},
    {"channels": 10**5},
    {"num_ws": 10**6},
    {"w_dim": -1},
    {"input_size": 10**5},
    {"resolution": True},
]


@pytest.mark.parametrize("change", ABSURD, ids=[json.dumps(c) for c in ABSURD])
def test_regressor_config_with_absurd_values(files, tmp_path, capsys, change):
    """Refused from the config, before a layer is allocated (a 10^9-wide head would need 2 TB)."""
    cfg = json.loads((files / "reg.json").read_text())
    (tmp_path / "r.safetensors").write_bytes((files / "reg.safetensors").read_bytes())
    (tmp_path / "r.json").write_text(json.dumps({**cfg, **change}))
    key = next(iter(change))
    with pytest.raises(LatentcompError) as e:
        load_regressor(tmp_path / "r.safetensors")
    assert "\n" not in str(e.value) and key in str(e.value) and "accepted" in str(e.value)
    refused(
        [
            "inpaint",
            "--model",
            tmp_path / "r.safetensors",
            "--image",
            files / "imgs" / "a.png",
            "--mask",
            files / "top.png",
            "--out",
            tmp_path / "o.png",
        ],
        capsys,
        key,
    )
    assert not (tmp_path / "o.png").exists()


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


def test_regressor_train_steps_zero(tmp_path, capsys):
    refused([*REG, "--steps", "0", "--out", tmp_path / "run"], capsys, "--steps", "at least 1")
    assert not (tmp_path / "run").exists()


def test_inpaint_batch_says_what_it_skipped(files, tmp_path, capsys):
    d = tmp_path / "in"
    d.mkdir()
    (d / "a.png").write_bytes((files / "imgs" / "a.png").read_bytes())
    Image.open(files / "imgs" / "b.png").save(d / "anim.gif")
    (d / "sub").mkdir()
    (d / "sub" / "c.png").write_bytes((files / "imgs" / "b.png").read_bytes())
    (d / ".hidden").write_text("x")
    code, _, err = run(
        [
            "inpaint",
            "--model",
            files / "reg.safetensors",
            "--image",
            d,
            "--mask",
            files / "top.png",
            "--out",
            tmp_path / "out",
        ],
        capsys,
    )
    assert code == 0, err
    notes = [ln for ln in err.splitlines() if "skipped" in ln]
    assert len(notes) == 1 and "anim.gif" in notes[0] and "sub" in notes[0] and ".hidden" not in notes[0], err
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["a.png"]


def test_parts_with_a_colon_in_their_path(files, tmp_path, capsys):
    a = tmp_path / "shot 12:30.png"
    a.write_bytes((files / "imgs" / "a.png").read_bytes())
    m = tmp_path / "mask 12:30.png"
    m.write_bytes((files / "top.png").read_bytes())
    reg, b = files / "reg.safetensors", files / "imgs" / "b.png"
    out = tmp_path / "o.png"
    code, _, err = run(
        [
            "compose",
            "--model",
            reg,
            "--part",
            a,
            "--mask",
            m,
            "--part",
            b,
            "--mask",
            "-",
            "--out",
            out,
            "--save-inputs",
        ],
        capsys,
    )
    assert code == 0, err
    known = np.asarray(Image.open(tmp_path / "o_mask.png"))
    assert known.min() == 255  # a's mask covers the top half, b (no mask) the rest: all known
    refused(
        ["compose", "--model", reg, "--part", a, "--part", b, "--mask", m, "--out", tmp_path / "p.png"],
        capsys,
        "--mask",
        "one --mask per --part",
    )
    assert not (tmp_path / "p.png").exists()


def _png16_rgb(path: Path) -> Path:
    """A 16-bit-per-channel RGB PNG (Pillow reads it as 8-bit RGB without saying so)."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
        )

    arr = (np.random.default_rng(0).integers(0, 65536, (RES, RES, 3))).astype(">u2")
    raw = b"".join(b"\0" + arr[i].tobytes() for i in range(RES))
    ihdr = struct.pack(">IIBBBBB", RES, RES, 16, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    )
    return path


def test_inpaint_notices_rgba_and_16_bit_input(files, tmp_path, capsys):
    rgba = np.zeros((RES, RES, 4), dtype=np.uint8)
    rgba[..., 3] = 255
    rgba[:4, :4, 3] = 0
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    _png16_rgb(tmp_path / "deep.png")
    reg, m = files / "reg.safetensors", files / "top.png"
    for name, words in (("rgba.png", "composited on white"), ("deep.png", "16-bit")):
        code, _, err = run(
            [
                "inpaint",
                "--model",
                reg,
                "--image",
                tmp_path / name,
                "--mask",
                m,
                "--out",
                tmp_path / f"o_{name}",
            ],
            capsys,
        )
        assert code == 0, err
        assert any(ln.startswith("notice:") and name in ln and words in ln for ln in err.splitlines()), err


def test_generator_with_nan_weights_writes_no_grid(tmp_path, capsys):
    from latentcomp.generators.dcgan import DCGANNet, save_dcgan

    net = DCGANNet(nz=8, ngf=4, nc=3, resolution=16)
    with torch.no_grad():
        next(net.parameters()).fill_(float("nan"))
    path = save_dcgan(net, tmp_path / "nan.safetensors")
    refused(["sample", "-g", f"dcgan:{path}", "--n", "4", "--out", tmp_path / "g.png"], capsys, "NaN or Inf")
    assert not (tmp_path / "g.png").exists()
