"""Metrics against hand-computed values on tiny inputs."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from clirun import run_ok

from latentcomp.errors import LatentcompError
from latentcomp.metrics.features import load_features
from latentcomp.metrics.fid import (
    frechet_distance,
    frechet_distance_info,
    frechet_from_stats,
    inception_score,
    kid,
    resize_images,
)
from latentcomp.metrics.masked import lpips_available, masked_l1, masked_lpips
from latentcomp.metrics.prdc import compute_prdc, compute_prdc_reference, knn_radii


# ----------------------------------------------------------------------------------------- masked
def test_masked_l1_by_hand():
    a = torch.zeros(1, 2, 2, 2)
    b = torch.tensor([[[[1.0, -2.0], [0.5, 4.0]], [[0.0, 1.0], [-1.0, 9.0]]]])
    m = torch.tensor([[[[1.0, 1.0], [1.0, 0.0]]]])  # the pixel holding 4 and 9 is hidden
    # known: |1|+|-2|+|0.5| + |0|+|1|+|-1| = 5.5 over 3 pixels x 2 channels
    assert masked_l1(a, b, m).item() == pytest.approx(5.5 / 6)
    assert masked_l1(a, b).item() == pytest.approx((1 + 2 + 0.5 + 4 + 0 + 1 + 1 + 9) / 8)
    both = masked_l1(torch.cat([a, a]), torch.cat([b, b]), torch.cat([m, torch.zeros_like(m)]))
    assert both[0].item() == pytest.approx(5.5 / 6) and math.isnan(both[1].item())


def test_masked_lpips_local_or_clear_error():
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    m = torch.ones(2, 1, 32, 32)
    if not lpips_available("alex"):
        with pytest.raises(LatentcompError, match="alexnet"):
            masked_lpips(x, x, m)
        return
    assert masked_lpips(x, x, m).abs().max().item() < 1e-5


# ----------------------------------------------------------------------------------------- FID / KID / IS
def _exact_gaussian_sample(n, mu, cov, seed):
    """n points whose sample mean and (unbiased) covariance are exactly mu and cov."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, len(mu)))
    z -= z.mean(0)
    z = z @ np.linalg.inv(np.linalg.cholesky(np.cov(z, rowvar=False))).T  # sample cov = I
    return z @ np.linalg.cholesky(cov).T + mu


def test_fid_identical_sets_is_zero():
    f = torch.randn(300, 8, generator=torch.Generator().manual_seed(0))
    assert abs(frechet_distance(f, f)) < 1e-6


def test_fid_matches_closed_form():
    # 1-D: (m1 - m2)^2 + (s1 - s2)^2
    d, _ = frechet_from_stats([1.0], [[4.0]], [3.0], [[9.0]])
    assert d == pytest.approx(4 + 1)
    # diagonal covariances: |mu1-mu2|^2 + sum (sqrt(a) - sqrt(b))^2
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    c1, c2 = np.diag([1.0, 4.0, 9.0]), np.diag([4.0, 1.0, 1.0])
    expected = 1 + 0 + 4 + (1 - 2) ** 2 + (2 - 1) ** 2 + (3 - 1) ** 2
    assert frechet_from_stats(mu1, c1, mu2, c2)[0] == pytest.approx(expected)
    # full covariances, from samples with exactly these statistics: c2 = A c1 A^T with commuting sqrt
    rng = np.random.default_rng(1)
    q, _ = np.linalg.qr(rng.standard_normal((4, 4)))
    e1, e2 = np.array([1.0, 2.0, 0.5, 3.0]), np.array([2.0, 0.5, 0.5, 1.0])
    s1, s2 = q @ np.diag(e1) @ q.T, q @ np.diag(e2) @ q.T  # shared eigenvectors: sqrt(s1 s2) commutes
    m1, m2 = rng.standard_normal(4), rng.standard_normal(4)
    closed = ((m1 - m2) ** 2).sum() + ((np.sqrt(e1) - np.sqrt(e2)) ** 2).sum()
    a = _exact_gaussian_sample(200, m1, s1, 2)
    b = _exact_gaussian_sample(150, m2, s2, 3)
    info = frechet_distance_info(torch.from_numpy(a), torch.from_numpy(b))
    assert info["fid"] == pytest.approx(closed, rel=1e-8)
    assert info["n_a"] == 200 and info["dim"] == 4


