"""Automatic toyfaces collages and the composition evaluation (tiny random models + a random analyzer)."""

from __future__ import annotations

import json

import pytest
import torch

from latentcomp import load_generator
from latentcomp.data.toyfaces import ATTRIBUTE_PART, PARTS
from latentcomp.edit.autocollage import toyfaces_collages
from latentcomp.edit.evaluation import evaluate_composition, frechet_distance, markdown_table
from latentcomp.metrics.analyzer import Analyzer, default_config
from latentcomp.regressors import build_regressor, save_regressor


@pytest.fixture(scope="module")
def analyzer():
    torch.manual_seed(0)
    return Analyzer(default_config(widths=(8, 8, 8, 8), feature_dim=8))


def test_autocollages_deterministic_prefix_stable_and_valid():
    a = toyfaces_collages(6, 32, seed=3)
    b = toyfaces_collages(3, 32, seed=3)
    assert torch.equal(a.source_images[:3], b.source_images) and torch.equal(a.part_source[:3], b.part_source)
    c = toyfaces_collages(3, 32, seed=4)
    assert not torch.equal(c.source_images, b.source_images)
    assert set(a.n_sources.tolist()) <= {3, 4}
    for i in range(len(a)):
        used = set(a.part_source[i].tolist())
        assert used == set(range(int(a.n_sources[i])))  # every source gives at least one part
    images, masks = a.parts()
    assert (
        len(images) == len(PARTS) and images[0].shape == (6, 3, 32, 32) and masks[0].shape == (6, 1, 32, 32)
    )
    collage, known, visible = a.collage()
    assert collage.shape == (6, 3, 32, 32) and 0.5 < float(known.mean()) <= 1
    # expected attributes come from the source of each attribute's part
    for j, name in enumerate(a.attribute_names):
        p = PARTS.index(ATTRIBUTE_PART[name])
        src = a.part_source[:, p]
        assert torch.equal(a.expected_attrs[:, j], a.source_attrs[torch.arange(6), src, j])
    counted = a.counted(visible)
    assert counted.shape == (6, len(a.attribute_names)) and counted.any()


def test_frechet_distance_hand_values():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(400, 3, generator=g, dtype=torch.float64)
    assert abs(frechet_distance(x, x)) < 1e-6
    shift = torch.tensor([2.0, 0.0, 0.0], dtype=torch.float64)
    assert abs(frechet_distance(x, x + shift) - 4.0) < 1e-6  # same covariance: |mu_a - mu_b|^2


def test_evaluate_composition_small(pipe, analyzer):
    res = evaluate_composition(
        pipe, n=6, seed=0, analyzer=analyzer, refine_steps=2, opt_steps=3, batch=4, progress=False
    )
    assert set(res["methods"]) == {"regressor", "regressor+refine", "optimisation", "poisson", "raw"}
    for m in res["methods"].values():
        assert 0 <= m["composition_accuracy"] <= 1
        assert set(m["per_part"]) == {p for p in PARTS if p in ATTRIBUTE_PART.values()}
        assert (
            m["known_l1"] >= 0 and m["seconds_per_image"] >= 0 and m["fid_vs_samples"] == m["fid_vs_samples"]
        )
    assert res["methods"]["raw"]["known_l1"] == 0
    assert (
        "regressor_single_image_ms" in res["speed"] and "optimisation_reached_regressor_error" in res["speed"]
    )
    assert res["_examples"]["collage"].shape[0] == 6
    table = markdown_table(res)
    assert "| regressor |" in table and "Reference" in table
    again = evaluate_composition(
        pipe, n=6, seed=0, analyzer=analyzer, methods=["regressor", "raw"], progress=False
    )
    assert (
        again["methods"]["regressor"]["composition_accuracy"]
        == res["methods"]["regressor"]["composition_accuracy"]
    )
    assert again["methods"]["regressor"]["known_l1"] == res["methods"]["regressor"]["known_l1"]


def test_evaluate_cli(tmp_path, analyzer, capsys):
    from latentcomp.cli import main
    from latentcomp.metrics.analyzer import save_analyzer

    G = load_generator("builtin:tiny-random")
    torch.manual_seed(0)
    save_regressor(build_regressor(G), tmp_path / "reg")
    save_analyzer(analyzer.net, analyzer.config, tmp_path / "an.safetensors")
    with pytest.raises(SystemExit) as e:
        main(
            [
                "evaluate",
                "composition",
                "--model",
                str(tmp_path / "reg.safetensors"),
                "--n",
                "4",
                "--out",
                str(tmp_path / "ev"),
                "--methods",
                "regressor,poisson,raw",
                "--analyzer",
                str(tmp_path / "an.safetensors"),
            ]
        )
    assert e.value.code in (0, None)
    data = json.loads((tmp_path / "ev" / "composition.json").read_text())
    assert set(data["methods"]) == {"regressor", "poisson", "raw"} and data["n"] == 4
    assert (tmp_path / "ev" / "composition.md").is_file() and (tmp_path / "ev" / "examples.png").is_file()
    assert "composition acc." in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        main(
            [
                "evaluate",
                "composition",
                "--model",
                str(tmp_path / "reg.safetensors"),
                "--n",
                "4",
                "--out",
                str(tmp_path / "ev2"),
                "--methods",
                "magic",
                "--analyzer",
                str(tmp_path / "an.safetensors"),
            ]
        )
    assert e.value.code == 2 and "magic" in capsys.readouterr().err
