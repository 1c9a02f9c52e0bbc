import os
from pathlib import Path

import pytest
import torch

torch.set_num_threads(int(os.environ.get("LATENTCOMP_TEST_THREADS", "1")))

REAL = Path(__file__).resolve().parents[2] / "shared" / "real"


@pytest.fixture
def real_dir() -> Path:
    if not REAL.is_dir():
        pytest.skip(f"real artifacts not found at {REAL} (only present beside the project's checkout)")
    return REAL
