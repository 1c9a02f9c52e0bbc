"""Property tests (hypothesis): arbitrary files and tensors either work with the documented conversions or
raise LatentcompError, never another exception.

- `io.load_image` / `io.load_mask` on files of any mode (1, L, LA, P, P with transparency, RGB, RGBA,
  I;16, I, F, CMYK), format (PNG, JPEG, WEBP, BMP accepted; GIF, TIFF refused), size, target size and
  channel count; and on damaged files (truncated, bytes flipped, garbage).
- `Pipeline.compose` / `Pipeline.inpaint` (tiny random models) on tensors of any shape, dtype and values,
  masks of any shape and content, any part count; and the `compose` / `inpaint` commands on generated
  files (exit 0 with an output of the model's size, or exit 2 with one `error:` line and no output).
"""

from __future__ import annotations

import contextlib
import io as pyio
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from latentcomp import io, load_generator
from latentcomp.errors import LatentcompError
from latentcomp.regressors import build_regressor, save_regressor

RES = 32
ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP", "BMP")
MODES = ("1", "L", "LA", "P", "PT", "RGB", "RGBA", "I;16", "I", "F", "CMYK")
FORMATS = ACCEPTED_FORMATS + ("GIF", "TIFF")
SUFFIX = {"PNG": ".png", "JPEG": ".jpg", "WEBP": ".webp", "BMP": ".bmp", "GIF": ".gif", "TIFF": ".tif"}
SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])


def make_image(mode: str, h: int, w: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    if mode == "1":
        return Image.fromarray(rng.random((h, w)) > 0.5)
    if mode in ("L", "LA", "RGB", "RGBA", "CMYK"):
        c = {"L": 1, "LA": 2, "RGB": 3, "RGBA": 4, "CMYK": 4}[mode]
        arr = rng.integers(0, 256, (h, w, c), dtype=np.uint8)
        if mode == "L":
            return Image.fromarray(arr[..., 0])
        if mode == "CMYK":
            return Image.frombytes("CMYK", (w, h), arr.tobytes())
        return Image.fromarray(arr, mode)
    if mode in ("P", "PT"):
        im = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).convert(
            "P", palette=Image.Palette.ADAPTIVE, colors=8
        )
        if mode == "PT":
            im.info["transparency"] = 0
        return im
    if mode == "I;16":
        return Image.fromarray(rng.integers(0, 65536, (h, w), dtype=np.uint16))
    if mode == "I":
        return Image.fromarray(rng.integers(0, 65536, (h, w)).astype(np.int32))
    if mode == "F":
        return Image.fromarray((rng.random((h, w)) * 255).astype(np.float32))
    raise AssertionError(mode)


def encode(im: Image.Image, fmt: str) -> bytes:
    buf = pyio.BytesIO()
    kwargs = {"transparency": im.info["transparency"]} if "transparency" in im.info else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        im.save(buf, format=fmt, **kwargs)
    return buf.getvalue()


@st.composite
def image_files(draw, hw: tuple[int, int] | None = None):
    mode = draw(st.sampled_from(MODES))
    fmt = draw(st.sampled_from(FORMATS))
    h, w = hw if hw is not None else (draw(st.integers(1, 24)), draw(st.integers(1, 24)))
    im = make_image(mode, h, w, draw(st.integers(0, 2**16)))
    try:
        data = encode(im, fmt)
    except (OSError, ValueError, KeyError, TypeError):
        assume(False)  # PIL cannot write this mode in this format
    return mode, fmt, h, w, data


_TMP = tempfile.TemporaryDirectory(prefix="lc_prop_")  # removed when the test session ends


def _write(data: bytes, suffix: str) -> Path:
    d = Path(tempfile.mkdtemp(dir=_TMP.name))
    p = d / f"x{suffix}"
    p.write_bytes(data)
    return p