def test_fid_methods_agree():
    g = torch.Generator().manual_seed(5)
    a, b = torch.randn(50, 20, generator=g), torch.randn(60, 20, generator=g) * 1.5 + 0.3
    from latentcomp.metrics.fid import gaussian_stats

    (m1, s1), (m2, s2) = gaussian_stats(a), gaussian_stats(b)
    ref = frechet_from_stats(m1, s1, m2, s2, method="sqrtm")[0]
    assert frechet_from_stats(m1, s1, m2, s2, method="eigh")[0] == pytest.approx(ref, rel=1e-7)


def test_fid_singular_covariance_is_stable():
    f = torch.randn(10, 64, generator=torch.Generator().manual_seed(0))  # rank 9 < 64
    g = torch.randn(10, 64, generator=torch.Generator().manual_seed(1))
    d = frechet_distance(f, g)
    assert math.isfinite(d) and d > 0


def test_fid_errors():
    with pytest.raises(LatentcompError, match="at least 2"):
        frechet_distance(torch.zeros(1, 3), torch.zeros(5, 3))
    with pytest.raises(LatentcompError, match="dimensions"):
        frechet_distance(torch.zeros(4, 3), torch.zeros(5, 2))


def test_kid_by_hand():
    x = np.array([[0.0], [1.0], [2.0]])
    y = np.array([[1.0], [3.0]])

    def k(a, b):
        return (a * b / 1 + 1) ** 3

    kxx = sum(k(x[i, 0], x[j, 0]) for i in range(3) for j in range(3) if i != j) / (3 * 2)
    kyy = sum(k(y[i, 0], y[j, 0]) for i in range(2) for j in range(2) if i != j) / (2 * 1)
    kxy = sum(k(a, b) for a in x[:, 0] for b in y[:, 0]) / 6
    # subset size is capped at the smaller set (2): enumerate what one subset of x would be
    mean, std = kid(x[:2], y, subsets=1, subset_size=10)
    kxx2 = (k(0.0, 1.0) * 2) / 2
    kxy2 = sum(k(a, b) for a in (0.0, 1.0) for b in (1.0, 3.0)) / 4
    assert mean == pytest.approx(kxx2 + kyy - 2 * kxy2) and std == 0
    from latentcomp.metrics.fid import mmd2_unbiased

    assert mmd2_unbiased(x, y) == pytest.approx(kxx + kyy - 2 * kxy)


def test_kid_same_distribution_near_zero():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(400, 6, generator=g), torch.randn(400, 6, generator=g)
    same, _ = kid(a, b, subsets=20, subset_size=200)
    shifted, _ = kid(a, b + 1.0, subsets=20, subset_size=200)
    assert abs(same) < 0.02 and shifted > 0.2


def test_inception_score_by_hand():
    probs = torch.eye(4).repeat(5, 1)  # confident and spread evenly over 4 classes
    assert inception_score(probs, splits=1)[0] == pytest.approx(4.0)
    same = torch.tensor([[0.7, 0.2, 0.1]]).repeat(8, 1)
    assert inception_score(same, splits=2)[0] == pytest.approx(1.0)
    assert inception_score(torch.log(probs.clamp(min=1e-12)), splits=1, logits=True)[0] == pytest.approx(4.0)


# ----------------------------------------------------------------------------------------- PRDC
def test_prdc_by_hand_1d():
    real = np.array([[0.0], [1.0], [3.0]])
    fake = np.array([[0.4], [10.0]])
    out = compute_prdc(real, fake, k=1, chunk=2)
    assert out == pytest.approx({"precision": 0.5, "recall": 1.0, "density": 1.0, "coverage": 2 / 3})
    assert knn_radii(real, k=1).tolist() == pytest.approx([1.0, 1.0, 2.0])


