"""Bundled directions (navigate works right after install), short direction names, and
`directions compute --condition all` with one target (conditioned on every other attribute)."""

import json

import pytest
import torch

from latentcomp.cli import main
from latentcomp.errors import LatentcompError
from latentcomp.navigate import Direction, bundled_directions, find_direction, save_directions

BUNDLED = {
    "toyfaces": ("builtin:toyfaces-dcgan", "z"),
    "toyfaces-stylegan2": ("builtin:toyfaces-stylegan2", "w"),
    "toyfaces-gansformer": ("builtin:toyfaces-gansformer", "w"),
}


def run(args, capsys):
    try:
        main(args)
        code = 0
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def face(tmp_path):
    from latentcomp import io
    from latentcomp.data.toyfaces import ToyFaces

    path = tmp_path / "face.png"
    io.save_image(ToyFaces(64, seed=0)[0][0], path)
    return path


def test_every_bundled_generator_has_a_direction_per_attribute():
    from latentcomp.data.toyfaces import ATTRIBUTES

    for spec, space in BUNDLED.values():
        sets = bundled_directions(spec)
        assert len(sets) == 1, spec
        dirs = next(iter(sets.values()))
        names = {d.name for d in dirs}
        for attr in ATTRIBUTES:
            plain = [n for n in names if n.startswith(attr + "=") and not n.endswith("_cond")]
            assert len(plain) == 1 and plain[0] + "_cond" in names, (spec, attr)
        assert {d.space for d in dirs} == {space} and {d.generator for d in dirs} == {spec}
        assert all(abs(float(d.vector.norm()) - 1) < 1e-4 for d in dirs)


@pytest.mark.parametrize("model", list(BUNDLED))
def test_navigate_with_a_bundled_direction_right_after_install(model, face, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no ./directions folder
    out = tmp_path / "out.png"
    args = ["navigate", "--model", model, "--image", str(face), "--direction", "glasses"]
    code, stdout, err = run([*args, "--strength", "3", "--out", str(out)], capsys)
    assert code == 0, err
    assert "glasses=sunglasses (supervised" in stdout and out.is_file()
    code, stdout, err = run([*args[:-1], "glasses_cond", "--out", str(out)], capsys)
    assert code == 0, err
    assert "glasses=sunglasses_cond" in stdout


def test_short_names_and_own_folder_first(tmp_path):
    gen = "builtin:toyfaces-dcgan"
    mine = Direction("glasses=any", torch.nn.functional.normalize(torch.randn(128), dim=0), "z", gen)
    save_directions([mine], tmp_path / "mine")
    # the user's folder wins over the bundled set; the short name finds ATTR=VALUE
    assert find_direction("glasses", tmp_path, generator=gen).name == "glasses=any"
    assert find_direction("hair_style", tmp_path, generator=gen).name == "hair_style=bald"
    absent = tmp_path / "absent"
    assert find_direction("hair_style_cond", absent, generator=gen).name == "hair_style=bald_cond"
    ref = "toyfaces-dcgan-directions:glasses=sunglasses"
    assert find_direction(ref, tmp_path, generator=gen).space == "z"
    with pytest.raises(LatentcompError, match="not found"):
        find_direction("glasses", tmp_path / "absent", generator="builtin:tiny-random")


def test_condition_all_with_one_target_conditions_on_every_other_attribute(tmp_path, capsys):
    args = ["directions", "compute", "--model", "toyfaces", "--method", "supervised", "--n", "300"]
    one = ["--target", "glasses=any", "--condition", "all"]
    code, out, err = run([*args, *one, "--out", str(tmp_path)], capsys)
    assert code == 0, err
    doc = json.loads((tmp_path / "toyfaces-dcgan_supervised.json").read_text())
    by_name = {d["name"]: d for d in doc["directions"]}
    assert set(by_name) == {"glasses=any", "glasses=any_cond"}  # only the target and its conditioned form
    conds = by_name["glasses=any_cond"]["meta"]["conditions"]
    assert len(conds) >= 5 and not any(c.startswith("glasses") for c in conds)
    # the README's navigation command then works as written
    d = find_direction("glasses=any_cond", tmp_path, generator="builtin:toyfaces-dcgan")
    assert d.method == "supervised-svm+cond"
    # conditioning a target on itself alone would write nothing: refused with the reason
    code, out, err = run(
        [*args, "--target", "glasses=any", "--condition", "glasses=any", "--out", str(tmp_path / "x")], capsys
    )
    assert code == 2 and "no other direction to condition" in err