@settings(max_examples=120, **SETTINGS)
@given(
    f=image_files(),
    size=st.sampled_from([None, 5, 16]),
    channels=st.sampled_from([1, 3]),
    resize=st.booleans(),
    with_alpha=st.booleans(),
)
def test_load_image_any_file(f, size, channels, resize, with_alpha):
    mode, fmt, h, w, data = f
    p = _write(data, SUFFIX[fmt])
    try:
        out = io.load_image(
            p, size=size, channels=channels, resize=resize, with_alpha=with_alpha, notice=None
        )
    except LatentcompError as e:
        msg = str(e)
        assert "\n" not in msg and str(p) in msg, msg
        refused_format = fmt not in ACCEPTED_FORMATS
        refused_size = size is not None and (h, w) != (size, size) and not resize
        assert refused_format or refused_size, f"{mode} {fmt} {w}x{h} refused: {msg}"
        event("refused")
        return
    event(f"loaded {mode}")
    assert fmt in ACCEPTED_FORMATS, f"{fmt} should be refused"
    x, alpha = out if with_alpha else (out, None)
    s = (size, size) if size is not None else (h, w)
    assert x.shape == (1, channels, *s) and x.dtype == torch.float32
    assert torch.isfinite(x).all() and x.min() >= -1 and x.max() <= 1
    if alpha is not None:
        assert alpha.shape == (1, 1, *s) and set(alpha.unique().tolist()) <= {0.0, 1.0}


@settings(max_examples=80, **SETTINGS)
@given(
    f=image_files(),
    size=st.sampled_from([None, 8]),
    image_hw=st.sampled_from([None, (8, 8), (12, 20)]),
    allow_empty=st.booleans(),
)
def test_load_mask_any_file(f, size, image_hw, allow_empty):
    mode, fmt, h, w, data = f
    p = _write(data, SUFFIX[fmt])
    try:
        m = io.load_mask(p, size=size, image_hw=image_hw, allow_empty=allow_empty, notice=None)
    except LatentcompError as e:
        msg = str(e)
        assert "\n" not in msg and str(p) in msg, msg
        ok_sizes = [s for s in (image_hw, (size, size) if size else None) if s is not None]
        assert (
            fmt not in ACCEPTED_FORMATS
            or (ok_sizes and (h, w) not in ok_sizes)
            or (not allow_empty and "no known pixels" in msg)
        ), msg
        return
    assert fmt in ACCEPTED_FORMATS
    s = (size, size) if size is not None else (h, w)
    assert m.shape == (1, 1, *s) and m.dtype == torch.float32
    assert set(m.unique().tolist()) <= {0.0, 1.0}
    assert allow_empty or m.sum() > 0


@settings(max_examples=150, **SETTINGS)
@given(
    fmt=st.sampled_from(ACCEPTED_FORMATS),
    seed=st.integers(0, 2**16),
    damage=st.sampled_from(["truncate", "flip", "garbage", "header-only", "empty"]),
    where=st.floats(0.0, 1.0),
)
def test_damaged_files_are_latentcomp_errors(fmt, seed, damage, where):
    data = bytearray(encode(make_image("RGB", 20, 20, seed), fmt))
    rng = np.random.default_rng(seed)
    if damage == "truncate":
        data = data[: int(len(data) * where)]
    elif damage == "flip":
        for _ in range(1 + int(where * 8)):
            i = int(rng.integers(0, len(data)))
            data[i] ^= int(rng.integers(1, 256))
    elif damage == "garbage":
        data = bytearray(rng.integers(0, 256, int(1 + where * 200), dtype=np.uint8).tobytes())
    elif damage == "header-only":
        data = data[:16]
    else:
        data = bytearray()
    p = _write(bytes(data), SUFFIX[fmt])
    for load in (lambda: io.load_image(p, size=16, notice=None), lambda: io.load_mask(p, allow_empty=True)):
        try:
            out = load()
        except LatentcompError as e:
            assert "\n" not in str(e) and str(p) in str(e), str(e)
            continue
        assert torch.isfinite(out).all()  # a flipped byte may still decode: then it must be a valid tensor


# ------------------------------------------------------------------------------------- Pipeline API
DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.uint8, torch.int64, torch.bool)


