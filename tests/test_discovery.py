"""Unsupervised discovery (Voynov & Babenko): `discover_directions`, compute --method unsupervised, and the
per-method best matches of `evaluate_navigation`."""

from __future__ import annotations

import pytest
import torch
from clirun import run_cli

from latentcomp import load_generator
from latentcomp.errors import LatentcompError
from latentcomp.navigate import discover_directions, load_directions
from latentcomp.navigate.discovery import Reconstructor


def test_reconstructor_learns_to_tell_directions_apart():
    G = load_generator("builtin:tiny-random")
    dirs = discover_directions(G, k=3, steps=60, batch=16, lr=3e-3, seed=1)
    assert len(dirs) == 3 and all(d.method == "unsupervised" for d in dirs)
    assert all(abs(float(d.vector.norm()) - 1) < 1e-5 for d in dirs)
    acc = [d.meta["accuracy"] for d in dirs]
    assert acc == sorted(acc, reverse=True)
    assert acc[0] > 0.6  # chance is 1/3: at least one direction is already told apart
    again = discover_directions(G, k=3, steps=60, batch=16, lr=3e-3, seed=1)
    assert all(torch.equal(a.vector, b.vector) for a, b in zip(dirs, again, strict=True))


def test_reconstructor_shapes():
    R = Reconstructor(3, 5)
    logits, shift = R(torch.zeros(2, 3, 32, 32), torch.zeros(2, 3, 32, 32))
    assert logits.shape == (2, 5) and shift.shape == (2,)


def test_bad_inputs_and_cli(tmp_path, capsys):
    G = load_generator("builtin:tiny-random")
    with pytest.raises(LatentcompError, match="k >= 2"):
        discover_directions(G, k=1)
    with pytest.raises(LatentcompError, match="min_shift < max_shift"):
        discover_directions(G, min_shift=2, max_shift=1)
    code, so, err = run_cli(
        ["directions", "compute", "--generator", "builtin:tiny-random", "--method", "unsupervised",
         "--k", "3",
         "--steps", "2", "--out", tmp_path / "d"],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    assert [d.name for d in load_directions(tmp_path / "d" / "tiny-random_unsupervised.safetensors")] == [
        "disc0", "disc1", "disc2",
    ]  # fmt: skip


def test_evaluate_reports_each_method(tmp_path, capsys):
    code, so, err = run_cli(
        ["directions", "evaluate", "--model", "builtin:tiny-random", "--quick", "--no-compare", "--target",
         "glasses=any", "--unsupervised", "pca,jacobian,unsupervised", "--out", tmp_path / "e"],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    for m in ("pca", "jacobian", "unsupervised"):
        assert f"best {m} directions: flip" in so
    code, so, err = run_cli(
        ["directions", "evaluate", "--model", "builtin:tiny-random", "--quick", "--unsupervised", "ica",
         "--out", tmp_path / "e"],
        capsys,
    )  # fmt: skip
    assert code != 0 and "unknown ica; accepted: pca, sefa, jacobian, unsupervised" in err
