"""Directions on disk: one *set* per file pair, `NAME.safetensors` (one tensor per direction) plus
`NAME.json` (format, and per direction: name, generator spec, space, w+ layers, method, std, metadata).
A directions folder holds any number of sets; `list_directions(folder)` lists them and
`find_direction(name, folder)` picks one by name.

Direction references (the `--direction` option):
    NAME                   a direction name, unique in the folder (e.g. glasses=any, pca3)
    SET:NAME               the direction NAME in the set file SET.safetensors of the folder
    PATH.safetensors:NAME  a direction in a set file anywhere
    PATH.safetensors       the only direction of a set file
    ATTR / ATTR_cond       short for the one direction ATTR=VALUE (ATTR=VALUE_cond) of a set, e.g. glasses

The bundled generators come with sets in the package's weights folder (`bundled_directions`): a NAME
that the folder does not hold is looked up there for the generator in use, so
`latentcomp navigate --model toyfaces --direction glasses` works without computing anything first.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import torch

from ..errors import LatentcompError
from .directions import Direction

FORMAT = "latentcomp-directions"
BUNDLED_DIR = Path(__file__).resolve().parents[1] / "weights"
FORMAT_VERSION = 1


def _paths(path: str | os.PathLike) -> tuple[Path, Path]:
    p = Path(path).expanduser()
    if p.suffix == ".json":
        return p.with_suffix(".safetensors"), p
    if p.suffix != ".safetensors":
        p = p.with_name(p.name + ".safetensors")
    return p, p.with_suffix(".json")


def save_directions(
    directions: Sequence[Direction], path: str | os.PathLike, info: dict | None = None
) -> Path:
    """Write a set of directions (names must be unique); returns the .safetensors path. `info` (JSON-able)
    is stored with the set, e.g. how it was computed."""
    from safetensors.torch import save_file

    from .. import io

    directions = list(directions)
    if not directions:
        raise LatentcompError("no directions to save")
    names = [d.name for d in directions]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise LatentcompError(f"direction names must be unique in a set; repeated: {', '.join(dup)}")
    weights, cfg = _paths(path)
    tensors = {f"d{i}": d.vector.detach().float().cpu().contiguous() for i, d in enumerate(directions)}
    entries = [
        {
            "key": f"d{i}",
            "name": d.name,
            "space": d.space,
            "layers": list(d.layers) if d.layers is not None else None,
            "generator": d.generator,
            "method": d.method,
            "std": d.std,
            "dim": d.dim,
            "meta": _jsonable(d.meta),
        }
        for i, d in enumerate(directions)
    ]
    doc = {"format": FORMAT, "version": FORMAT_VERSION, "info": _jsonable(info or {}), "directions": entries}
    io.atomic_write(weights, lambda t: save_file(tensors, str(t), metadata={"format": FORMAT}))
    io.write_text(cfg, json.dumps(doc, indent=2) + "\n")
    return weights


def load_directions(path: str | os.PathLike) -> list[Direction]:
    """Read a set written by `save_directions` (PATH.safetensors, PATH.json or PATH without suffix)."""
    from safetensors.torch import load_file

    weights, cfg = _paths(path)
    for p in (weights, cfg):
        if not p.is_file():
            raise LatentcompError(
                f"directions file not found: {p} (a set is NAME.safetensors + NAME.json, written by "
                "`latentcomp directions compute`)"
            )
    try:
        doc = json.loads(cfg.read_text())
    except (OSError, ValueError) as e:
        raise LatentcompError(f"directions config {cfg} is not valid JSON: {e}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise LatentcompError(f'{cfg} is not a {FORMAT} file (missing "format": "{FORMAT}")')
    try:
        tensors = load_file(str(weights))
    except Exception as e:  # noqa: BLE001 - safetensors raises its own error types
        raise LatentcompError(f"cannot read directions {weights}: {e}") from None
    out = []
    for e in doc.get("directions", []):
        key = e.get("key")
        if key not in tensors:
            raise LatentcompError(f"{weights} lacks the tensor {key!r} of direction {e.get('name')!r}")
        out.append(
            Direction(
                name=str(e["name"]),
                vector=tensors[key],
                space=str(e["space"]),
                generator=str(e.get("generator", "")),
                layers=tuple(e["layers"]) if e.get("layers") is not None else None,
                method=str(e.get("method", "")),
                std=float(e.get("std", 1.0)),
                meta=dict(e.get("meta") or {}),
            )
        )
    return out


def list_directions(folder: str | os.PathLike) -> dict[str, list[Direction]]:
    """Set name (file stem) -> its directions, for every set in `folder` (sorted by name)."""
    d = Path(folder).expanduser()
    if not d.is_dir():
        raise LatentcompError(f"directions folder not found: {d}")
    out: dict[str, list[Direction]] = {}
    for js in sorted(d.glob("*.json")):
        try:
            if json.loads(js.read_text()).get("format") != FORMAT:
                continue
        except (OSError, ValueError, AttributeError):
            continue
        out[js.stem] = load_directions(js)
    return out


def bundled_directions(generator: str | None = None) -> dict[str, list[Direction]]:
    """The direction sets shipped with the package (set name -> directions), only those computed for
    `generator` (a spec such as builtin:toyfaces-dcgan) when it is given."""
    if not BUNDLED_DIR.is_dir():
        return {}
    sets = list_directions(BUNDLED_DIR)
    if generator is None:
        return sets
    return {name: ds for name, ds in sets.items() if any(d.generator == generator for d in ds)}


def _matches(name: str, ref: str) -> bool:
    """Exact name, or the short forms ATTR (-> ATTR=VALUE) and ATTR_cond (-> ATTR=VALUE_cond)."""
    if name == ref:
        return True
    if "=" in ref:
        return False
    attr, eq, value = name.partition("=")
    if not eq:
        return False
    if ref.endswith("_cond"):
        return value.endswith("_cond") and attr == ref[: -len("_cond")]
    return attr == ref and not value.endswith("_cond")


def _lookup(sets: dict[str, list[Direction]], ref: str, generator: str | None):
    """(set, direction) pairs for `ref`: exact names first, then the short forms."""
    for exact in (True, False):
        match = (lambda n: n == ref) if exact else (lambda n: _matches(n, ref))
        hits = [(s, d) for s, ds in sets.items() for d in ds if match(d.name)]
        if len(hits) > 1 and generator:
            mine = [h for h in hits if h[1].generator == generator]
            hits = mine if len(mine) == 1 else hits
        if hits:
            return hits
    return []


def find_direction(
    ref: str, folder: str | os.PathLike | None = None, generator: str | None = None
) -> Direction:
    """Resolve a direction reference (see the module doc) against `folder` (default: the current folder),
    then against the sets bundled for `generator`. A NAME found in several sets is resolved by `generator`
    (a spec) when only one of them was computed for it. A missing `folder` is an error only when no set
    is bundled for `generator`."""
    ref = str(ref)
    base = Path(folder).expanduser() if folder is not None else Path(".")
    bundled = bundled_directions(generator) if generator else {}
    set_part, sep, name = ref.rpartition(":")
    if sep and set_part:
        p = Path(set_part).expanduser()
        if p.suffix in (".safetensors", ".json") or p.is_file():
            return _pick(load_directions(p), name, str(p))
        if _paths(base / set_part)[1].is_file():
            return _pick(load_directions(base / set_part), name, set_part)
        if set_part in bundled:
            return _pick(bundled[set_part], name, set_part)
        raise LatentcompError(
            f"direction set {set_part!r} not found (looked for {_paths(base / set_part)[0]}"
            + (f"; bundled sets: {', '.join(bundled)}" if bundled else "")
            + ")"
        )
    p = Path(ref).expanduser()
    if p.suffix in (".safetensors", ".json") and p.is_file():
        dirs = load_directions(p)
        if len(dirs) != 1:
            raise LatentcompError(
                f"{p} holds {len(dirs)} directions; name one as {p}:NAME "
                f"(names: {', '.join(d.name for d in dirs[:12])}{' ...' if len(dirs) > 12 else ''})"
            )
        return dirs[0]
    sets = list_directions(base) if base.is_dir() or not bundled else {}
    hits = _lookup(sets, ref, generator) or _lookup(bundled, ref, generator)
    if len(hits) == 1:
        return hits[0][1]
    if len(hits) > 1:
        raise LatentcompError(
            f"direction {ref!r} is in several sets ({', '.join(f'{s}:{d.name}' for s, d in hits[:12])}); "
            "write SET:NAME"
        )
    avail = [d.name for ds in sets.values() for d in ds] + [d.name for ds in bundled.values() for d in ds]
    where = str(base) + (f" or the sets bundled for {generator}" if bundled else "")
    raise LatentcompError(
        f"direction {ref!r} not found in {where}; available: "
        + (
            ", ".join(avail[:30]) + (" ..." if len(avail) > 30 else "")
            if avail
            else "none (run `latentcomp directions compute` first, or pass --directions DIR)"
        )
    )


def _pick(dirs: list[Direction], name: str, where: str) -> Direction:
    for d in dirs:
        if d.name == name:
            return d
    raise LatentcompError(f"no direction {name!r} in {where}; names: {', '.join(d.name for d in dirs[:30])}")


def _jsonable(v):
    import math

    if isinstance(v, torch.Tensor):
        return _jsonable(v.tolist())
    if isinstance(v, float):
        return None if (math.isnan(v) or math.isinf(v)) else v
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    if hasattr(v, "item") and callable(v.item):
        return _jsonable(v.item())
    return v
