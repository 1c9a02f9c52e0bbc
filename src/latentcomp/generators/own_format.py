"""latentcomp's own file pair for trained generators: weights (safetensors) + config (JSON).

Used by the `stylegan2` and `gansformer` kinds. PATH is a folder (PATH/generator.safetensors +
PATH/generator.json) or X.safetensors / X.json (the other file beside it). The config is
{"format", "version", "architecture": {...}, **extra}; each file is written atomically.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ..errors import LatentcompError
from ..io import atomic_write, write_text


def format_paths(path) -> tuple[Path, Path]:
    """folder -> folder/generator.{safetensors,json}; X.safetensors or X.json -> (X.safetensors, X.json)."""
    p = Path(path).expanduser()
    if p.suffix == ".safetensors":
        return p, p.with_suffix(".json")
    if p.suffix == ".json":
        return p.with_suffix(".safetensors"), p
    return p / "generator.safetensors", p / "generator.json"


def save_pair(
    path,
    tensors: dict[str, torch.Tensor],
    format_name: str,
    version: int,
    architecture: dict,
    extra_config: dict | None = None,
) -> Path:
    """Write the pair; `extra_config` adds keys to the config but may not override the fixed ones."""
    from safetensors.torch import save_file

    weights_path, config_path = format_paths(path)
    config = {"format": format_name, "version": version, "architecture": architecture}
    for k, v in (extra_config or {}).items():
        if k in config:
            raise ValueError(f"extra_config may not override {k!r}")
        config[k] = v
    atomic_write(weights_path, lambda tmp: save_file(tensors, str(tmp), metadata={"format": format_name}))
    write_text(config_path, json.dumps(config, indent=2) + "\n")
    return weights_path


def load_pair(path, format_name: str, kind: str) -> tuple[dict[str, torch.Tensor], dict, Path, Path]:
    """Read and check the pair -> (tensors, config, weights path, config path); `kind` names the
    generator kind in errors (e.g. "StyleGAN2")."""
    from safetensors.torch import load_file

    weights_path, config_path = format_paths(path)
    for f in (weights_path, config_path):
        if not f.is_file():
            raise LatentcompError(
                f"{kind} file not found: {f} (latentcomp format = generator.safetensors + generator.json "
                "in a folder, or X.safetensors + X.json)"
            )
    try:
        config = json.loads(config_path.read_text())
        if not isinstance(config["architecture"], dict):
            raise TypeError("architecture is not an object")
    except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError) as e:
        raise LatentcompError(f"{config_path}: not a latentcomp {kind} config ({e})") from None
    if config.get("format") != format_name:
        raise LatentcompError(f"{config_path}: format is {config.get('format')!r}; expected {format_name!r}")
    try:
        tensors = load_file(str(weights_path))
    except Exception as e:  # noqa: BLE001 - any parse failure is a bad file
        raise LatentcompError(f"{weights_path}: cannot read safetensors ({type(e).__name__}: {e})") from None
    return tensors, config, weights_path, config_path
