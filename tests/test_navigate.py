"""Latent navigation: the maths (projection, PCA, SeFa, boundaries), moving latents, storage, evaluation
and CLI smoke tests on tiny random generators with a fake classifier."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from latentcomp import load_generator
from latentcomp.cli import main
from latentcomp.data.toyfaces import ATTRIBUTE_PART, ATTRIBUTES, PARTS
from latentcomp.errors import LatentcompError
from latentcomp.navigate import (
    Direction,
    conditional_direction,
    edit_strip,
    find_direction,
    list_directions,
    load_directions,
    move,
    orthonormal_basis,
    parse_layers,
    parse_target,
    pca,
    pca_directions,
    save_directions,
    sefa_directions,
    sefa_from_weight,
    supervised_direction,
)
from latentcomp.navigate.directions import first_layer_weight, lift_to_latent
from latentcomp.navigate.evaluate import EvalSizes, evaluate_navigation, flip_metrics, match_success
from latentcomp.regressors import build_regressor, save_regressor


# ------------------------------------------------------------------------------------------ fake classifier
class FakeAnalyzer:
    """Toyfaces-shaped classifier reading simple image statistics: attribute j = quantile bin (calibrated
    on the first batch it sees) of the mean of channel j % 3 in horizontal band j. Part map: the bands."""

    def __init__(self):
        self.attribute_values = {k: list(v) for k, v in ATTRIBUTES.items()}
        self.attribute_names = list(ATTRIBUTES)
        self.part_names = list(PARTS)
        self.attribute_part = dict(ATTRIBUTE_PART)
        self.config = {"hidden_when": {}}
        self.device = torch.device("cpu")
        self.edges = None

    def _stats(self, x):
        bands = torch.tensor_split(torch.arange(x.shape[-2]), len(self.attribute_names))
        return torch.stack([x[:, j % 3, b].mean((1, 2)) for j, b in enumerate(bands)], 1)

    def predict(self, images, logits=False):
        s = self._stats(images.float().cpu())
        if self.edges is None:
            self.edges = []
            for j, vals in enumerate(self.attribute_values.values()):
                q = torch.linspace(0, 1, len(vals) + 1)[1:-1]
                self.edges.append(torch.quantile(s[:, j].contiguous(), q))
        attrs = torch.stack([torch.bucketize(s[:, j].contiguous(), e) for j, e in enumerate(self.edges)], 1)
        h, w = images.shape[-2:]
        pm = torch.zeros(h, w, dtype=torch.long)
        for j, b in enumerate(torch.tensor_split(torch.arange(h), len(self.attribute_names))):
            pm[b] = PARTS.index(ATTRIBUTE_PART[self.attribute_names[j]])
        return SimpleNamespace(
            attrs=attrs,
            visible=torch.ones_like(attrs, dtype=torch.bool),
            partmap=pm.expand(images.shape[0], h, w).clone(),
        )


# ------------------------------------------------------------------------------------------ maths
def test_conditional_direction_is_orthogonal_unit():
    g = torch.Generator().manual_seed(0)
    n1 = torch.randn(32, generator=g)
    conds = [torch.randn(32, generator=g) for _ in range(3)]
    v = conditional_direction(n1, conds)
    assert abs(float(v.norm()) - 1) < 1e-5
    for c in conds:
        assert abs(float(v @ c)) < 1e-4
    assert float(v @ n1) > 0  # still points the same way
    # one condition: n1 - (n1.n2) n2 for unit vectors
    a, b = n1 / n1.norm(), conds[0] / conds[0].norm()
    expect = a - (a @ b) * b
    assert torch.allclose(conditional_direction(a, [b]), expect / expect.norm(), atol=1e-5)
    # no conditions: itself; in the span of the conditions: an error
    assert torch.allclose(conditional_direction(a, []), a, atol=1e-6)
    with pytest.raises(LatentcompError):
        conditional_direction(conds[0] + 2 * conds[1], conds)


def test_orthonormal_basis_drops_dependent_rows():
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(10, generator=g), torch.randn(10, generator=g)
    E = orthonormal_basis(torch.stack([a, b, a - 3 * b]))
    assert E.shape == (2, 10)
    assert torch.allclose(E @ E.T, torch.eye(2), atol=1e-5)


def test_pca_recovers_known_axes():
    g = torch.Generator().manual_seed(2)
    Q, _ = torch.linalg.qr(torch.randn(8, 8, generator=g))  # rows of Q.T: the true axes
    scales = torch.tensor([6.0, 4.0, 2.5, 1.0, 0.8, 0.6, 0.4, 0.2])
    X = (torch.randn(4000, 8, generator=g) * scales) @ Q.T + 5.0
    comps, var, mean = pca(X, 3)
    for i in range(3):
        assert abs(float(comps[i] @ Q[:, i])) > 0.99
        assert abs(float(var[i]) / scales[i] ** 2 - 1) < 0.1
    assert torch.allclose(mean, torch.full((8,), 5.0), atol=0.3)


def test_lift_to_latent_moves_features_along_the_component():
    g = torch.Generator().manual_seed(3)
    A = torch.randn(6, 40, generator=g) * torch.tensor([5.0, 3, 1, 1, 0.5, 0.5])[:, None]
    Z = torch.randn(3000, 6, generator=g)
    Fe = Z @ A  # linear "activations"
    comps, _, fmean = pca(Fe, 2)
    U = lift_to_latent(Z, (Fe - fmean) @ comps.T)
    for i in range(2):
        moved = U[i] @ A  # how the lifted latent direction moves the features
        assert abs(float(moved @ comps[i]) / float(moved.norm())) > 0.95


def test_sefa_gives_top_eigenvectors_of_wtw():
    g = torch.Generator().manual_seed(4)
    W = torch.randn(50, 12, generator=g) * torch.linspace(3, 0.2, 12)
    vecs, evals = sefa_from_weight(W, 4, normalize=False)
    ev, V = torch.linalg.eigh(W.T.double() @ W.double())
    for i in range(4):
        assert abs(float(vecs[i].double() @ V[:, -1 - i])) > 0.999
        assert abs(float(evals[i]) - float(ev[-1 - i])) < 1e-3 * float(ev[-1])
    assert torch.all(evals[:-1] >= evals[1:])


def test_sefa_on_generators():
    G = load_generator("builtin:tiny-random")
    name, A = first_layer_weight(G)
    w0 = G.net[0].weight
    assert torch.allclose(A, w0.reshape(64, -1).T)
    dirs = sefa_directions(G, k=3, n_std=200)
    top, _ = sefa_from_weight(A, 1)
    assert torch.allclose(dirs[0].vector, top[0], atol=1e-5) and dirs[0].space == "z"
    S = load_generator("builtin:tiny-random-stylegan2")
    d_all = sefa_directions(S, k=2, n_std=100)
    d_0 = sefa_directions(S, k=2, layers="0", n_std=100)
    assert d_all[0].space == "w" and d_0[0].space == "w+" and d_0[0].layers == (0,)
    mod = S.net.conv1.conv.modulation
    top0, _ = sefa_from_weight(mod.weight * mod.scale, 1)
    assert torch.allclose(d_0[0].vector, top0[0], atol=1e-5)


def test_supervised_boundary_on_separable_labels():
    g = torch.Generator().manual_seed(5)
    w_true = torch.randn(16, generator=g)
    X = torch.randn(400, 16, generator=g) * 2 + 1
    y = (X - 1) @ w_true > 0.5
    for method in ("svm", "logreg"):
        v, info = supervised_direction(X, y, method=method, C=10.0)
        assert float(v @ w_true / w_true.norm()) > 0.95
        assert info["accuracy"] > 0.9 and abs(float(v.norm()) - 1) < 1e-5
    with pytest.raises(LatentcompError):
        supervised_direction(X, torch.zeros(400, dtype=torch.bool))


def test_parse_target_and_layers():
    vals = {k: list(v) for k, v in ATTRIBUTES.items()}
    assert parse_target("glasses=any", vals) == ("glasses", [1, 2, 3], "any")
    assert parse_target("mouth_expression=smile", vals)[1] == [0]
    assert parse_target("hair_colour=red,blonde", vals)[2] == "blonde,red"
    with pytest.raises(LatentcompError):
        parse_target("glasses=monocle", vals)
    assert parse_layers("0-3,6") == (0, 1, 2, 3, 6)
    assert parse_layers(None) is None
    with pytest.raises(LatentcompError):
        parse_layers("2-x")
    with pytest.raises(LatentcompError):
        parse_layers("0-9", num_ws=8)


# ------------------------------------------------------------------------------------------ moving
def test_move_in_z_w_and_wplus_layers():
    G = load_generator("builtin:tiny-random")
    z = torch.randn(2, 64)
    d = Direction("d", torch.randn(64), "z", std=2.0)
    z2, sp = move(G, z, "z", d, 1.5)
    assert sp == "z" and torch.allclose(z2 - z, (3.0 * d.vector).expand(2, -1), atol=1e-5)
    S = load_generator("builtin:tiny-random-stylegan2")
    dw = Direction("w", torch.randn(64), "w", std=1.0)
    zs = torch.randn(2, 64)
    w = S.mapping(zs)
    w2, sp = move(S, zs, "z", dw, 2.0)  # z latents are mapped first
    assert sp == "w" and torch.allclose(w2 - w, 2 * dw.vector.expand(2, -1), atol=1e-4)
    wp, sp = move(S, w, "w", dw, 1.0, layers="0-1")
    assert sp == "w+" and wp.shape == (2, S.num_ws, 64)
    assert torch.allclose(wp[:, 2:], w[:, None].expand(-1, S.num_ws - 2, -1))
    assert torch.allclose(wp[:, :2] - w[:, None], dw.vector.expand(2, 2, -1), atol=1e-5)
    with pytest.raises(LatentcompError):
        move(S, w, "w", Direction("zd", torch.randn(64), "z"), 1.0)
    strip = edit_strip(S, w, "w", dw, [-1, 0, 1])
    assert strip.shape == (2, 3, 3, 32, 32)
    assert torch.allclose(strip[:, 1], S(w, space="w").clamp(-1, 1), atol=1e-5)


# ------------------------------------------------------------------------------------------ storage
def test_store_round_trip_and_lookup(tmp_path):
    a = Direction(
        "glasses=any",
        torch.randn(8),
        "w+",
        generator="builtin:x",
        layers=(0, 1),
        method="supervised-svm",
        std=1.7,
        meta={"attribute": "glasses", "target": "any", "accuracy": 0.9},
    )
    b = Direction("pca0", torch.randn(8), "z", generator="builtin:x", method="pca")
    save_directions([a, b], tmp_path / "set1", info={"k": 1})
    save_directions([b], tmp_path / "set2")
    back = load_directions(tmp_path / "set1.safetensors")
    assert [d.name for d in back] == ["glasses=any", "pca0"]
    assert (
        torch.allclose(back[0].vector, a.vector)
        and back[0].layers == (0, 1)
        and back[0].std == pytest.approx(1.7)
    )
    assert back[0].meta["accuracy"] == 0.9 and back[0].space == "w+" and back[0].generator == "builtin:x"
    assert set(list_directions(tmp_path)) == {"set1", "set2"}
    assert find_direction("glasses=any", tmp_path).name == "glasses=any"
    assert find_direction("set2:pca0", tmp_path).space == "z"
    assert find_direction(f"{tmp_path / 'set2.safetensors'}").name == "pca0"
    with pytest.raises(LatentcompError, match="several sets"):
        find_direction("pca0", tmp_path)
    save_directions([Direction("pca0", torch.randn(8), "z", generator="builtin:y")], tmp_path / "set3")
    assert find_direction("pca0", tmp_path, generator="builtin:y").generator == "builtin:y"
    with pytest.raises(LatentcompError, match="not found"):
        find_direction("nope", tmp_path)
    with pytest.raises(LatentcompError):
        save_directions([b, b], tmp_path / "dup")


# ------------------------------------------------------------------------------------------ evaluation
def test_flip_metrics_and_matching():
    names = ["a", "b", "c"]
    a0 = torch.tensor([[0, 0, 0], [0, 1, 1], [1, 0, 0]])
    a1 = torch.tensor([[2, 0, 0], [0, 1, 0], [2, 1, 0]])
    vis = torch.ones(3, 3, dtype=torch.bool)
    m = flip_metrics((a0, vis), (a1, vis), 0, [2], names)
    assert m["flip_rate"] == pytest.approx(2 / 3)
    assert m["per_attribute"] == {"b": pytest.approx(2 / 3), "c": pytest.approx(2 / 3)}
    assert m["all_others_unchanged"] == pytest.approx(1 / 3)
    assert m["others_unchanged_when_flipped"] == pytest.approx(0.75)  # b: 1 of 2 flipped kept, c: 2 of 2
    curve = [
        {"strength": 1.0, "success": 0.2, "outside_change": 0.1, "others_unchanged": 0.9},
        {"strength": 2.0, "success": 0.6, "outside_change": 0.3, "others_unchanged": 0.8},
    ]
    mm = match_success(curve, 0.4)
    assert (
        mm["reached"] and mm["strength"] == pytest.approx(1.5) and mm["outside_change"] == pytest.approx(0.2)
    )
    assert not match_success(curve, 0.9)["reached"]


def test_evaluate_navigation_quick():
    from latentcomp.edit.pipeline import Pipeline

    G = load_generator("builtin:tiny-random-stylegan2")
    torch.manual_seed(0)
    pipe = Pipeline(G, build_regressor(G))
    targets = ["glasses=any", "mouth_expression=smile", "hair_style=long"]
    res = evaluate_navigation(pipe, FakeAnalyzer(), strength=3.0, sizes=EvalSizes.quick(), targets=targets)
    assert set(res["supervised"]) == set(targets) and res["space"] == "w"
    for r in res["supervised"].values():
        for kind in ("plain", "conditional"):
            fr = r[kind]["flip_rate"]
            assert math.isnan(fr) or 0 <= fr <= 1
    assert set(res["unsupervised"]) == set(targets)
    assert "targets" in res["comparison"]
    sup = {d.name: d for d in res["_directions"]["supervised"]}
    for c in res["_directions"]["conditional"]:  # conditional directions are orthogonal to the others
        for other in sup.values():
            if other.name + "_cond" != c.name:
                assert abs(float(c.vector @ other.vector)) < 1e-4


# ------------------------------------------------------------------------------------------ CLI
@pytest.fixture(scope="module")
def cli_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("nav")
    G = load_generator("builtin:tiny-random")
    torch.manual_seed(0)
    save_regressor(build_regressor(G), d / "reg")
    rng = np.random.default_rng(0)
    for n in ("a", "b"):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(d / f"{n}.png")
    top = np.zeros((32, 32), dtype=np.uint8)
    top[:16] = 255
    Image.fromarray(top).save(d / "top.png")
    return d


def run(args, capsys):
    try:
        main(args)
        code = 0
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_cli_compute_list_navigate(cli_files, tmp_path, capsys, monkeypatch):
    import latentcomp.commands.directions as cmd

    monkeypatch.setattr(cmd, "_load_analyzer", lambda spec: FakeAnalyzer())
    dd = tmp_path / "dirs"
    code, out, err = run(
        [
            "directions",
            "compute",
            "--generator",
            "builtin:tiny-random",
            "--method",
            "pca",
            "--k",
            "3",
            "--n",
            "200",
            "--out",
            str(dd),
        ],
        capsys,
    )
    assert code == 0, err
    code, out, err = run(
        [
            "directions",
            "compute",
            "--generator",
            "builtin:tiny-random",
            "--method",
            "sefa",
            "--k",
            "2",
            "--out",
            str(dd),
        ],
        capsys,
    )
    assert code == 0, err
    code, out, err = run(
        [
            "directions",
            "compute",
            "--generator",
            "builtin:tiny-random",
            "--method",
            "supervised",
            "--n",
            "120",
            "--target",
            "glasses=any",
            "--target",
            "mouth_expression=smile",
            "--condition",
            "all",
            "--out",
            str(dd),
        ],
        capsys,
    )
    assert code == 0, err
    assert "glasses=any_cond" in out
    code, out, err = run(["directions", "list", str(dd)], capsys)
    assert code == 0 and "pca2" in out and "sefa1" in out and "mouth_expression=smile" in out
    o = tmp_path / "edit.png"
    code, out, err = run(
        [
            "navigate",
            "--model",
            str(cli_files / "reg.safetensors"),
            "--image",
            str(cli_files / "a.png"),
            "--direction",
            "glasses=any_cond",
            "--directions",
            str(dd),
            "--strength",
            "2",
            "--out",
            str(o),
        ],
        capsys,
    )
    assert code == 0, err
    assert Image.open(o).size == (32, 32)
    s = tmp_path / "strip.png"
    code, out, err = run(
        [
            "navigate",
            "--model",
            str(cli_files / "reg.safetensors"),
            "--part",
            f"{cli_files / 'a.png'}:{cli_files / 'top.png'}",
            "--part",
            str(cli_files / "b.png"),
            "--direction",
            "tiny-random_pca:pca0",
            "--directions",
            str(dd),
            "--strip",
            "-2,0,2",
            "--out",
            str(s),
        ],
        capsys,
    )
    assert code == 0, err
    assert Image.open(s).size[0] > 3 * 32
    # errors: one line, exit 2
    code, out, err = run(
        [
            "navigate",
            "--model",
            str(cli_files / "reg.safetensors"),
            "--image",
            str(cli_files / "a.png"),
            "--direction",
            "nope",
            "--directions",
            str(dd),
            "--out",
            str(tmp_path / "x.png"),
        ],
        capsys,
    )
    assert code == 2 and "not found" in err
    code, out, err = run(
        [
            "directions",
            "compute",
            "--generator",
            "builtin:tiny-random",
            "--method",
            "magic",
            "--out",
            str(dd),
        ],
        capsys,
    )
    assert code == 2 and "pca, sefa, supervised" in err


def test_cli_evaluate_quick(tmp_path, capsys, monkeypatch):
    import latentcomp.commands.directions as cmd

    monkeypatch.setattr(cmd, "_load_analyzer", lambda spec: FakeAnalyzer())
    code, out, err = run(
        [
            "directions",
            "evaluate",
            "--model",
            "builtin:tiny-random",
            "--quick",
            "--out",
            str(tmp_path / "ev"),
            "--target",
            "glasses=any",
            "--target",
            "nose_shape=long",
        ],
        capsys,
    )
    assert code == 0, err
    ev = tmp_path / "ev"
    assert (
        (ev / "results.md").is_file()
        and (ev / "strips.png").is_file()
        and (ev / "tiny-random.json").is_file()
    )
    assert "| glasses=any |" in (ev / "results.md").read_text()
    assert list((ev / "strips").glob("*.png")) and list((ev / "directions").glob("*.safetensors"))


def test_pca_directions_on_generators():
    G = load_generator("builtin:tiny-random")
    d1 = pca_directions(G, k=3, n=150)
    d2 = pca_directions(G, k=3, n=150)
    assert len(d1) == 3 and d1[0].meta["source"].startswith("features")
    assert all(torch.allclose(a.vector, b.vector) for a, b in zip(d1, d2, strict=True))
    S = load_generator("builtin:tiny-random-stylegan2")
    dw = pca_directions(S, k=2, n=150, space="w+", layers="0-2")
    assert dw[0].space == "w+" and dw[0].layers == (0, 1, 2) and dw[0].meta["source"] == "latent"


def test_navigation_section_of_the_probe_report(tmp_path):
    from latentcomp.edit.pipeline import Pipeline
    from latentcomp.probe.navigation import run_navigation
    from latentcomp.probe.report import headline, render_html

    G = load_generator("builtin:tiny-random-stylegan2")
    torch.manual_seed(0)
    pipe = Pipeline(G, build_regressor(G))
    nav = run_navigation([pipe], tmp_path, FakeAnalyzer(), quick=True)
    (entry,) = nav["models"]
    assert entry["space"] == "w" and {"supervised_plain", "supervised_conditional"} <= set(entry["summary"])
    assert (tmp_path / "navigate_strips.png").stat().st_size > 1000  # the report's figure
    assert len(list((tmp_path / "navigate" / "strips").glob("*.png"))) >= 3  # one file per target
    meta = {"models": [entry["model"]], "seed": 0, "quick": True, "analyzer": "fake", "seconds": 1.0,
            "device": "cpu", "threads": 1}  # fmt: skip
    results = {"navigate": nav, "meta": meta}
    row = headline(results)[0]
    cond = entry["summary"]["supervised_conditional"]
    assert row["navigate: flip rate (conditional)"] == cond["flip_rate"]
    page = render_html(results, tmp_path)
    assert "Navigation: editing directions" in page and page.count("data:image/png;base64,") == 1


def test_subpackages_are_attributes_of_the_package():
    import subprocess
    import sys

    code = "import latentcomp as lc; print(lc.navigate.conditional_direction.__name__, lc.probe.__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["conditional_direction", "latentcomp.probe"]
