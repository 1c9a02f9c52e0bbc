"""latentcomp.io: the bad-input matrix (issue 8) and conversions; every error is one line naming the file."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from latentcomp import io
from latentcomp.errors import LatentcompError


def _png(path, arr, mode=None):
    Image.fromarray(arr, mode=mode).save(path) if mode else Image.fromarray(arr).save(path)
    return path


def _rgb(h=16, w=16, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _one_line(e: pytest.ExceptionInfo, *words):
    msg = str(e.value)
    assert "\n" not in msg
    for w in words:
        assert str(w) in msg, msg


def _notes():
    got: list[str] = []
    return got, got.append


def test_roundtrip_png_exact(tmp_path):
    arr = _rgb()
    p = _png(tmp_path / "a.png", arr)
    x = io.load_image(p)
    assert x.shape == (1, 3, 16, 16) and x.dtype == torch.float32
    assert x.min() >= -1 and x.max() <= 1
    io.save_image(x[0], tmp_path / "b.png")
    assert np.array_equal(np.asarray(Image.open(tmp_path / "b.png")), arr)


@pytest.mark.parametrize("suffix,fmt", [(".jpg", "JPEG"), (".webp", "WEBP")])
def test_jpg_webp(tmp_path, suffix, fmt):
    p = tmp_path / f"a{suffix}"
    Image.fromarray(_rgb()).save(p, format=fmt, quality=95)
    assert io.load_image(p).shape == (1, 3, 16, 16)
    io.save_image(torch.zeros(3, 8, 8), tmp_path / f"out{suffix}")
    assert Image.open(tmp_path / f"out{suffix}").format == fmt


def test_not_an_image(tmp_path):
    p = tmp_path / "notes.png"
    p.write_text("hello, I am not a picture")
    with pytest.raises(LatentcompError) as e:
        io.load_image(p)
    _one_line(e, p, "not a readable image", "PNG")


def test_truncated_png(tmp_path):
    p = _png(tmp_path / "full.png", _rgb(64, 64))
    data = p.read_bytes()
    t = tmp_path / "cut.png"
    t.write_bytes(data[: len(data) // 2])
    with pytest.raises(LatentcompError) as e:
        io.load_image(t)
    _one_line(e, t, "truncated")


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(LatentcompError) as e:
        io.load_image(tmp_path / "nope.png")
    _one_line(e, "not found", "nope.png")
    with pytest.raises(LatentcompError) as e:
        io.load_image(tmp_path)
    _one_line(e, "folder")


def test_16bit_png_scaled(tmp_path):
    arr = np.array([[0, 32768], [65535, 65535]], dtype=np.uint16)
    p = tmp_path / "deep.png"
    Image.fromarray(arr).save(p)
    assert Image.open(p).mode.startswith("I")
    got, notice = _notes()
    x = io.load_image(p, notice=notice)
    assert x.shape == (1, 3, 2, 2)
    assert torch.allclose(x[0, 0], torch.tensor([[-1.0, 0.0], [1.0, 1.0]]), atol=1e-3)
    assert any("16-bit" in g for g in got)


def test_gray_rgba_palette(tmp_path):
    g = np.arange(256, dtype=np.uint8).reshape(16, 16)
    x = io.load_image(_png(tmp_path / "g.png", g), notice=None)
    assert x.shape == (1, 3, 16, 16) and torch.equal(x[0, 0], x[0, 1])
    assert io.load_image(tmp_path / "g.png", channels=1, notice=None).shape == (1, 1, 16, 16)

    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[..., 0] = 255
    rgba[:2, :, 3] = 255  # top opaque red, bottom transparent
    x, alpha = io.load_image(_png(tmp_path / "a.png", rgba, "RGBA"), with_alpha=True, notice=None)
    assert torch.allclose(x[0, :, 0, 0], torch.tensor([1.0, -1.0, -1.0]))
    assert torch.allclose(x[0, :, 3, 0], torch.tensor([1.0, 1.0, 1.0]))  # composited on white
    assert alpha is not None and alpha[0, 0, :2].eq(1).all() and alpha[0, 0, 2:].eq(0).all()

    pal = Image.fromarray(_rgb(8, 8)).convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    pal.save(tmp_path / "p.png")
    x = io.load_image(tmp_path / "p.png", notice=None)
    ref = np.asarray(pal.convert("RGB")).astype(np.float32) / 127.5 - 1
    assert np.allclose(x[0].permute(1, 2, 0).numpy(), ref, atol=1e-5)


def test_wrong_size_resized_with_notice_or_refused(tmp_path):
    p = _png(tmp_path / "big.png", _rgb(40, 60))
    got, notice = _notes()
    x = io.load_image(p, size=16, notice=notice)
    assert x.shape == (1, 3, 16, 16)
    assert len(got) == 1 and "60x40" in got[0] and "centre-cropped" in got[0] and "16x16" in got[0]
    with pytest.raises(LatentcompError) as e:
        io.load_image(p, size=16, resize=False)
    _one_line(e, p, "60x40", "16x16")


def test_mask_binarised_and_sized(tmp_path):
    m = np.full((8, 8), 50, dtype=np.uint8)
    m[:, 4:] = 200
    p = _png(tmp_path / "m.png", m)
    t = io.load_mask(p)
    assert t.shape == (1, 1, 8, 8)
    assert set(t.unique().tolist()) == {0.0, 1.0} and t[..., 4:].eq(1).all() and t[..., :4].eq(0).all()
    # resized together with an 16x16 image to 4x4
    big = _png(tmp_path / "m16.png", np.kron(m, np.ones((2, 2), dtype=np.uint8)))
    assert io.load_mask(big, size=4, image_hw=(16, 16)).shape == (1, 1, 4, 4)
    # a mask at the model's size is fine too
    assert io.load_mask(p, size=8, image_hw=(16, 16)).shape == (1, 1, 8, 8)


def test_mask_of_another_size(tmp_path):
    p = _png(tmp_path / "m.png", np.full((10, 12), 255, dtype=np.uint8))
    with pytest.raises(LatentcompError) as e:
        io.load_mask(p, size=16, image_hw=(32, 32))
    _one_line(e, p, "12x10", "32x32")


def test_empty_and_full_mask(tmp_path):
    empty = _png(tmp_path / "e.png", np.zeros((8, 8), dtype=np.uint8))
    with pytest.raises(LatentcompError) as e:
        io.load_mask(empty)
    _one_line(e, empty, "no known pixels")
    assert io.load_mask(empty, allow_empty=True).sum() == 0
    full = _png(tmp_path / "f.png", np.full((8, 8), 255, dtype=np.uint8))
    assert io.load_mask(full).eq(1).all()


def test_rgba_mask_uses_alpha(tmp_path):
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[:, :2, 3] = 255
    t = io.load_mask(_png(tmp_path / "a.png", rgba, "RGBA"))
    assert t[..., :2].eq(1).all() and t[..., 2:].eq(0).all()


def test_unwritable_output_folder(tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    target = blocker / "sub" / "out.png"
    with pytest.raises(LatentcompError) as e:
        io.save_image(torch.zeros(3, 4, 4), target)
    _one_line(e, "cannot create output folder")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    def boom(self, *a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", boom)
    with pytest.raises(LatentcompError) as e:
        io.save_image(torch.zeros(3, 4, 4), tmp_path / "out.png")
    _one_line(e, "out.png", "No space left")
    assert list(tmp_path.iterdir()) == []


def test_bad_tensor_or_suffix_writes_nothing(tmp_path):
    with pytest.raises(LatentcompError, match="NaN"):
        io.save_image(torch.full((3, 4, 4), float("nan")), tmp_path / "n.png")
    with pytest.raises(LatentcompError, match=".png"):
        io.save_image(torch.zeros(3, 4, 4), tmp_path / "n.gif")
    assert list(tmp_path.iterdir()) == []


def test_match_images_masks(tmp_path):
    (tmp_path / "im").mkdir()
    (tmp_path / "mk").mkdir()
    for name in ("a", "b"):
        _png(tmp_path / "im" / f"{name}.png", _rgb())
        _png(tmp_path / "mk" / f"{name}.jpg", np.full((16, 16), 255, dtype=np.uint8))
    pairs = io.match_images_masks(tmp_path / "im", tmp_path / "mk")
    assert [(a.name, b.name) for a, b in pairs] == [("a.png", "a.jpg"), ("b.png", "b.jpg")]
    single = tmp_path / "mk" / "a.jpg"
    assert [b for _, b in io.match_images_masks(tmp_path / "im", single)] == [single, single]
    (tmp_path / "mk" / "b.jpg").unlink()
    with pytest.raises(LatentcompError) as e:
        io.match_images_masks(tmp_path / "im", tmp_path / "mk")
    _one_line(e, "b.png", "matched by file name")


@settings(max_examples=15, deadline=None)
@given(
    h=st.integers(1, 12),
    w=st.integers(1, 12),
    seed=st.integers(0, 2**16),
    mode=st.sampled_from(["RGB", "L"]),
)
def test_property_roundtrip(tmp_path_factory, h, w, seed, mode):
    d = tmp_path_factory.mktemp("prop")
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, (h, w, 3) if mode == "RGB" else (h, w), dtype=np.uint8)
    _png(d / "x.png", arr)
    x = io.load_image(d / "x.png", channels=3 if mode == "RGB" else 1, notice=None)
    assert x.shape == (1, 3 if mode == "RGB" else 1, h, w)
    io.save_image(x, d / "y.png")
    assert np.array_equal(np.asarray(Image.open(d / "y.png")), arr)
    m = io.load_mask(d / "x.png", allow_empty=True)
    gray = arr.mean(-1) if mode == "RGB" else arr
    assert torch.equal(m[0, 0], torch.from_numpy((gray / 255.0 >= 0.5).astype(np.float32)))
