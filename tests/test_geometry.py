"""Geometric and colour walks: image transforms, ground-truth geometry on toyfaces, closed-form and
steerability walks, their evaluation, and the CLI."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from clirun import run_cli

from latentcomp import load_generator
from latentcomp.data import toyfaces as tf
from latentcomp.errors import LatentcompError
from latentcomp.generators.base import Generator
from latentcomp.navigate import load_directions
from latentcomp.navigate.directions import Direction
from latentcomp.navigate.geometry import (
    TRANSFORMS,
    _features_upto,
    achieved,
    closed_form_directions,
    edit_reach,
    evaluate_geometry,
    face_geometry,
    geometry_markdown,
    parse_transforms,
    steer_directions,
    transform_features,
    transform_images,
    transform_move,
)


# ------------------------------------------------------------------------------------------- transforms
def test_transform_images_moves_content_the_stated_way():
    x = -torch.ones(1, 1, 32, 32)
    x[..., 10, 8] = 1.0  # one bright pixel, row 10, column 8
    y, valid = transform_images(x, "shift_x", 0.25)  # 8 px to the right
    assert int(y[0, 0].flatten().argmax()) == 10 * 32 + 16
    assert valid[0, 0, :, :8].sum() == 0 and valid[0, 0, :, 8:].all()
    y, _ = transform_images(x, "shift_y", -0.125)  # 4 px up
    assert int(y[0, 0].flatten().argmax()) == 6 * 32 + 8
    y, valid = transform_images(x, "zoom", 1.0)  # twice as large about the centre: (10, 8) -> (4, 0)
    r, c = divmod(int(y[0, 0].flatten().argmax()), 32)
    assert abs(r - 4) <= 1 and abs(c - 0) <= 1 and valid.all()
    _, valid = transform_images(x, "zoom", -1.0)
    assert valid[0, 0, 0, 0] == 0 and valid[0, 0, 16, 16] == 1
    # rotation clockwise on screen (y down): a pixel right of the centre goes below it
    x2 = -torch.ones(1, 1, 33, 33)
    x2[..., 16, 28] = 1.0
    y, _ = transform_images(x2, "rotate", 90.0)
    r, c = divmod(int(y[0, 0].flatten().argmax()), 33)
    assert (abs(r - 28) <= 1) and (abs(c - 16) <= 1), (r, c)
    y, valid = transform_images(torch.zeros(2, 3, 8, 8), "brightness", torch.tensor([0.25, -0.75]))
    assert torch.allclose(y[0], torch.full_like(y[0], 0.5)) and torch.allclose(y[1], -torch.ones_like(y[1]))
    assert valid.all()
    # per-image amounts; 0 is the identity
    z, _ = transform_images(x.repeat(2, 1, 1, 1), "shift_x", torch.tensor([0.0, 0.25]))
    assert torch.allclose(z[0], x[0], atol=1e-6)
    f = torch.randn(2, 4, 4, 4)
    assert torch.allclose(transform_features(f, "rotate", 0.0), f, atol=1e-5)


def test_parse_transforms():
    assert parse_transforms(None) == list(TRANSFORMS)
    assert parse_transforms("zoom, shift_x,zoom") == ["zoom", "shift_x"]
    with pytest.raises(LatentcompError, match="unknown transform.*tilt.*accepted: shift_x"):
        parse_transforms("tilt")
    with pytest.raises(LatentcompError, match="brightness is not a geometric transform"):
        parse_transforms("brightness", geometric_only=True)


# ------------------------------------------------------------------------------------------- ground truth
def test_face_geometry_reads_the_true_toyfaces_parameters():
    ds = tf.ToyFaces(64, seed=3)
    idx = list(range(48))
    params = ds.sample_params(idx)
    img, pm, _ = ds.render_batch(idx)
    g = face_geometry(pm, img, tf.PARTS)
    assert g["found"].all()

    def corr(a, b):
        ok = ~torch.isnan(a)
        return float(torch.corrcoef(torch.stack([a[ok], b[ok]]))[0, 1])

    assert corr(g["cx"], params["cx"]) > 0.95
    assert corr(g["cy"], params["cy"]) > 0.5  # face shapes differ in height: the centroid moves with them
    assert corr(g["angle"], torch.rad2deg(params["angle"])) > 0.9
    # the same faces rendered moved, larger, turned: the measured changes are the true ones
    base = {"cx": 0.0, "cy": 0.1, "scale": 1.1, "angle": 0.0}
    x0, p0, _ = ds.render_batch(idx[:8], overrides=base)
    g0 = face_geometry(p0, x0, tf.PARTS)
    for key, value, kind, want in (
        ("cx", 0.1, "shift_x", 0.05),
        ("cy", 0.0, "shift_y", -0.05),
        ("scale", 1.1 * 2**0.25, "zoom", 0.25),
        ("angle", math.radians(10), "rotate", 10.0),
    ):
        x1, p1, _ = ds.render_batch(idx[:8], overrides={**base, key: value})
        got = achieved(kind, g0, face_geometry(p1, x1, tf.PARTS))
        assert abs(float(got.nanmean()) - want) < 0.12 * abs(want), (kind, got)


def test_image_transforms_read_back_through_the_analyzer():
    """The measurement chain: transform renders, read the analyzer's part maps, get the amount back
    (same sign conventions as toyfaces' own parameters)."""
    from latentcomp.metrics.analyzer import load_analyzer

    an = load_analyzer("builtin:toyfaces-analyzer")
    x, _, _ = tf.ToyFaces(64, seed=9).render_batch(range(12))
    g0 = face_geometry(an.predict(x, logits=False).partmap, x, an.part_names)
    for kind, amount in (("shift_x", 0.05), ("shift_y", -0.05), ("zoom", 0.2), ("rotate", -8.0)):
        y, _ = transform_images(x, kind, amount)
        g1 = face_geometry(an.predict(y, logits=False).partmap, y, an.part_names)
        got = float(achieved(kind, g0, g1).nanmean())
        assert 0.6 * abs(amount) < got * math.copysign(1, amount) < 1.4 * abs(amount), (kind, got)


# ------------------------------------------------------------------------------------------- a blob "GAN"
class BlobGenerator(Generator):
    """A disk whose centre, size and brightness are linear in z: x = 0.3 z0, y = 0.3 z1 (normalised
    coordinates), log2 radius = 0.3 z2 (radius 0.35 at 0), brightness + 0.2 z3. The walks are known."""

    latent_shape = (4,)
    resolution = 32
    channels = 3

    def __init__(self):
        super().__init__()
        self.register_buffer("dummy", torch.zeros(1))
        self.freeze()

    def synthesize(self, latent, space):
        n = latent.shape[0]
        lin = (torch.arange(32, dtype=torch.float32) + 0.5) / 32 * 2 - 1
        gy, gx = torch.meshgrid(lin, lin, indexing="ij")
        cx, cy = 0.3 * latent[:, 0].view(n, 1, 1), 0.3 * latent[:, 1].view(n, 1, 1)
        r = 0.35 * torch.pow(2.0, 0.3 * latent[:, 2]).view(n, 1, 1)
        d = torch.sqrt((gx - cx) ** 2 + (gy - cy) ** 2 + 1e-8)
        disk = torch.sigmoid((r - d) / 0.04)
        img = (-0.8 + 1.4 * disk + 0.2 * latent[:, 3].view(n, 1, 1)).unsqueeze(1).repeat(1, 3, 1, 1)
        return img.clamp(-1, 1)


class BlobAnalyzer:
    part_names = ["background", "nose"]  # the disk counts as an inner feature of a face
    attribute_values = {"size": ["small", "large"]}

    def predict(self, images, logits=False):
        m = images.mean(1)
        lo, hi = m.flatten(1).min(1).values, m.flatten(1).max(1).values
        part = (m > ((lo + hi) / 2).view(-1, 1, 1)).long()  # the disk's edge, whatever its size
        attrs = torch.zeros(images.shape[0], 1, dtype=torch.long)
        return SimpleNamespace(partmap=part, attrs=attrs, visible=torch.ones_like(attrs, dtype=torch.bool))


def _walk(name, vec, per_unit, space="z"):
    return Direction(
        name, torch.tensor(vec), space, method="test", meta={"transform": name, "per_unit": per_unit}
    )


def test_evaluate_geometry_measures_a_known_walk():
    G = BlobGenerator()
    # shift_x by a moves the centre 2a in normalised units = z0 by 2a / 0.3
    exact = _walk("shift_x", [1.0, 0, 0, 0], 2 / 0.3)
    half = Direction(
        "half", exact.vector, "z", method="test", meta={"transform": "shift_x", "per_unit": 1 / 0.3}
    )
    zoom = _walk("zoom", [0, 0, 1.0, 0], 1 / 0.3)
    res = evaluate_geometry(
        G, BlobAnalyzer(), [exact, half, zoom], n=8, amounts={"shift_x": [0.05, 0.1], "zoom": [0.3, 0.6]}
    )
    rows = {r["amount"]: r for r in res["walks"]["shift_x"]["rows"]}
    assert sorted(rows) == [-0.1, -0.05, 0.05, 0.1]
    for a, r in rows.items():
        assert abs(r["achieved"] - a) < 0.1 * abs(a), (a, r["achieved"])
    assert abs(res["walks"]["shift_x"]["gain"] - 1) < 0.1
    assert abs(res["walks"]["half"]["gain"] - 0.5) < 0.08
    assert res["walks"]["shift_x"]["limit"] == {"positive": 0.1, "negative": 0.1}
    assert res["walks"]["shift_x"]["reach"]["positive"] == pytest.approx(0.1, rel=0.1)
    assert abs(res["walks"]["zoom"]["gain"] - 1) < 0.15
    # the image transform itself is read back as well, and it is not a walk of G
    assert res["walks"]["shift_x (image transform)"]["method"] == "reference"
    # nothing else moves: the zoom walk leaves the centre, the shift walk the size
    side = res["walks"]["zoom"]["rows"][-1]["side_effects"]
    assert side["shift_x"] < 0.01 and side["shift_y"] < 0.01
    md = geometry_markdown(res)
    assert "| shift_x | test | 1.0" in md and "Units:" in md
    with pytest.raises(LatentcompError, match="no geometric / colour walks"):
        evaluate_geometry(G, BlobAnalyzer(), [Direction("d", torch.ones(4), "z")], n=4)


def test_edit_reach_stops_where_the_face_or_the_attributes_go():
    rows = [
        {"amount": a, "achieved": ach, "found": f, "others_unchanged": u}
        for a, ach, f, u in (
            (0.1, 0.05, 1.0, 1.0),
            (0.2, 0.09, 1.0, 0.9),
            (0.4, 0.2, 1.0, 0.5),  # attributes lost: stop here
            (-0.1, -0.04, 1.0, 1.0),
            (-0.2, -0.1, 0.5, 1.0),  # face lost
        )
    ]
    r = edit_reach(rows)
    assert r["positive"] == pytest.approx(0.09) and r["positive_at"] == 0.2
    assert r["negative"] == pytest.approx(0.04) and r["negative_at"] == 0.1


def test_steer_learns_the_known_walks():
    G = BlobGenerator()
    dirs = steer_directions(G, "shift_x,brightness", steps=60, batch=8, lr=0.2)
    by = {d.name: d for d in dirs}
    sx, br = by["shift_x"], by["brightness"]
    assert float(sx.vector[0]) > 0.9, sx.vector  # along z0
    assert sx.meta["per_unit"] == pytest.approx(2 / 0.3, rel=0.35)
    assert float(br.vector[3]) > 0.9, br.vector  # along z3 (brightness 0.2 z3 -> 2a = 0.2 z3)
    assert br.meta["transform"] == "brightness" and br.method == "steer"
    res = evaluate_geometry(G, BlobAnalyzer(), [sx], n=8, amounts={"shift_x": [0.05]}, reference=False)
    assert 0.6 < res["walks"]["shift_x"]["gain"] < 1.4


def test_steer_lowers_its_objective_on_a_gan():
    G = load_generator("builtin:tiny-random-stylegan2")
    (d,) = steer_directions(G, "brightness", steps=25, batch=4, lr=0.05)
    space = "w" if "w" in G.latent_spaces else "z"
    assert d.space == space and d.meta["per_unit"] > 0
    g = torch.Generator().manual_seed(99)
    z = G.sample_latent(8, generator=g)
    lat = z if space == "z" else G.mapping(z)
    a = torch.full((8,), 0.15)
    with torch.no_grad():
        x0 = G(lat, space=space)
        target, _ = transform_images(x0, "brightness", a)
        moved = G(transform_move(G, lat, space, d, a), space=space)
    assert float((moved - target).pow(2).mean()) < 0.9 * float((x0 - target).pow(2).mean())


@pytest.mark.parametrize("spec", ["builtin:tiny-random", "builtin:tiny-random-stylegan2"])
def test_closed_form_moves_the_first_layer_towards_the_transform(spec):
    G = load_generator(spec)
    dirs = closed_form_directions(G, "shift_x,zoom", n=16)
    space = "w" if "w" in G.latent_spaces else "z"
    layer = dirs[0].meta["layer"]
    g = torch.Generator().manual_seed(5)
    z = G.sample_latent(8, generator=g)
    lat = z if space == "z" else G.mapping(z)
    for d in dirs:
        assert d.method == "closed-form" and abs(float(d.vector.norm()) - 1) < 1e-5
        eps = TRANSFORMS[d.name].epsilon
        with torch.no_grad():
            h = _features_upto(G, lat, space, layer)
            want = transform_features(h, d.name, eps)
            h2 = _features_upto(G, transform_move(G, lat, space, d, eps), space, layer)
            rnd = Direction(
                "r", torch.randn(d.dim, generator=g), space, meta={"per_unit": d.meta["per_unit"]}
            )
            h3 = _features_upto(G, transform_move(G, lat, space, rnd, eps), space, layer)
        # a step of the same length along a random direction misses the target by more
        assert float((want - h2).pow(2).sum()) < float((want - h3).pow(2).sum())
    with pytest.raises(LatentcompError, match="not a geometric transform"):
        closed_form_directions(G, "brightness")
    with pytest.raises(LatentcompError, match="unknown feature layer"):
        closed_form_directions(G, "zoom", layer="nope")


class LinearFirstGenerator(Generator):
    """The paper's setting: a linear first layer h = W z + b onto a 4x4 map, then convolutions."""

    latent_shape = (6,)
    resolution = 16
    channels = 3

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = torch.nn.Sequential(torch.nn.Linear(6, 3 * 4 * 4), torch.nn.Unflatten(1, (3, 4, 4)))
        with torch.no_grad():
            self.fc[0].bias.copy_(torch.randn(48) * 2)
        self.up = torch.nn.Sequential(torch.nn.Upsample(scale_factor=4), torch.nn.Conv2d(3, 3, 3, padding=1))
        self.freeze()

    def synthesize(self, latent, space):
        return torch.tanh(self.up(self.fc(latent)))

    def feature_layers(self):
        return {"fc": "fc"}


def test_closed_form_is_the_papers_formula_for_a_linear_first_layer():
    """q = pinv(W) (T - I) (W mean(z) + b): the least-squares step of the first layer's output."""
    from latentcomp.navigate.directions import sample_latents

    G = LinearFirstGenerator()
    dirs = closed_form_directions(G, "shift_x,zoom,rotate", n=32, ridge=0.0)
    _, z = sample_latents(G, 32, 0, "z")
    W, b = G.fc[0].weight.detach(), G.fc[0].bias.detach()
    h = (z.mean(0) @ W.T + b).view(1, 3, 4, 4)
    for d in dirs:
        r = (transform_features(h, d.name, TRANSFORMS[d.name].epsilon) - h).reshape(-1)
        q = torch.linalg.lstsq(W, r.unsqueeze(1)).solution.reshape(-1)
        assert float(torch.nn.functional.cosine_similarity(q, d.vector, dim=0)) > 0.999
        assert d.meta["per_unit"] == pytest.approx(float(q.norm()) / TRANSFORMS[d.name].epsilon, rel=1e-3)


def test_walk_errors():
    G = load_generator("builtin:tiny-random-stylegan2")
    with pytest.raises(LatentcompError, match="use --space w"):
        steer_directions(G, "zoom", space="w+", steps=1)
    with pytest.raises(LatentcompError, match="no transform scale"):
        transform_move(G, torch.zeros(1, 64), "w", Direction("d", torch.ones(64), "w"), 0.1)
    with pytest.raises(LatentcompError, match="at least 1"):
        steer_directions(G, "zoom", steps=0)


# ------------------------------------------------------------------------------------------- CLI
def test_cli_compute_list_and_geometry(tmp_path, capsys):
    code, so, err = run_cli(
        [
            "directions",
            "compute",
            "--method",
            "geometric",
            "--generator",
            "builtin:tiny-random",
            "--transform",
            "zoom,shift_x",
            "--n",
            "8",
            "--out",
            tmp_path / "dirs",
        ],
        capsys,
    )
    assert code == 0, err
    ds = load_directions(tmp_path / "dirs" / "tiny-random_geometric.safetensors")
    assert [d.name for d in ds] == ["zoom", "shift_x"] and all(d.meta["per_unit"] > 0 for d in ds)
    assert "zoom walk" in so
    code, so, err = run_cli(
        [
            "directions",
            "compute",
            "--method",
            "steer",
            "--generator",
            "builtin:tiny-random",
            "--transform",
            "brightness",
            "--steps",
            "2",
            "--batch",
            "2",
            "--out",
            tmp_path / "dirs",
        ],
        capsys,
    )
    assert code == 0, err
    code, so, _ = run_cli(["directions", "list", tmp_path / "dirs"], capsys)
    assert "tiny-random_steer" in so and "brightness walk" in so
    code, _, err = run_cli(
        [
            "directions",
            "compute",
            "--method",
            "geometric",
            "--generator",
            "builtin:tiny-random",
            "--transform",
            "tilt",
            "--out",
            tmp_path / "dirs_bad",
        ],
        capsys,
    )
    assert code == 2 and "unknown transform(s) tilt" in err and err.count("\n") == 1
    out = tmp_path / "geo"
    code, so, err = run_cli(
        [
            "directions",
            "geometry",
            "--generator",
            "builtin:toyfaces-dcgan",
            "--transform",
            "shift_x",
            "--n",
            "2",
            "--steps",
            "2",
            "--out",
            out,
        ],
        capsys,
    )
    assert code == 0, err
    for name in (
        "geometry.md",
        "geometry.json",
        "geometry.png",
        "directions/geometric.safetensors",
        "directions/steer.safetensors",
    ):
        assert (out / name).is_file(), name
    md = (out / "geometry.md").read_text()
    assert "shift_x (geometric)" in md and "shift_x (steer)" in md and "shift_x (image transform)" in md
    code, so, err = run_cli(
        [
            "directions",
            "geometry",
            "--generator",
            "builtin:toyfaces-dcgan",
            "--n",
            "2",
            "--walks",
            out / "directions" / "geometric.safetensors",
            "--no-reference",
            "--out",
            tmp_path / "g2",
        ],
        capsys,
    )
    assert code == 0, err
    assert "image transform" not in (tmp_path / "g2" / "geometry.md").read_text()
    code, _, err = run_cli(
        [
            "directions",
            "geometry",
            "--generator",
            "builtin:tiny-random",
            "--method",
            "pca",
            "--out",
            tmp_path / "g3",
        ],
        capsys,
    )
    assert code == 2 and "accepted: geometric, steer" in err
    # edit an image by an amount of a walk
    from latentcomp import io

    img = tmp_path / "face.png"
    io.save_image(tf.ToyFaces(64, seed=1)[0][0], img)
    walk = out / "directions" / "geometric.safetensors"
    code, so, err = run_cli(
        [
            "navigate",
            "--model",
            "toyfaces",
            "--image",
            img,
            "--direction",
            f"{walk}:shift_x",
            "--amount",
            "0.1",
            "--out",
            tmp_path / "moved.png",
        ],
        capsys,
    )
    assert code == 0, err
    assert "shift_x amount 0.1" in so and (tmp_path / "moved.png").is_file()
    code, _, err = run_cli(
        [
            "navigate",
            "--model",
            "toyfaces",
            "--image",
            img,
            "--direction",
            f"{walk}:shift_x",
            "--amount",
            "0.1",
            "--strip",
            "0,1",
            "--out",
            tmp_path / "bad.png",
        ],
        capsys,
    )
    assert code == 2 and "leave out --strip" in err


def test_directions_evaluate_reports_face_movement_and_walks(tmp_path):
    from latentcomp.edit import Pipeline
    from latentcomp.metrics.analyzer import load_analyzer
    from latentcomp.navigate.evaluate import EvalSizes, evaluate_navigation, markdown_tables, save_results
    from latentcomp.regressors import build_regressor

    G = load_generator("builtin:tiny-random-stylegan2")
    torch.manual_seed(0)
    pipe = Pipeline(G, build_regressor(G))
    an = load_analyzer("builtin:toyfaces-analyzer")
    res = evaluate_navigation(
        pipe,
        an,
        sizes=EvalSizes.quick(),
        targets=["glasses=any"],
        compare=False,
        geometry=True,
        geometry_steps=3,
    )
    row = res["supervised"]["glasses=any"]["conditional"]
    if row["n"]:
        assert set(row["face_moved"]) == {"shift_x", "shift_y", "zoom", "rotate"}
    walks = res["geometry"]["walks"]
    assert (
        "zoom (closed-form)" in walks and "brightness (steer)" in walks and "zoom (image transform)" in walks
    )
    md = markdown_tables(res)
    assert "Geometric and colour walks against the toyfaces ground truth" in md
    written = save_results(res, tmp_path)
    walks_file = written["directions"] / "tiny-random-stylegan2_walks.safetensors"
    assert {d.name for d in load_directions(walks_file)} >= {"zoom (closed-form)", "brightness (steer)"}
