"""Poisson blending and the raw collage (edit/baselines.py)."""

from __future__ import annotations

import torch

from latentcomp.edit.baselines import poisson_blend, raw_collage


def _smooth(seed, n=1, s=32):
    g = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, 4, 4, generator=g) * 2 - 1
    return torch.nn.functional.interpolate(low, size=(s, s), mode="bilinear", align_corners=False)


def test_single_part_is_the_base_image():
    x = _smooth(0)
    out = poisson_blend([x], [None])
    assert out.shape == x.shape
    assert (out - x).abs().max() <= 1 / 127.5 + 1e-6  # uint8 round trip only


def test_small_parts_skipped_large_parts_blended():
    a = _smooth(1)
    b = (torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(2)) - 0.5) * 0.6  # textured
    small = torch.zeros(1, 1, 32, 32)
    small[..., 10:14, 10:14] = 1  # 1.6% of the image: skipped
    out = poisson_blend([a, b], [None, small])
    assert (out - a).abs().max() <= 1 / 127.5 + 1e-6
    big = torch.zeros(1, 1, 32, 32)
    big[..., 4:28, 16:] = 1  # touches the right border
    out = poisson_blend([a, b], [None, big])
    assert out.shape == (1, 3, 32, 32)
    # inside the pasted region the gradients follow b, not a
    gx = lambda t: t[..., 8:24, 18:26].diff(dim=-1)  # noqa: E731
    assert (gx(out) - gx(b)).abs().mean() < 0.5 * (gx(out) - gx(a)).abs().mean()
    # outside it, a is untouched
    assert (out[..., :, :12] - a[..., :, :12]).abs().max() <= 1 / 127.5 + 1e-6


def test_poisson_batched_deterministic_and_gray():
    a, b = _smooth(3, n=2), _smooth(4, n=2)
    m = torch.zeros(2, 1, 32, 32)
    m[..., 8:24, 8:24] = 1
    o1 = poisson_blend([a, b], [None, m])
    o2 = poisson_blend([a, b], [None, m])
    assert o1.shape == (2, 3, 32, 32) and torch.equal(o1, o2)
    g = poisson_blend([a[:, :1], b[:, :1]], [None, m])
    assert g.shape == (2, 1, 32, 32)


def test_raw_collage():
    a, b = _smooth(5), _smooth(6)
    m = torch.zeros(1, 1, 32, 32)
    m[..., :16, :] = 1
    out = raw_collage([a, b], [m, None])
    assert torch.equal(out, b)
