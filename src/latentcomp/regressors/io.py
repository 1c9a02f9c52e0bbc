"""Regressor files: safetensors weights + a JSON config (which records the generator spec).

`save_regressor(reg, "out/model")` writes `out/model.safetensors` and `out/model.json`; the config
is also stored in the safetensors metadata, so a lone .safetensors file still loads.

`load_regressor(src)` accepts
  - a training run folder (uses `best.safetensors`, else `last.safetensors`), or a folder written by
    `Pipeline.save_pretrained` (`regressor.safetensors` + `regressor.json`),
  - a `.safetensors` file (config from `<stem>.json`, `config.json` beside it, or its metadata),
  - `builtin:NAME` (the bundled `src/latentcomp/weights/NAME.safetensors` + `NAME.json`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from .. import io as files
from ..errors import LatentcompError
from .model import Regressor

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
RUN_WEIGHT_FILES = ("best.safetensors", "last.safetensors")
SAVED_WEIGHT_FILE = "regressor.safetensors"  # what Pipeline.save_pretrained writes into its folder


def _strip(path: str | Path) -> Path:
    p = Path(path)
    return p.with_suffix("") if p.suffix in (".safetensors", ".json") else p


def save_regressor(
    reg: Regressor,
    path: str | Path,
    extra: dict[str, Any] | None = None,
    half: bool = False,
    write_json: bool = True,
) -> Path:
    """Write `<path>.safetensors` (+ `<path>.json`) atomically; `half` stores float16 weights."""
    base = _strip(path)
    config = dict(reg.config)
    if extra:
        config.update(extra)
    state = {k: v.detach() for k, v in reg.state_dict().items()}
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    out = files.save_safetensors(
        state, base.with_name(base.name + ".safetensors"), metadata={"latentcomp_config": json.dumps(config)}
    )
    if write_json:
        files.write_json(base.with_name(base.name + ".json"), config)
    return out


def builtin_regressors() -> list[str]:
    return sorted(
        p.stem
        for p in WEIGHTS_DIR.glob("*.safetensors")
        if p.with_suffix(".json").is_file() and _is_regressor_json(p.with_suffix(".json"))
    )


def _is_regressor_json(p: Path) -> bool:
    try:
        return json.loads(p.read_text()).get("format") == "latentcomp-regressor"
    except (OSError, ValueError):
        return False


def resolve_regressor_file(src: str | Path) -> Path:
    """The weights file that `load_regressor(src)` would read."""
    s = str(src)
    if s.startswith("builtin:"):
        name = s.split(":", 1)[1]
        p = WEIGHTS_DIR / f"{name}.safetensors"
        if not p.is_file():
            avail = ", ".join(f"builtin:{n}" for n in builtin_regressors()) or "none bundled yet"
            raise LatentcompError(f"unknown builtin regressor {s!r} (no file {p}); available: {avail}")
        return p
    p = Path(s).expanduser()
    if p.is_dir():
        for name in (*RUN_WEIGHT_FILES, SAVED_WEIGHT_FILE):
            if (p / name).is_file():
                return p / name
        raise LatentcompError(
            f"regressor folder {p} holds no {' or '.join(RUN_WEIGHT_FILES)} (a training run) nor "
            f"{SAVED_WEIGHT_FILE} (Pipeline.save_pretrained); "
            "pass a training run folder, a .safetensors file or builtin:NAME"
        )
    if p.is_file():
        return p
    if p.suffix != ".safetensors" and p.with_name(p.name + ".safetensors").is_file():
        return p.with_name(p.name + ".safetensors")
    raise LatentcompError(
        f"regressor not found: {s} (expected a training run folder, a .safetensors file or builtin:NAME)"
    )


def _read_config(weights: Path, metadata: dict[str, str] | None) -> dict[str, Any]:
    candidates = [weights.with_suffix(".json"), weights.parent / "config.json"]
    for c in candidates:
        if c.is_file():
            try:
                cfg = json.loads(c.read_text())
            except (OSError, ValueError) as e:
                raise LatentcompError(f"regressor config {c} is not valid JSON: {e}") from e
            if isinstance(cfg, dict) and cfg.get("format") == "latentcomp-regressor":
                return cfg
            if isinstance(cfg, dict) and isinstance(cfg.get("regressor"), dict):
                return cfg["regressor"]
    if metadata and "latentcomp_config" in metadata:
        try:
            return json.loads(metadata["latentcomp_config"])
        except ValueError as e:
            raise LatentcompError(f"regressor {weights} carries an unreadable config in its metadata") from e
    raise LatentcompError(
        f"no regressor config for {weights}: expected {candidates[0].name} or config.json beside it"
    )


def load_regressor(
    src: str | Path, device: str | torch.device | None = None, eval_mode: bool = True
) -> Regressor:
    """Load a regressor: a training run folder (`best.safetensors`, else `last.safetensors`), a folder
    written by `Pipeline.save_pretrained` (`regressor.safetensors`), a `.safetensors` file (config from the
    `.json` beside it, `config.json`, or the file's metadata) or `builtin:NAME` (a bundled regressor).

    The regressor records its generator's spec (`reg.generator_spec`, `reg.load_generator()`). A file that
    is missing, unreadable or does not match its config raises `LatentcompError` naming the file."""
    from safetensors import safe_open

    from ..devices import parse_device

    device = parse_device(device)
    weights = resolve_regressor_file(src)
    try:
        with safe_open(str(weights), framework="pt", device="cpu") as f:
            metadata = f.metadata()
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # noqa: BLE001 - safetensors raises several types for a bad file
        raise LatentcompError(
            f"cannot read regressor weights {weights}: not a valid safetensors file ({e})"
        ) from e
    config = _read_config(weights, metadata)
    try:
        reg = Regressor.from_config(config)
    except (TypeError, ValueError) as e:
        if isinstance(e, LatentcompError):
            raise LatentcompError(f"regressor config for {weights}: {e}") from e
        raise LatentcompError(f"regressor config for {weights} is invalid: {e}") from e
    own = reg.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} tensors (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected tensors (e.g. {unexpected[0]})")
        if wrong:
            k = wrong[0]
            parts.append(
                f"shape mismatch for {k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
            )
        raise LatentcompError(
            f"regressor weights {weights} do not match its config "
            f"({config.get('backbone')}, space {config.get('space')}): " + "; ".join(parts)
        )
    state = {k: v.to(own[k].dtype) for k, v in state.items()}
    reg.load_state_dict(state)
    reg.source = str(src)
    if eval_mode:
        reg.eval()
    if device is not None:
        reg.to(device)
    return reg
