"""Collage assembly and input validation (edit/collage.py)."""

from __future__ import annotations

import pytest
import torch

from latentcomp.edit.collage import as_image_batch, as_mask_batch, make_collage, paste_back
from latentcomp.errors import LatentcompError


def _img(v, n=1, s=8):
    return torch.full((n, 3, s, s), float(v))


def test_paste_order_union_and_visible():
    left = torch.zeros(1, 1, 8, 8)
    left[..., :5] = 1
    right = torch.zeros(1, 1, 8, 8)
    right[..., 3:7] = 1
    collage, known, visible = make_collage([_img(0.5), _img(-0.5)], [left, right])
    assert collage.shape == (1, 3, 8, 8) and known.shape == (1, 1, 8, 8)
    assert torch.all(collage[..., :3] == 0.5) and torch.all(collage[..., 3:7] == -0.5)
    assert (
        torch.all(collage[..., 7:] == 0) and torch.all(known[..., :7] == 1) and torch.all(known[..., 7:] == 0)
    )
    assert visible[0].sum() == 8 * 3 and visible[1].sum() == 8 * 4


def test_part_without_mask_is_whole_image_and_broadcast():
    m = torch.zeros(8, 8)
    m[:4] = 1
    collage, known, _ = make_collage([_img(0.2, n=3), _img(0.9)], [None, m])
    assert collage.shape[0] == 3 and known.eq(1).all()
    assert torch.all(collage[:, :, :4] == 0.9) and torch.all(collage[:, :, 4:] == 0.2)


def test_masks_are_binarised():
    m = torch.full((1, 1, 8, 8), 0.7)
    m[..., :2] = 0.2
    _, known, _ = make_collage([_img(0)], [m])
    assert set(known.unique().tolist()) == {0.0, 1.0} and known[..., :2].eq(0).all()


@pytest.mark.parametrize(
    "images,masks,words",
    [
        ([_img(0)], [torch.ones(1, 1, 4, 4)], ["part 0 mask", "4x4", "8x8"]),
        ([_img(0)], [torch.zeros(1, 1, 8, 8)], ["part 0 mask", "no known pixels"]),
        ([torch.full((1, 3, 8, 8), float("nan"))], [None], ["part 0 image", "NaN"]),
        ([_img(0), torch.zeros(1, 3, 6, 6)], [None, None], ["part 1 image", "same size"]),
        ([_img(0, n=2), _img(0, n=3)], [None, None], ["batch sizes"]),
        ([_img(0)], [None, None], ["1 part images but 2 masks"]),
        ([], [], ["at least one part"]),
        ([torch.zeros(8, 8)], [None], ["part 0 image", "(C, H, W)"]),
        ([_img(0)], [torch.full((1, 1, 8, 8), float("inf"))], ["part 0 mask", "NaN or Inf"]),
    ],
)
def test_errors_name_the_input(images, masks, words):
    with pytest.raises(LatentcompError) as e:
        make_collage(images, masks)
    msg = str(e.value)
    assert "\n" not in msg
    for w in words:
        assert w in msg, msg


def test_resolution_and_channels_checked():
    with pytest.raises(LatentcompError, match="expects 16x16"):
        as_image_batch(_img(0), resolution=16)
    with pytest.raises(LatentcompError, match="1 channels|3 channels"):
        as_image_batch(_img(0), channels=1)
    assert as_mask_batch(torch.ones(2, 8, 8)).shape == (2, 1, 8, 8)


def test_empty_parts_allowed_for_auto_collages_but_not_empty_union():
    z = torch.zeros(1, 1, 8, 8)
    o = torch.ones(1, 1, 8, 8)
    collage, known, vis = make_collage([_img(0.1), _img(0.3)], [z, o], allow_empty_parts=True)
    assert vis[0].sum() == 0 and known.eq(1).all()
    with pytest.raises(LatentcompError, match="every part mask is empty"):
        make_collage([_img(0.1)], [z], allow_empty_parts=True)


def test_paste_back_keeps_known():
    out = _img(0.0)
    tgt = _img(1.0)
    m = torch.zeros(1, 1, 8, 8)
    m[..., :3] = 1
    res = paste_back(out, tgt, m)
    assert torch.all(res[..., :3] == 1) and torch.all(res[..., 3:] == 0)
