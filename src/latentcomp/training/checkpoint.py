"""Resumable training state, and run configs read back.

Files are written atomically by `latentcomp.io` (`save_torch`, `write_json`, ...): a temporary file in
the same folder, flushed and fsync'ed, then moved over the destination with `os.replace`: a reader sees
the old file or the new one, never half a file, even if the process is killed mid-write.

Training state (`save_state` / `load_state`) is a `torch.save` container of tensors and plain Python
values only, so it loads with `torch.load(weights_only=True)`; it holds the RNG states of Python,
NumPy, torch (CPU and CUDA) so that a resumed run continues exactly.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import LatentcompError
from ..io import save_torch


def read_json_object(path: str | Path, what: str = "config") -> dict[str, Any]:
    """A JSON file that must hold an object (a run's config.json), or a one-line LatentcompError."""
    path = Path(path)
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LatentcompError(f"{what} file not found: {path}") from None
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise LatentcompError(f"{what} {path} is not valid JSON ({str(e).splitlines()[0]})") from None
    if not isinstance(obj, dict):
        raise LatentcompError(f"{what} {path} holds a JSON {type(obj).__name__}, not an object")
    return obj


# -- RNG state ---------------------------------------------------------------------------------------
def capture_rng_state() -> dict[str, Any]:
    """RNG states of Python, NumPy and torch (CPU, every CUDA device), as weights_only-safe values."""
    py_version, py_state, py_gauss = random.getstate()
    np_kind, np_keys, np_pos, np_has_gauss, np_gauss = np.random.get_state()
    state: dict[str, Any] = {
        "python": {"version": py_version, "state": list(py_state), "gauss": py_gauss},
        "numpy": {
            "kind": str(np_kind),
            "keys": torch.from_numpy(np.asarray(np_keys, dtype=np.int64)),
            "pos": int(np_pos),
            "has_gauss": int(np_has_gauss),
            "gauss": float(np_gauss),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    npst = state["numpy"]
    np.random.set_state(
        (npst["kind"], npst["keys"].numpy().astype(np.uint32), npst["pos"], npst["has_gauss"], npst["gauss"])
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"]
        if len(cuda_states) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda_states)


# -- training state ----------------------------------------------------------------------------------
def save_state(path: str | Path, **state: Any) -> Path:
    """Atomically save a resumable training state (adds the RNG states under "rng")."""
    state = dict(state)
    state.setdefault("rng", capture_rng_state())
    return save_torch(state, path)


def load_state(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    from ..safe_pickle import load_weights_only

    return load_weights_only(path, "training state", map_location)
