"""Optional packages: a missing one stops with an error that names the package and the extra."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
import torch

from latentcomp.errors import LatentcompError
from latentcomp.extras import OPTIONAL, require

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "module, package, extra",
    [("cv2", "opencv-python-headless", "metrics"), ("sklearn.svm", "scikit-learn", "metrics"),
     ("uvicorn", "uvicorn", "web"), ("torch.utils.tensorboard", "tensorboard", "train")],
)  # fmt: skip
def test_missing_optional_package_names_its_extra(monkeypatch, module, package, extra):
    monkeypatch.setitem(sys.modules, module, None)  # as if not installed: importing it raises ImportError
    with pytest.raises(LatentcompError, match=rf"the feature needs the optional package {package} .*"
                       rf"pip install 'latentcomp\[{extra}\]'"):  # fmt: skip
        require(module, "the feature")


def test_poisson_baseline_says_which_extra(monkeypatch):
    from latentcomp.edit import baselines

    monkeypatch.setitem(sys.modules, "cv2", None)
    x, m = torch.zeros(1, 3, 8, 8), torch.ones(1, 1, 8, 8)
    with pytest.raises(LatentcompError, match=r"Poisson blending needs .*latentcomp\[metrics\]"):
        baselines.poisson_blend([x, x], [m, m])


def test_every_optional_package_is_in_its_extra_and_not_in_the_core():
    text = (ROOT / "pyproject.toml").read_text()
    core = re.search(r"^dependencies = \[(.*?)^\]", text, re.S | re.M).group(1)
    for package, extra in OPTIONAL.values():
        line = re.search(rf"^{extra} = \[(.*)\]$", text, re.M).group(1)
        assert f'"{package}>=' in line, (package, extra)
        assert f'"{package}' not in core
    assert re.search(r'^all = \["latentcomp\[web,train,metrics\]"\]$', text, re.M)
    assert "-e .[all,dev]" in (ROOT / "Makefile").read_text()
