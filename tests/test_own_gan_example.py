"""examples/own_gan.py, the script the "bring your own GAN" tutorial follows, runs end to end at tiny sizes
on the real MNIST DCGAN, and what it writes loads again as the tutorial says."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch

import latentcomp as lc

ROOT = Path(__file__).resolve().parents[1]


def load_example():
    spec = importlib.util.spec_from_file_location("own_gan", ROOT / "examples" / "own_gan.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_own_gan_example_runs(real_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)  # the tutorial runs the script from the repository root
    out = tmp_path / "own-gan"
    summary = load_example().main(["--out", str(out), "--steps", "4", "--n-eval", "8", "--batch", "4"])
    printed = capsys.readouterr().out
    for step in ("1.", "2. trained 4 steps", "3.", "5. composed", "6. completions", "7. saved"):
        assert step in printed
    assert summary["generator"] == "python:examples/mnist_dcgan.py:build"
    assert summary["train_steps"] == 4 and summary["real_digits"]
    for name in ("samples.png", "composed.png", "completion_k3.png", "evaluation.json", "digits/top.png"):
        assert (out / name).is_file(), name
    ev = json.loads((out / "evaluation.json").read_text())
    assert {"unmasked/l1_all", "masked/l1_known", "real_digits/l1_all"} <= set(ev)
    assert summary["serve"] == f"latentcomp serve --model {out / 'model'} --generator {summary['generator']}"
    # the saved pipeline records the python: spec: refused unless the generator is named, as the page says
    with pytest.raises(lc.LatentcompError, match="name the generator yourself"):
        lc.Pipeline.from_pretrained(out / "model")
    pipe = lc.Pipeline.from_pretrained(out / "model", generator=summary["generator"])
    assert (pipe.resolution, pipe.channels) == (28, 1)
    digit = lc.io.load_image(out / "digits" / "a.png", size=28, channels=1)
    top = lc.io.load_mask(out / "digits" / "top.png", size=28)
    res = pipe.inpaint(digit, top, n=2, seed=0)
    assert res.images.shape == (1, 2, 1, 28, 28) and torch.isfinite(res.images).all()
