import os
from pathlib import Path

import pytest
import torch

from latentcomp import load_generator
from latentcomp.edit import Pipeline
from latentcomp.regressors import build_regressor

torch.set_num_threads(int(os.environ.get("LATENTCOMP_TEST_THREADS", "1")))

REAL = Path(__file__).resolve().parents[2] / "shared" / "real"
TINY_Z = "builtin:tiny-random"  # 32 x 32, z only
TINY_WPLUS = "builtin:tiny-random-stylegan2"  # 32 x 32, z / w / w+


@pytest.fixture
def real_dir() -> Path:
    if not REAL.is_dir():
        pytest.skip(f"real artifacts not found at {REAL} (only present beside the project's checkout)")
    return REAL


def tiny_pipeline(spec: str = TINY_Z, seed: int = 0) -> Pipeline:
    """A fresh Pipeline of the tiny random generator `spec` and an untrained regressor seeded by `seed`."""
    G = load_generator(spec)
    torch.manual_seed(seed)
    return Pipeline(G, build_regressor(G))


@pytest.fixture(scope="session")
def make_pipe():
    """`make_pipe(spec=TINY_Z, seed=0)`: a fresh tiny pipeline, for tests that change or compare pipelines."""
    return tiny_pipeline


@pytest.fixture(scope="module")
def pipe() -> Pipeline:
    """The tiny z-space pipeline (builtin:tiny-random, regressor seed 0), shared by one module's tests."""
    return tiny_pipeline(TINY_Z)


@pytest.fixture(scope="module")
def pipe_wplus() -> Pipeline:
    """The tiny w+ pipeline (builtin:tiny-random-stylegan2, regressor seed 0), shared by a module's tests."""
    return tiny_pipeline(TINY_WPLUS)


@pytest.fixture(params=["pipe", "pipe_wplus"])
def any_pipe(request) -> Pipeline:
    """Each of the two tiny pipelines in turn."""
    return request.getfixturevalue(request.param)
