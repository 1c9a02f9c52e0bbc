"""Probing experiments: their pieces against hand-made cases, and the quick report on tiny models."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from clirun import run_ok

from latentcomp.probe.independence import matched
from latentcomp.probe.parts import confusion, fit_parts, kmeans, match_miou


def test_kmeans_finds_separated_clusters():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    x = torch.cat([c + 0.1 * torch.randn(50, 2, generator=g) for c in centres])
    found, inertia = kmeans(x, 3, seed=1)
    dist = torch.cdist(centres, found).min(1).values
    assert dist.max() < 0.1 and inertia < 150 * 0.1**2 * 2 * 2


def test_hungarian_miou_by_hand():
    # clusters 0, 1, 2 x parts a, b: cluster 0 = 8 px of a; cluster 1 = 6 px of b + 2 px of a;
    # cluster 2 = 1 px of b
    pred = torch.tensor([0] * 8 + [1] * 8 + [2])
    true = torch.tensor([0] * 8 + [1] * 6 + [0] * 2 + [1])
    conf = confusion(pred, true, 3, 2)
    assert conf.tolist() == [[8, 0], [2, 6], [0, 1]]
    res = match_miou(conf, ["a", "b"])
    # one-to-one: 0 -> a (IoU 8 / 10), 1 -> b (IoU 6 / (7 + 8 - 6) = 6 / 9); cluster 2 unmatched
    assert res["per_part_hungarian"] == pytest.approx({"a": 0.8, "b": 6 / 9})
    assert res["miou_hungarian"] == pytest.approx((0.8 + 6 / 9) / 2)
    assert res["assignment"] == {"cluster0": "a", "cluster1": "b", "cluster2": None}
    # many-to-one: cluster 2 joins b -> b IoU 7 / 9
    assert res["per_part_many_to_one"]["b"] == pytest.approx(7 / 9)


def test_part_discovery_on_a_tiny_generator():
    from latentcomp.generators import load_generator

    G = load_generator("builtin:tiny-random")
    model = fit_parts(G, k=4, n=6, seed=0)
    z = G.sample_latent(3, generator=torch.Generator().manual_seed(5))
    pm = model.predict(G, z)
    assert pm.shape == (3, 32, 32) and int(pm.min()) >= 0 and int(pm.max()) < 4
    assert torch.equal(pm, fit_parts(G, k=4, n=6, seed=0).predict(G, z))  # seeded


def test_matched_strength_by_hand():
    curves = {
        "regression": {"follow": [0.0, 0.4, 0.8], "outside": [0.0, 0.01, 0.02]},
        "interpolation": {"follow": [0.0, 0.5, 1.0], "outside": [0.0, 0.05, 0.10]},
    }
    m = matched(curves)
    # interpolation reaches follow 0.8 at 0.6 of its second segment: outside 0.05 + 0.6 * 0.05 = 0.08
    assert m["interpolation_outside"] == pytest.approx(0.08)
    assert m["locality_gain"] == pytest.approx(4.0) and m["reached"]
    curves["interpolation"]["follow"] = [0.0, 0.2, 0.5]  # never gets there: its last point, flagged
    m = matched(curves)
    assert not m["reached"] and m["interpolation_outside"] == pytest.approx(0.10)


@pytest.fixture
def tiny_models(tmp_path):
    from latentcomp.generators import load_generator
    from latentcomp.metrics.analyzer import Analyzer, default_config, save_analyzer
    from latentcomp.regressors import build_regressor, save_regressor

    cfg = default_config(widths=(8, 8, 16, 16), feature_dim=16)
    torch.manual_seed(0)
    save_analyzer(Analyzer(cfg).net, cfg, tmp_path / "an.safetensors")
    save_regressor(build_regressor(load_generator("builtin:tiny-random")), tmp_path / "reg")
    return tmp_path / "reg.safetensors", tmp_path / "an.safetensors"


@pytest.mark.slow
def test_quick_report_on_tiny_models(tmp_path, tiny_models, capsys):
    reg, an = tiny_models
    out = tmp_path / "report"
    args = ["probe", "report", "--model", reg, "--model", "builtin:tiny-random-stylegan2", "--out", out]
    run_ok([*args, "--quick", "--analyzer", an], capsys)
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64,") >= 8  # self-contained: plots and grids embedded
    titles = ("Trade-off", "Independence", "part discovery", "Rebalancing", "Navigation", "Headline numbers")
    for title in titles:
        assert title in page
    rep = json.loads((out / "report.json").read_text())
    assert len(rep["headline"]) == 2 and rep["meta"]["quick"]
    trade = json.loads((out / "tradeoff.json").read_text())
    for entry in trade["models"]:
        assert set(entry["methods"]) == {"regressor", "regressor+refine", "optimisation", "poisson", "raw"}
        assert entry["methods"]["raw"]["known_l1"] == 0.0  # the collage itself is exact on its known pixels
        for row in entry["methods"].values():
            assert math.isfinite(row["fid"]) and 0 <= row["coverage"] <= 1
    for name in ("tradeoff.png", "parts_layers.png", "independence_0.png", "rebalance.png"):
        assert (out / name).stat().st_size > 1000
    parts = json.loads((out / "parts.json").read_text())
    assert all(0 <= e["miou_hungarian"] <= 1 for e in parts["models"])
    # navigation needs attributes that the samples show; the random analyzer here labels every sample
    # alike, so each model's section says why it was skipped (tests/test_navigate.py runs it for real)
    assert page.count("a boundary needs at least 2 samples of each class") == 2


def test_single_experiment_on_any_generator_without_analyzer(tmp_path, capsys):
    out = tmp_path / "ind"
    args = ["probe", "independence", "--model", "builtin:tiny-random", "--out", out, "--quick"]
    run_ok([*args, "--analyzer", "none", "--n", "3"], capsys)
    data = json.loads((out / "independence.json").read_text())
    entry = data["models"][0]
    assert entry["part_source"] == "kmeans" and entry["parts_measured"] >= 1
    leak = []
    for c in entry["parts"].values():
        if c.get("pairs"):
            assert c["regression"]["outside"][0] == pytest.approx(0.0, abs=1e-6)  # t = 0 is the base image
            assert np.isfinite(c["interpolation"]["outside"]).all()
            if c["matched_follow"] > 0:
                leak.append(c["regression"]["outside"][-1] / c["regression"]["follow"][-1])
    if leak:
        assert entry["median_regression_leakage"] == pytest.approx(float(np.median(leak)))
    else:
        assert math.isnan(entry["median_regression_leakage"])


def test_probe_errors_are_one_line():
    from latentcomp.cli import main

    with pytest.raises(SystemExit) as e:
        main(["probe", "tradeoff", "--model", "builtin:no-such-model", "--out", "/tmp/x", "--quick"])
    assert e.value.code == 2
