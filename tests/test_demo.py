"""`latentcomp demo --quick`: the page, its relative image links, and the plain message without models."""

from __future__ import annotations

import re

import pytest
import torch

from latentcomp import load_generator
from latentcomp.cli import main
from latentcomp.pretrained import get_pretrained
from latentcomp.regressors import build_regressor, save_regressor


def _bundled_installed() -> bool:
    from latentcomp.regressors import builtin_regressors

    return get_pretrained("toyfaces").regressor.split(":", 1)[1] in builtin_regressors()


def _check_page(page):
    html = page.read_text()
    links = re.findall(r'src="([^"]+)"', html)
    assert links and all(not ln.startswith(("/", "http")) for ln in links)
    assert all((page.parent / ln).is_file() for ln in links)
    assert "Figures measured in this run" in html
    return html


def test_demo_quick_on_tiny_models(tmp_path, capsys):
    G = load_generator("builtin:tiny-random")
    torch.manual_seed(0)
    save_regressor(build_regressor(G), tmp_path / "reg")
    out = tmp_path / "demo"
    with pytest.raises(SystemExit) as e:
        main(["demo", "--quick", "--model", str(tmp_path / "reg.safetensors"), "--out", str(out)])
    assert e.value.code in (0, None)
    assert str(out / "index.html") in capsys.readouterr().out
    html = _check_page(out / "index.html")
    assert "Collages" in html and "Completions" in html and "Edits by example" in html


@pytest.mark.skipif(not _bundled_installed(), reason="bundled toyfaces models not installed yet")
def test_demo_quick_bundled(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["demo", "--quick", "--out", str(tmp_path / "demo")])
    assert e.value.code in (0, None)
    _check_page(tmp_path / "demo" / "index.html")


@pytest.mark.skipif(_bundled_installed(), reason="bundled toyfaces models are installed")
def test_demo_without_bundled_models_says_so(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["demo", "--quick", "--out", str(tmp_path / "demo")])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "bundled toyfaces models" in err and "Traceback" not in err
