import json

import pytest
import torch
from typer.testing import CliRunner

import latentcomp.data.toyfaces as toyfaces
from latentcomp.cli import app
from latentcomp.data.toyfaces import (
    ATTRIBUTE_PART,
    ATTRIBUTE_PARTS,
    ATTRIBUTES,
    PART_ID,
    PARTS,
    ToyFaces,
    num_combinations,
)
from latentcomp.errors import LatentcompError


def test_deterministic_for_seed_and_index():
    a = ToyFaces(64, seed=3).render_batch([7, 11])
    b = ToyFaces(64, seed=3).render_batch([11])
    assert torch.equal(a[0][1], b[0][0]) and torch.equal(a[1][1], b[1][0]) and torch.equal(a[2][1], b[2][0])
    c = ToyFaces(64, seed=4).render_batch([11])
    assert not torch.equal(b[0], c[0])


def test_shapes_ranges_and_resolutions():
    for res in (32, 64, 128):
        img, parts, attrs = ToyFaces(res).render_batch(range(4))
        assert img.shape == (4, 3, res, res) and img.dtype == torch.float32
        assert img.min() >= -1 and img.max() <= 1
        assert parts.shape == (4, res, res) and parts.max() < len(PARTS)
        assert attrs.shape == (4, len(ATTRIBUTES))
    with pytest.raises(LatentcompError, match="resolution"):
        ToyFaces(48)


def test_domain_size_and_part_classes():
    assert len(PARTS) >= 7 and len(ATTRIBUTES) >= 7
    assert num_combinations() > 1_000_000
    assert set(ATTRIBUTE_PART.values()) <= set(PARTS)
    _, parts, attrs = ToyFaces(64).render_batch(range(64))
    assert set(parts.unique().tolist()) == set(range(len(PARTS)))  # every part appears somewhere
    for k, values in enumerate(ATTRIBUTES.values()):  # every value is drawn
        assert set(attrs[:, k].tolist()) == set(range(len(values))) or len(values) > 5


def test_antialiased_edges():
    img, parts, _ = ToyFaces(64).render_batch(range(8))
    # analytic coverage gives intermediate colours along edges, not only the flat fill colours
    flat = img.flatten(2)
    n_colours = torch.unique((flat[0].T * 255).round(), dim=0).shape[0]
    assert n_colours > 100


def _render_one_by_one(ds, overrides_list):
    """Each face alone (batch of 1), so that each pixel window is as tight as it gets."""
    out = []
    for index, overrides in overrides_list:
        img, parts, _ = ds.render_batch([index], overrides=overrides)
        out.append((img, parts))
    return out


@pytest.mark.parametrize("resolution", [32, 64, 128])
def test_drawing_small_parts_in_windows_changes_no_pixel(resolution, monkeypatch):
    # every value of every attribute, and random faces: rendered in windows and on the whole canvas
    cases = [(i, None) for i in range(60)]
    for name, values in ATTRIBUTES.items():
        cases += [(100 + i, {name: v}) for v in range(len(values)) for i in range(3)]
    windowed = ToyFaces(resolution, seed=2)
    whole = ToyFaces(resolution, seed=2)
    whole.use_windows = False
    for (img_w, parts_w), (img_f, parts_f) in zip(
        _render_one_by_one(windowed, cases), _render_one_by_one(whole, cases), strict=True
    ):
        assert torch.equal(img_w, img_f) and torch.equal(parts_w, parts_f)
    # and the check can fail: a box cut 0.2 face units short on one side misses pixels
    u0, v0, u1, v1 = toyfaces._LOWER_BOX
    monkeypatch.setattr(toyfaces, "_LOWER_BOX", (u0, v0, u1, v1 - 0.2))
    assert any(
        not torch.equal(a[0], b[0])
        for a, b in zip(_render_one_by_one(windowed, cases), _render_one_by_one(whole, cases), strict=True)
    )


@pytest.mark.parametrize("attribute", list(ATTRIBUTES))
def test_changing_a_part_changes_pixels_only_inside_it(attribute):
    ds = ToyFaces(64, seed=1)
    idx = list(range(16))
    parts = [PART_ID[p] for p in ATTRIBUTE_PARTS[attribute]]
    n_values = len(ATTRIBUTES[attribute])
    img0, parts0, _ = ds.render_batch(idx, overrides={attribute: 0})
    img1, parts1, _ = ds.render_batch(idx, overrides={attribute: n_values - 1})
    change = (img0 - img1).abs().amax(1)
    inside = torch.isin(parts0, torch.tensor(parts)) | torch.isin(parts1, torch.tensor(parts))
    # the anti-aliased rim: pixels within 2 px of the part can hold a fraction of its colour
    inside = torch.nn.functional.max_pool2d(inside.float().unsqueeze(1), 5, 1, 2).squeeze(1).bool()
    assert change.sum() > 1
    assert change[~inside].sum() < 0.01 * change.sum()


def test_render_command(tmp_path):
    res = CliRunner().invoke(app, ["data", "render", "toyfaces", "--n", "5", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in (tmp_path / "attributes.jsonl").read_text().splitlines()]
    assert len(rows) == 5 and set(ATTRIBUTES) <= set(rows[0])
    assert (tmp_path / "000004.png").is_file() and (tmp_path / "000004_parts.png").is_file()
    assert (tmp_path / "contact_sheet.png").is_file()
    from PIL import Image

    assert Image.open(tmp_path / "000000_parts.png").mode == "P"
