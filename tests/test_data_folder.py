import numpy as np
import pytest
from PIL import Image

from latentcomp.data.folder import ImageFolder
from latentcomp.errors import LatentcompError


def test_recursive_resize_crop_and_channels(tmp_path):
    (tmp_path / "sub").mkdir()
    Image.fromarray(np.full((40, 80, 3), 200, np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.full((90, 30), 10, np.uint8)).save(tmp_path / "sub" / "b.jpg")
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(tmp_path / "sub" / "c.webp")
    (tmp_path / "notes.txt").write_text("not an image")
    ds = ImageFolder(tmp_path, resolution=32)
    assert len(ds) == 3
    x = ds[0]
    assert x.shape == (3, 32, 32) and abs(x.mean().item() - (200 / 127.5 - 1)) < 1e-2
    assert ImageFolder(tmp_path, resolution=16, channels=1)[1].shape == (1, 16, 16)


def test_corrupt_file_named(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    ds = ImageFolder(tmp_path, resolution=16)
    with pytest.raises(LatentcompError, match="bad.png"):
        ds[0]


def test_empty_or_missing_folder(tmp_path):
    with pytest.raises(LatentcompError, match="no images"):
        ImageFolder(tmp_path)
    with pytest.raises(LatentcompError, match="not found"):
        ImageFolder(tmp_path / "nope")
