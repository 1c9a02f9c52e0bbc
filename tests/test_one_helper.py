"""One helper per concept: masked L1, the LPIPS cache, the image-folder reader and atomic writes are each
written once, and every caller gets the same behaviour."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from latentcomp import io
from latentcomp.data.folder import ImageFolder
from latentcomp.edit import refine
from latentcomp.metrics import masked


def test_masked_l1_is_nan_without_known_pixels_for_every_caller():
    a, b = torch.zeros(2, 3, 4, 4), torch.ones(2, 3, 4, 4)
    m = torch.zeros(2, 1, 4, 4)
    m[0, :, :2] = 1
    for fn in (refine.masked_l1, masked.masked_l1):
        out = fn(a, b, m)
        assert out[0].item() == pytest.approx(1.0) and math.isnan(out[1].item())
    assert refine.masked_l1 is masked.masked_l1


def test_masked_l1_keeps_gradients_for_the_optimiser():
    a = torch.zeros(1, 3, 4, 4, requires_grad=True)
    refine.masked_l1(a, torch.ones(1, 3, 4, 4), torch.ones(1, 1, 4, 4)).sum().backward()
    assert torch.allclose(a.grad, torch.full_like(a, -1 / 48))


def test_refinement_and_metrics_share_one_lpips_network(monkeypatch):
    built = []

    def fake_load(net, weights=None, device=None):
        built.append((net, weights, str(device)))
        return lambda x, y: (x - y).abs().flatten(1).mean(1)

    import latentcomp.losses as losses

    monkeypatch.setattr(losses, "find_lpips_backbone", lambda net, weights=None: None)
    monkeypatch.setattr(losses, "load_lpips", fake_load)
    monkeypatch.setattr(masked, "_LPIPS_CACHE", {})
    fn = refine.perceptual("cpu")
    a, b, m = torch.zeros(2, 3, 4, 4), torch.ones(2, 3, 4, 4), torch.ones(2, 1, 4, 4)
    assert torch.allclose(fn(a, b, m), torch.ones(2))
    assert torch.allclose(masked.masked_lpips(a, b, m), torch.ones(2))
    refine.perceptual("cpu")
    assert built == [("alex", None, "cpu")]  # built once, then cached for both


def _save(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def test_image_folder_reads_as_load_image_does(tmp_path):
    rng = np.random.default_rng(0)
    _save(tmp_path / "a.png", rng.integers(0, 256, (40, 70, 3), dtype=np.uint8))
    _save(tmp_path / "sub" / "b.bmp", rng.integers(0, 256, (50, 50, 3), dtype=np.uint8))
    (tmp_path / ".hidden").mkdir()
    _save(tmp_path / ".hidden" / "c.png", rng.integers(0, 256, (8, 8, 3), dtype=np.uint8))
    ds = ImageFolder(tmp_path, resolution=16, cache=1)
    assert [p.relative_to(tmp_path).as_posix() for p in ds.files] == ["a.png", "sub/b.bmp"]
    for i, f in enumerate(ds.files):
        assert torch.equal(ds[i], io.load_image(f, size=16, notice=None)[0])
    assert ds[0] is ds[0] and ds[1] is not ds[1]  # only the first `cache` images stay in memory


def test_flat_listing_still_skips_subfolders_with_a_notice(tmp_path):
    _save(tmp_path / "a.png", np.zeros((4, 4, 3), np.uint8))
    _save(tmp_path / "sub" / "b.png", np.zeros((4, 4, 3), np.uint8))
    notes = []
    assert io.list_images(tmp_path, notice=notes.append) == [tmp_path / "a.png"]
    assert len(notes) == 1 and "sub" in notes[0]
    assert io.list_images(tmp_path, notice=notes.append, recursive=True)[-1] == tmp_path / "sub" / "b.png"


def test_atomic_writers_live_in_io(tmp_path):
    io.write_json(tmp_path / "c.json", {"b": 1, "a": [2]})
    assert (tmp_path / "c.json").read_text() == json.dumps({"a": [2], "b": 1}, indent=2) + "\n"
    io.save_torch({"x": torch.arange(3)}, tmp_path / "s.pt")
    assert torch.equal(torch.load(tmp_path / "s.pt", weights_only=True)["x"], torch.arange(3))
    io.save_safetensors({"w": torch.ones(2)}, tmp_path / "w.safetensors", metadata={"k": "v"})
    from safetensors import safe_open

    with safe_open(tmp_path / "w.safetensors", "pt") as f:
        assert f.metadata() == {"k": "v"} and torch.equal(f.get_tensor("w"), torch.ones(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.json", "s.pt", "w.safetensors"]  # no temp files
    import latentcomp.training.checkpoint as ckpt

    assert not any(n.startswith("atomic_") for n in dir(ckpt))
