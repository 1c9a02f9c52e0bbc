import pytest
import torch

from latentcomp.errors import LatentcompError
from latentcomp.masks import (
    MaskSampler,
    check_mask,
    make_rgbm,
    noise_masks,
    part_masks,
    rect_masks,
    with_unmasked,
)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_noise_masks_are_binary_and_seeded():
    a = noise_masks(8, 32, generator=gen(1))
    b = noise_masks(8, 32, generator=gen(1))
    c = noise_masks(8, 32, generator=gen(2))
    assert a.shape == (8, 1, 32, 32) and a.dtype == torch.float32
    assert set(a.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_noise_mask_known_fraction_tracks_cutoff():
    fr = {c: noise_masks(1000, 32, generator=gen(0), cutoff=c).mean().item() for c in (0.3, 0.5, 0.7, 0.9)}
    # symmetric noise: the cutoff 0.5 keeps half the pixels on average
    assert fr[0.5] == pytest.approx(0.5, abs=0.015)
    # bilinear interpolation pulls the field towards 0.5: below c for c < 0.5, above c for c > 0.5
    assert fr[0.3] == pytest.approx(0.19, abs=0.03)
    assert fr[0.7] == pytest.approx(0.81, abs=0.03)
    assert fr[0.3] + fr[0.7] == pytest.approx(1.0, abs=0.02)
    assert fr[0.3] < fr[0.5] < fr[0.7] < fr[0.9]
    assert noise_masks(4, 16, generator=gen(0), cutoff=1.0).min() == 1.0


@pytest.mark.parametrize("c", [0.3, 0.55, 0.9])
def test_noise_mask_exact_fraction(c):
    m = noise_masks(16, 32, generator=gen(3), cutoff=c, exact_fraction=True)
    per_sample = m.flatten(1).mean(1)
    assert torch.allclose(per_sample, torch.full_like(per_sample, c), atol=1 / 1024)


def test_noise_mask_cutoff_drawn_per_batch_in_range():
    fractions = []
    for s in range(60):
        m = noise_masks(4, 24, generator=gen(s), exact_fraction=True)
        f = m.flatten(1).mean(1)
        assert torch.allclose(f, f[0].expand_as(f))  # one cutoff per batch
        fractions.append(f[0].item())
    fractions = torch.tensor(fractions)
    assert fractions.min() >= 0.3 - 1e-3 and fractions.max() <= 1.0
    assert fractions.mean().item() == pytest.approx(0.65, abs=0.07)


def test_rows_select_the_same_masks_as_the_full_batch():
    full = MaskSampler("noise", unmasked_fraction=0.3)(8, 16, generator=gen(5))
    part = MaskSampler("noise", unmasked_fraction=0.3)(8, 16, generator=gen(5), rows=slice(4, 8))
    assert torch.equal(full[4:], part)
    full = MaskSampler("rect")(6, 16, generator=gen(5))
    part = MaskSampler("rect")(6, 16, generator=gen(5), rows=slice(0, 3))
    assert torch.equal(full[:3], part)


def test_rect_masks_one_filled_rectangle():
    m = rect_masks(20, (24, 32), generator=gen(0), min_frac=0.25, max_frac=0.9)
    assert m.shape == (20, 1, 24, 32)
    for mi in m[:, 0]:
        ys, xs = mi.nonzero(as_tuple=True)
        box = mi[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
        assert box.all()  # the known pixels form one full rectangle
        assert 0.25 * 0.25 * 0.8 <= mi.mean() <= 0.9 * 0.9 * 1.1


def test_part_masks_keep_whole_parts():
    pm = torch.zeros(50, 8, 8, dtype=torch.long)
    pm[:, :4, :4], pm[:, :4, 4:], pm[:, 4:, :] = 1, 2, 3
    m = part_masks(pm, generator=gen(0), keep_prob=0.5)[:, 0]
    for mi, p in zip(m, pm, strict=True):
        for part in range(1, 4):
            vals = mi[p == part].unique()
            assert len(vals) == 1  # a part is wholly known or wholly hidden
        assert mi.any()  # never all hidden
    kept = torch.stack([m[:, 0, 0], m[:, 0, 7], m[:, 7, 0]], 1).float().mean()
    assert 0.35 < kept.item() < 0.75


def test_with_unmasked_fraction():
    m = torch.zeros(400, 1, 4, 4)
    out = with_unmasked(m, 0.25, generator=gen(0))
    full = out.flatten(1).all(1).float().mean().item()
    assert full == pytest.approx(0.25, abs=0.07)
    assert with_unmasked(m, 0.0) is m
    with pytest.raises(LatentcompError):
        with_unmasked(m, 1.5)


def test_make_rgbm():
    x = torch.rand(2, 3, 4, 4) * 2 - 1
    m = torch.zeros(2, 1, 4, 4)
    m[:, :, :2] = 1
    r = make_rgbm(x, m)
    assert r.shape == (2, 4, 4, 4)
    assert torch.equal(r[:, :3, :2], x[:, :, :2])
    assert torch.equal(r[:, :3, 2:], torch.zeros_like(x[:, :, 2:]))  # hidden pixels are 0
    assert torch.equal(r[:, 3:], m)
    assert torch.equal(make_rgbm(x)[:, 3:], torch.ones(2, 1, 4, 4))
    assert make_rgbm(x, m[:1]).shape == (2, 4, 4, 4)  # one mask broadcast to the batch
    assert make_rgbm(x[:, :1], m).shape == (2, 2, 4, 4)  # C + 1 channels for grey images


def test_mask_errors_name_the_problem():
    x = torch.zeros(2, 3, 8, 8)
    with pytest.raises(LatentcompError, match="does not match image size"):
        check_mask(torch.ones(2, 1, 4, 4), x)
    with pytest.raises(LatentcompError, match="3 masks for 2 images"):
        check_mask(torch.ones(3, 1, 8, 8), x)
    with pytest.raises(LatentcompError, match="unknown mask kind"):
        MaskSampler("blobs")
    with pytest.raises(LatentcompError, match="needs part maps"):
        MaskSampler("parts")(2, 8, generator=gen(0))
