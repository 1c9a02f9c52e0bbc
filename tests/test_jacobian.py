"""Jacobian spectral directions (Ramesh et al.): `jacobian`, `jacobian_directions`, `directions compute
--method jacobian`."""

from __future__ import annotations

import pytest
import torch
from clirun import run_cli

from latentcomp import load_generator
from latentcomp.errors import LatentcompError
from latentcomp.navigate import jacobian_directions, load_directions
from latentcomp.navigate.directions import sample_latents
from latentcomp.navigate.jacobian import jacobian


def test_jacobian_matches_finite_differences():
    G = load_generator("builtin:tiny-random")
    z = G.sample_latent(2, generator=torch.Generator().manual_seed(3))
    J = jacobian(G, z, "z", chunk=40)
    assert J.shape == (2, 64, 3 * 32 * 32)
    h = 1e-3
    for k in (0, 17):
        e = torch.zeros_like(z)
        e[:, k] = h
        with torch.no_grad():
            fd = ((G(z + e) - G(z - e)) / (2 * h)).flatten(1)
        assert float((J[:, k] - fd).norm() / fd.norm()) < 1e-2  # central differences, O(h^2) off


@pytest.mark.parametrize("spec,space", [("builtin:tiny-random", "z"), ("builtin:tiny-random-stylegan2", "w")])
def test_directions_are_the_top_singular_vectors(spec, space):
    G = load_generator(spec)
    dirs = jacobian_directions(G, k=64, space=space, n=1)
    V = torch.stack([d.vector for d in dirs])
    assert torch.allclose(V @ V.T, torch.eye(len(dirs)), atol=1e-4)  # orthonormal
    sv = [d.meta["singular_value"] for d in dirs]
    assert sv == sorted(sv, reverse=True) and sv[0] > 1.5 * sv[-1]
    assert sum(d.meta["explained"] for d in dirs) == pytest.approx(1.0, abs=1e-4)
    # at the latents they were computed on, |J v_k|^2 / P is the k-th eigenvalue (the first the largest)
    _, flat = sample_latents(G, 1, 0, space)
    lat = flat.reshape(1, *(G.latent_shape if space == "z" else G.space_shape("w")))
    J = jacobian(G, lat, space)
    for d in (dirs[0], dirs[-1]):
        energy = float(torch.einsum("bdp,d->bp", J, d.vector).pow(2).sum(1).mean() / J.shape[2])
        assert energy == pytest.approx(d.meta["singular_value"] ** 2, rel=1e-3)
    assert all(d.method == "jacobian" and d.space == space for d in dirs)


def test_bad_inputs_and_cli(tmp_path, capsys):
    G = load_generator("builtin:tiny-random-stylegan2")
    with pytest.raises(LatentcompError, match="use --space w"):
        jacobian_directions(G, space="w+")
    with pytest.raises(LatentcompError, match="at least 1"):
        jacobian_directions(G, n=0)
    code, so, err = run_cli(
        ["directions", "compute", "--generator", "builtin:tiny-random", "--method", "jacobian", "--k", "3",
         "--n", "1", "--out", tmp_path / "d"],
        capsys,
    )  # fmt: skip
    assert code == 0, err
    dirs = load_directions(tmp_path / "d" / "tiny-random_jacobian.safetensors")
    assert [d.name for d in dirs] == ["jac0", "jac1", "jac2"]
    code, so, err = run_cli(
        [
            "directions",
            "compute",
            "--generator",
            "builtin:tiny-random",
            "--method",
            "jacobi",
            "--out",
            tmp_path,
        ],
        capsys,
    )
    assert code != 0 and "accepted: pca, sefa, supervised, geometric, steer, jacobian, unsupervised" in err