@st.composite
def tensors(draw, kind: str):
    """An image (kind="image") or mask (kind="mask") tensor of a valid or invalid shape, dtype and content;
    half of them have a documented shape (so that image and mask often fit together)."""
    c = 3 if kind == "image" else 1
    if draw(st.booleans()):
        n = draw(st.integers(1, 2))
        shape = draw(st.sampled_from([(n, c, RES, RES), (c, RES, RES)]))
    else:
        n = draw(st.integers(0, 3))
        size = draw(st.sampled_from([RES, RES, RES, 16, 31]))
        c_ = draw(st.sampled_from([c, c, c, 1, 3, 4]))
        shape = draw(
            st.sampled_from(
                [
                    (n, c_, size, size),
                    (c_, size, size),
                    (size, size),
                    (n, c_, size),
                    (1, n, c_, size, size),
                    (n,),
                ]
            )
        )
    dtype = draw(st.sampled_from(DTYPES))
    seed = draw(st.integers(0, 2**16))
    g = torch.Generator().manual_seed(seed)
    t = torch.rand(shape, generator=g) if kind == "mask" else torch.rand(shape, generator=g) * 2 - 1
    if kind == "mask":
        t = draw(st.sampled_from([(t > 0.5).float(), t, torch.zeros(shape), torch.ones(shape)]))
    if draw(st.integers(0, 5)) == 0 and t.numel():
        t.view(-1)[0] = draw(st.sampled_from([float("nan"), float("inf"), -float("inf"), 1e30]))
    if dtype in (torch.uint8, torch.int64):
        t = torch.nan_to_num(t).clamp(-1e3, 1e3) * (127.5 if kind == "image" else 1)
        t = t.abs().round()
    return t.to(dtype)


def _check_compose(res, n_expected=None):
    assert res.image.shape[1:] == (3, RES, RES)
    if n_expected is not None:
        assert res.image.shape[0] == n_expected
    assert torch.isfinite(res.image.float()).all() and res.image.abs().max() <= 1
    assert set(res.mask.unique().tolist()) <= {0.0, 1.0} and (res.mask.flatten(1).sum(1) > 0).all()


@settings(max_examples=60, **SETTINGS)
@given(
    parts=st.lists(
        st.tuples(tensors("image"), st.one_of(st.none(), tensors("mask"))), min_size=0, max_size=3
    ),
    refine=st.sampled_from([0, 0, 1]),
    paste=st.booleans(),
)
def test_compose_any_tensors(pipe_wplus, parts, refine, paste):
    images = [p[0] for p in parts]
    masks = [p[1] for p in parts]
    try:
        res = pipe_wplus.compose(images, masks, refine=refine, paste=paste)
    except LatentcompError as e:
        assert "\n" not in str(e)
        event("refused")
        return
    event("composed")
    _check_compose(res)


