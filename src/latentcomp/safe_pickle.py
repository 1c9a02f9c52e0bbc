"""Read pickled checkpoints without running code from the file.

`torch.load(weights_only=True)` is tried first. Old containers that it refuses (a GAN-zoo config object,
an argparse Namespace in a training checkpoint, an NVlabs network pickle) are read with a restricted
unpickler: torch's tensor-rebuild functions and plain containers are allowed; classes the caller names
in `stub` become inert `Stub` records of their arguments and state (no import, no call); any other
global is refused with a `LatentcompError` naming it. A payload such as `os.system` is therefore never
called.
"""

from __future__ import annotations

import collections
import pickle
import re
import types
from pathlib import Path

import torch

from .errors import LatentcompError

# globals that only rebuild tensors or plain containers
_SAFE_GLOBALS = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("collections", "defaultdict"): collections.defaultdict,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "slice"): slice,
    ("builtins", "complex"): complex,
    ("torch._utils", "_rebuild_tensor"): torch._utils._rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): torch._utils._rebuild_parameter_with_state,
    ("torch", "Size"): torch.Size,
    ("torch", "device"): torch.device,
    ("numpy.core.multiarray", "_reconstruct"): None,  # filled lazily below (numpy arrays in old pickles)
    ("numpy", "ndarray"): None,
    ("numpy", "dtype"): None,
    ("numpy.core.multiarray", "scalar"): None,
    ("numpy._core.multiarray", "_reconstruct"): None,
    ("numpy._core.multiarray", "scalar"): None,
}
for _dt in ("float16", "float32", "float64", "bfloat16", "int64", "int32", "int16", "int8", "uint8", "bool"):
    _SAFE_GLOBALS[("torch", _dt)] = getattr(torch, _dt)


def _numpy_global(module: str, name: str):
    import numpy as np

    if name == "_reconstruct":
        return np.core.multiarray._reconstruct if hasattr(np, "core") else np._core.multiarray._reconstruct
    if name == "scalar":
        mod = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray
        return mod.scalar
    return getattr(np, name)


class Stub:
    """Inert stand-in for a class from a checkpoint: records constructor args and pickled state only."""

    _stub_module = ""
    _stub_name = ""

    def __init__(self, *args, **kwargs):
        self.args = args
        self.kwargs = kwargs
        self.state = None

    def __setstate__(self, state):
        self.state = state

    def __setitem__(self, key, value):  # dict subclasses are rebuilt item by item
        self.__dict__.setdefault("items", {})[key] = value

    def __repr__(self):
        return f"Stub({self._stub_module}.{self._stub_name})"


def _make_stub(module: str, name: str) -> type:
    return type(name, (Stub,), {"_stub_module": module, "_stub_name": name})


def restricted_unpickler_module(path: Path, stub: tuple[str, ...] = (), allow: dict | None = None):
    """A pickle-module-like namespace for `torch.load(pickle_module=...)`.

    stub: "module.Name" or "module." prefixes that become `Stub` classes.
    allow: extra {(module, name): object} mappings (e.g. a function that rebuilds a persistent object).
    """
    extra = dict(allow or {})

    class RestrictedUnpickler(pickle.Unpickler):
        def find_class(self, module, name):
            key = (module, name)
            if key in extra:
                return extra[key]
            if key in _SAFE_GLOBALS:
                obj = _SAFE_GLOBALS[key]
                return obj if obj is not None else _numpy_global(module, name)
            if module == "torch" and name.endswith("Storage"):
                return getattr(torch, name)
            if module == "torch.storage" and name == "UntypedStorage":
                return torch.UntypedStorage
            full = f"{module}.{name}"
            if any(full == s or (s.endswith(".") and full.startswith(s)) for s in stub):
                return _make_stub(module, name)
            raise LatentcompError(
                f"{path}: refusing to unpickle global {full!r} (it could run code); only tensors, "
                "plain containers and known checkpoint classes are read"
            )

    ns = types.SimpleNamespace()
    ns.Unpickler = RestrictedUnpickler
    ns.load = lambda f, **kw: RestrictedUnpickler(f, **kw).load()
    ns.loads = lambda b, **kw: RestrictedUnpickler(__import__("io").BytesIO(b), **kw).load()
    ns.__name__ = "latentcomp_restricted_pickle"
    return ns


def _zip_records(path: Path) -> list[str]:
    """Record names of a torch zip archive (top folder stripped); [] when it is not a zip."""
    with open(path, "rb") as f:
        if f.read(4) != b"PK\x03\x04":
            return []
    try:
        return list(torch._C.PyTorchFileReader(str(path)).get_all_records())
    except Exception:
        import zipfile

        try:
            with zipfile.ZipFile(path) as z:
                return [n.split("/", 1)[1] if "/" in n else n for n in z.namelist()]
        except zipfile.BadZipFile:
            return []


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0][:160] if lines else type(e).__name__


def _refuse_torchscript(path: Path) -> None:
    # torch.load(weights_only=False) hands TorchScript archives to torch.jit.load, which can run code
    records = _zip_records(path)
    if "constants.pkl" in records or any(r.startswith("code/") for r in records):
        raise LatentcompError(
            f"{path}: is a TorchScript archive; refusing to load it (torch.jit.load can run code from the "
            "file); save a state dict instead"
        )


def load_reason(e: BaseException) -> str:
    """Why torch.load failed, in one short line (torch's own message is ten lines of advice to pass
    weights_only=False, which would let the file run code)."""
    msg = str(e)
    if m := re.search(r"GLOBAL ([\w.]+)", msg):
        return f"it holds the Python object {m.group(1)}, which is not a tensor or a plain value"
    if m := re.search(r"Unsupported operand (\d+)", msg):
        return f"not a torch weights file (unsupported pickle opcode {m.group(1)})"
    noise = ("weights only load failed", "weights_only", "check the documentation", "please file an issue")
    lines = [ln.strip() for ln in msg.splitlines() if ln.strip()]
    useful = [ln for ln in lines if not any(n in ln.lower() for n in noise)]
    text = (useful or lines or [type(e).__name__])[0]
    return text if len(text) <= 160 else text[:157] + "..."


def load_weights_only(path: str | Path, what: str = "checkpoint", map_location="cpu"):
    """`torch.load(weights_only=True)` with a one-line LatentcompError naming the file when it fails."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise LatentcompError(f"{what} file not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is a user-facing error
        raise LatentcompError(
            f"cannot read {what} {path}: {load_reason(e)}; only tensors and plain values are loaded"
        ) from None


def safe_load(
    path: str | Path, stub: tuple[str, ...] = (), allow: dict | None = None, what: str = "checkpoint"
):
    """Load a torch checkpoint (zip or legacy) or a plain pickle without executing code from it."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise LatentcompError(f"{what} file not found: {path}")
    _refuse_torchscript(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except LatentcompError:
        raise
    except Exception as first:  # weights_only refused a global, or it is a plain pickle
        first_error = first
    module = restricted_unpickler_module(path, stub, allow)
    try:
        return torch.load(path, map_location="cpu", weights_only=False, pickle_module=module)
    except LatentcompError:
        raise
    except Exception:
        pass
    # not a torch file at all (e.g. an NVlabs .pkl): plain restricted unpickling
    try:
        with open(path, "rb") as f:
            return module.Unpickler(f).load()
    except LatentcompError:
        raise
    except Exception as e:
        raise LatentcompError(
            f"{path}: cannot read {what} ({type(e).__name__}: {_first_line(e)}; torch.load said: "
            f"{load_reason(first_error)})"
        ) from None
