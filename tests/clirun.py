"""Helpers shared by the tests that drive the `latentcomp` command line in-process."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from latentcomp import load_generator
from latentcomp.cli import main
from latentcomp.regressors import build_regressor, save_regressor


def run_cli(args, capsys) -> tuple[int, str, str]:
    """Run `latentcomp ARGS` (any path-like args are turned into text); (exit code, stdout, stderr)."""
    capsys.readouterr()
    try:
        main([str(a) for a in args])
        code = 0
    except SystemExit as e:
        code = e.code or 0
    out, err = capsys.readouterr()
    return code, out, err


def write_tiny_inputs(d: Path, res: int) -> Path:
    """In `d`: reg.safetensors (an untrained regressor for builtin:tiny-random), imgs/a.png and imgs/b.png
    (seeded noise images of res x res) and top.png (a mask keeping the top half)."""
    G = load_generator("builtin:tiny-random")
    torch.manual_seed(0)
    save_regressor(build_regressor(G), d / "reg")
    rng = np.random.default_rng(0)
    (d / "imgs").mkdir()
    for name in ("a", "b"):
        Image.fromarray(rng.integers(0, 256, (res, res, 3), dtype=np.uint8)).save(d / "imgs" / f"{name}.png")
    top = np.zeros((res, res), dtype=np.uint8)
    top[: res // 2] = 255
    Image.fromarray(top).save(d / "top.png")
    return d


def run_ok(args, capsys) -> str:
    """Run `latentcomp ARGS` in-process, assert that it succeeded (showing stderr if not); its stdout."""
    code, out, err = run_cli(args, capsys)
    assert code == 0, f"latentcomp {' '.join(map(str, args))} -> exit {code}: {err}"
    return out
