"""The library names parameters as Python does; the CLI spells the same messages as flags."""

from __future__ import annotations

import pytest

from latentcomp.cli import main
from latentcomp.errors import LatentcompError, option, reset_spelling, spell_options
from latentcomp.training.regressor import TrainConfig


def _bad_config(tmp_path):
    return TrainConfig(generator="builtin:tiny-random", out=str(tmp_path / "run"), real_fraction=0.5)


def test_library_messages_name_python_parameters(tmp_path):
    assert option("real_fraction") == "real_fraction"
    with pytest.raises(LatentcompError, match=r"^real_fraction needs real \(a folder of images\)$"):
        _bad_config(tmp_path).validate()


def test_a_spelling_applies_until_it_is_reset(tmp_path):
    token = spell_options(lambda n: "--" + n.replace("_", "-"))
    try:
        with pytest.raises(LatentcompError, match=r"^--real-fraction needs --real \(a folder"):
            _bad_config(tmp_path).validate()
    finally:
        reset_spelling(token)
    assert option("real_fraction") == "real_fraction"


def test_cli_speaks_flags_and_leaves_the_library_as_it_was(tmp_path, capsys):
    args = ["regressor", "train", "--generator", "builtin:tiny-random", "--out", str(tmp_path / "r")]
    with pytest.raises(SystemExit) as done:
        main([*args, "--real-fraction", "0.5"])
    assert done.value.code == 2
    assert capsys.readouterr().err.strip() == "error: --real-fraction needs --real (a folder of images)"
    assert option("real_fraction") == "real_fraction"  # reset when the command ended