def test_prdc_toy_clouds():
    g = torch.Generator().manual_seed(0)
    real = torch.randn(200, 3, generator=g)
    same = compute_prdc(real, real.clone(), k=5, chunk=64)
    assert same == pytest.approx({"precision": 1.0, "recall": 1.0, "density": 1.0, "coverage": 1.0})
    far = compute_prdc(real, real + 100.0, k=5, chunk=64)
    assert far == pytest.approx({"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0})
    # fakes collapsed onto one region of the real cloud: high precision, low coverage (recall is inflated by
    # the few fakes' large k-NN balls, the weakness coverage was made for)
    collapsed = compute_prdc(real, real[real[:, 0] > 1.0], k=5)
    assert collapsed["precision"] > 0.9 and collapsed["coverage"] < 0.4 < collapsed["recall"]


def test_prdc_chunked_equals_prdc_package():
    g = torch.Generator().manual_seed(3)
    real = torch.randn(70, 5, generator=g)
    fake = torch.randn(55, 5, generator=g) * 1.3 + 0.2
    ref = compute_prdc_reference(real, fake, k=5)
    for chunk in (7, 16, 1000):
        assert compute_prdc(real, fake, k=5, chunk=chunk) == pytest.approx(ref, abs=1e-12)
    from prdc.prdc import compute_nearest_neighbour_distances

    assert knn_radii(real, 5, chunk=9).numpy() == pytest.approx(
        compute_nearest_neighbour_distances(real.double().numpy(), 5), abs=1e-10
    )


# ----------------------------------------------------------------------------------------- resize / features
def test_resize_is_antialiased_and_keeps_constants():
    const = torch.full((1, 3, 32, 32), 0.25)
    for method in ("pil", "torch"):
        assert torch.allclose(resize_images(const, 8, method), torch.full((1, 3, 8, 8), 0.25), atol=1e-5)
    checker = (torch.arange(32)[:, None] + torch.arange(32)[None, :]) % 2 * 2.0 - 1.0
    checker = checker.expand(1, 1, 32, 32)
    for method in ("pil", "torch"):  # a pixel-level checkerboard averages out to grey, not to aliasing
        assert resize_images(checker, 8, method).abs().max().item() < 0.05
    smooth = torch.linspace(-1, 1, 32).expand(1, 1, 32, 32)
    assert torch.allclose(resize_images(smooth, 20, "pil"), resize_images(smooth, 20, "torch"), atol=0.02)


def test_feature_extractors(tmp_path, monkeypatch):
    x = torch.rand(5, 3, 32, 32) * 2 - 1
    assert load_features("pixels:4")(x).shape == (5, 48)
    (tmp_path / "my_feats.py").write_text("def embed(x):\n    return x.mean((2, 3))\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    f = load_features("my_feats:embed", batch_size=2)(x)
    assert torch.allclose(f, x.mean((2, 3)))
    with pytest.raises(LatentcompError, match="no function"):
        load_features("my_feats:missing")
    with pytest.raises(LatentcompError, match="unknown feature extractor"):
        load_features("nonsense")
    # nothing downloads: either the package or the weights file is missing, and the message says which
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(LatentcompError, match="torch-fidelity|weights-inception"):
        load_features("inception")


def test_analyzer_features_on_a_random_analyzer():
    from latentcomp.metrics.analyzer import Analyzer, default_config
    from latentcomp.metrics.features import analyzer_features

    an = Analyzer(default_config(widths=(8, 8, 16, 16), feature_dim=12))
    feats = analyzer_features(an, batch_size=3)(torch.rand(4, 3, 32, 32) * 2 - 1)
    assert feats.shape == (4, 12) and torch.isfinite(feats).all()


# ----------------------------------------------------------------------------------------- CLI
def _write_folder(folder, images):
    from latentcomp import io

    folder.mkdir()
    for i, img in enumerate(images):
        io.save_image(img, folder / f"{i:03d}.png")


def test_metrics_cli(tmp_path, capsys):
    g = torch.Generator().manual_seed(0)
    a = torch.rand(12, 3, 16, 16, generator=g) * 2 - 1
    b = (a + 0.5).clamp(-1, 1)
    _write_folder(tmp_path / "a", a)
    _write_folder(tmp_path / "b", b)
    masks = tmp_path / "m"
    masks.mkdir()
    from latentcomp import io

    m = torch.zeros(1, 1, 16, 16)
    m[..., :8] = 1
    for i in range(12):
        io.save_mask(m, masks / f"{i:03d}.png")
    out = tmp_path / "l1.json"
    dir_a, dir_b = tmp_path / "a", tmp_path / "b"
    run_ok(["metrics", "masked-l1", dir_a, dir_b, "--mask-dir", masks, "--json", out], capsys)
    res = json.loads(out.read_text())
    # the PNGs are quantised to 8 bits; compare with the same files read back
    ra = torch.cat([io.load_image(p) for p in sorted((tmp_path / "a").iterdir())])
    rb = torch.cat([io.load_image(p) for p in sorted((tmp_path / "b").iterdir())])
    assert res["masked_l1"] == pytest.approx(float(masked_l1(ra, rb, m).mean()), abs=1e-6)
    assert res["n"] == 12
    printed = run_ok(["metrics", "fid", dir_a, dir_a, "--features", "pixels:2"], capsys)
    assert "fid: " in printed and "kid: " in printed
    out2 = tmp_path / "p.json"
    run_ok(["metrics", "prdc", dir_a, dir_b, "--features", "pixels:2", "--k", 3, "--json", out2], capsys)
    assert set(json.loads(out2.read_text())) >= {"precision", "recall", "density", "coverage"}