@settings(max_examples=40, **SETTINGS)
@given(
    n=st.integers(1, 3),
    k=st.integers(1, 3),
    keep=st.floats(0.01, 1.0),
    image_form=st.sampled_from(["NCHW", "CHW", "batch1"]),
    mask_form=st.sampled_from(["N1HW", "1HW", "HW", "NHW", "batch1"]),
    mask_values=st.sampled_from(["binary", "soft", "bool", "uint8"]),
    seed=st.integers(0, 2**31),
)
def test_documented_forms_always_work(pipe_wplus, n, k, keep, image_form, mask_form, mask_values, seed):
    """Images (C,H,W) / (N,C,H,W), masks (H,W) / (1,H,W) / (N,H,W) / (N,1,H,W), batch-1 broadcasting and
    mask values >= 0.5 = known: every documented form is accepted, by compose and by inpaint."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, RES, RES, generator=g) * 2 - 1
    soft = torch.rand(n, 1, RES, RES, generator=g) * keep * 2
    soft[:, :, 0, 0] = 1.0  # never empty
    if image_form == "CHW" or image_form == "batch1":
        x = x[:1] if image_form == "batch1" else x[0]
    m = {
        "binary": (soft >= 0.5).float(),
        "soft": soft.clamp(0, 1),
        "bool": soft >= 0.5,
        "uint8": (soft >= 0.5).to(torch.uint8),
    }[mask_values]
    m = {"N1HW": m, "1HW": m[0], "HW": m[0, 0], "NHW": m[:, 0], "batch1": m[:1]}[mask_form]
    n_img = 1 if image_form in ("CHW", "batch1") else n
    n_mask = n if mask_form in ("N1HW", "NHW") else 1
    n_out = max(n_img, n_mask)
    res = pipe_wplus.compose([x], [m], paste=True)
    _check_compose(res, n_out)
    known = res.mask.bool().expand_as(res.image)
    assert torch.equal(res.image[known], res.collage[known])
    out = pipe_wplus.inpaint(x, m, n=k, seed=seed)
    assert out.images.shape == (n_out, k, 3, RES, RES) and torch.isfinite(out.images).all()


@settings(max_examples=40, **SETTINGS)
@given(
    image=tensors("image"),
    mask=tensors("mask"),
    n=st.integers(-1, 3),
    method=st.sampled_from(["auto", "fill", "style", "bogus"]),
    refine=st.sampled_from([0, 1]),
    seed=st.integers(0, 2**63 - 1),
)
def test_inpaint_any_tensors(pipe_wplus, image, mask, n, method, refine, seed):
    try:
        res = pipe_wplus.inpaint(image, mask, n=n, seed=seed, method=method, refine=refine, paste=True)
    except LatentcompError as e:
        assert "\n" not in str(e)
        event("refused")
        return
    event("inpainted")
    assert n >= 1 and method != "bogus"
    assert res.images.shape[1:] == (n, 3, RES, RES) and torch.isfinite(res.images).all()
    assert res.images.abs().max() <= 1


# ------------------------------------------------------------------------------------------------- CLI
@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    d = tmp_path_factory.mktemp("prop_cli")
    G = load_generator("builtin:tiny-random")
    torch.manual_seed(0)
    save_regressor(build_regressor(G), d / "reg")
    return d / "reg.safetensors"


def _cli(args) -> tuple[int, str]:
    """Run the CLI in-process; (exit code, what it wrote to stderr)."""
    from latentcomp.cli import main

    err = pyio.StringIO()
    code = 0
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(pyio.StringIO()):
        try:
            main(args)
        except SystemExit as e:
            code = e.code or 0
    return code, err.getvalue()


@st.composite
def image_and_mask_files(draw):
    img = draw(image_files())
    same = draw(st.booleans())
    return img, draw(image_files(hw=(img[2], img[3]) if same else None))


@settings(max_examples=25, **SETTINGS)
@given(files=image_and_mask_files(), command=st.sampled_from(["inpaint", "compose"]))
def test_cli_on_any_files(model_file, files, command):
    (_, ifmt, ih, iw, idata), (_, mfmt, mh, mw, mdata) = files
    ip, mp = _write(idata, SUFFIX[ifmt]), _write(mdata, SUFFIX[mfmt])
    out_dir = Path(tempfile.mkdtemp(dir=_TMP.name))
    out = out_dir / "o.png"
    if command == "inpaint":
        args = [
            "inpaint",
            "--model",
            str(model_file),
            "--image",
            str(ip),
            "--mask",
            str(mp),
            "--out",
            str(out),
        ]
    else:
        args = [
            "compose",
            "--model",
            str(model_file),
            "--part",
            f"{ip}:{mp}",
            "--part",
            str(ip),
            "--out",
            str(out),
        ]
    code, err = _cli(args)
    event(f"exit {code}")
    if code == 0:
        assert out.is_file() and Image.open(out).size == (RES, RES)
        assert ifmt in ACCEPTED_FORMATS and mfmt in ACCEPTED_FORMATS
    else:
        assert code == 2, err
        errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
        assert len(errors) == 1 and "Traceback" not in err, err
    assert [p.name for p in out_dir.iterdir()] == (["o.png"] if code == 0 else [])
