"""Torch device names from users (`--device`, `device=`): one validator, so that every command and API
refuses a device it cannot use with one line, before any model is loaded."""

from __future__ import annotations

import torch

from .errors import LatentcompError

ACCEPTED = "cpu, cuda, cuda:N or mps"


def parse_device(device: str | torch.device | None, what: str = "device") -> torch.device | None:
    """`device` as a torch.device that this machine has; None stays None (the caller's default).

    Refused with a LatentcompError: names torch does not know (`tpu`, `cuda:abc`), kinds other than
    cpu / cuda / mps, CUDA or MPS where this machine lacks them, and a CUDA index past the last GPU."""
    if device is None:
        return None
    try:
        dev = device if isinstance(device, torch.device) else torch.device(str(device).strip())
    except (RuntimeError, ValueError):
        raise LatentcompError(f"{what} {str(device)!r} is not a device name; accepted: {ACCEPTED}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise LatentcompError(
                f"{what} {str(device)!r}: CUDA is not available on this machine; use cpu"
            )
        count = torch.cuda.device_count()
        if dev.index is not None and dev.index >= count:
            raise LatentcompError(
                f"{what} {str(device)!r}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}"
            )
    elif dev.type == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise LatentcompError(f"{what} {str(device)!r}: MPS is not available on this machine; use cpu")
    elif dev.type != "cpu":
        raise LatentcompError(f"{what} {str(device)!r} is not supported; accepted: {ACCEPTED}")
    return dev
