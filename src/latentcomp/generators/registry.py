"""`load_generator("KIND:LOCATION")`: one entry point for every checkpoint layout.

Each kind module registers a loader with `@register_kind("name")`. Loaders take the location string
(a path, a module:function, a builtin name) and keyword options and return a frozen `Generator`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

from ..errors import LatentcompError
from .base import Generator

_LOADERS: dict[str, Callable[..., Generator]] = {}

# modules that register kinds; imported lazily so that a broken optional kind never breaks the others
_KIND_MODULES = {
    "dcgan": "latentcomp.generators.dcgan",
    "progan": "latentcomp.generators.progan",
    "stylegan2": "latentcomp.generators.stylegan2",
    "stylegan2-ada": "latentcomp.generators.stylegan2_ada",
    "python": "latentcomp.generators.custom",
    "builtin": "latentcomp.generators.builtin",
    "gansformer": "latentcomp.generators.gansformer",
}


def register_kind(name: str):
    def deco(fn: Callable[..., Generator]) -> Callable[..., Generator]:
        _LOADERS[name] = fn
        return fn

    return deco


def known_kinds() -> list[str]:
    return sorted(_KIND_MODULES)


def split_spec(spec: str) -> tuple[str, str]:
    if not isinstance(spec, str) or ":" not in spec:
        raise LatentcompError(
            f"generator spec {spec!r} must look like KIND:LOCATION; kinds: {', '.join(known_kinds())}"
        )
    kind, location = spec.split(":", 1)
    if kind not in _KIND_MODULES:
        raise LatentcompError(
            f"unknown generator kind {kind!r} in spec {spec!r}; accepted kinds: {', '.join(known_kinds())}"
        )
    return kind, location


def require_file(path: str | Path, what: str) -> Path:
    p = Path(path).expanduser()
    if not p.is_file():
        raise LatentcompError(f"{what} file not found: {p}")
    return p


def _refuse_empty_tensors(gen, spec: str) -> None:
    """A weight with a zero-sized dimension (a damaged or hand-made file) would fail deep inside a forward
    pass; refuse it when the generator loads. (Buffers may be empty by design, e.g. a GANsformer's label.)"""
    for name, t in gen.named_parameters():
        if t.numel() == 0:
            raise LatentcompError(
                f"generator {spec}: weight {name} has the shape {tuple(t.shape)}, with a zero-sized "
                "dimension; the file is damaged or was not written for this generator kind"
            )


def load_generator(spec: str, device: str | None = None, **options) -> Generator:
    """Load a frozen generator from a spec `KIND:LOCATION`.

    Kinds: `builtin:NAME` (the bundled toyfaces-dcgan, toyfaces-stylegan2, toyfaces-gansformer; tiny-random
    and tiny-random-stylegan2 for tests), `dcgan:PATH`, `progan:PATH`, `stylegan2:PATH`,
    `stylegan2-ada:PATH`, `gansformer:PATH`, and `python:MODULE_OR_FILE.py:FUNCTION` (runs that code: your
    own generator). `options` go to the kind's loader, e.g. `truncation=0.7` or `noise_mode="random"` for
    StyleGAN2. Unknown kinds, missing files and layouts that do not match raise `LatentcompError` naming
    the file and what was expected. The result is frozen, remembers `spec`, and is moved to `device`."""
    from ..devices import parse_device

    dev = parse_device(device)  # checked before anything loads
    kind, location = split_spec(spec)
    if kind not in _LOADERS:
        importlib.import_module(_KIND_MODULES[kind])
    gen = _LOADERS[kind](location, **options)
    _refuse_empty_tensors(gen, spec)
    gen.spec = spec
    gen.freeze()
    if dev is not None:
        gen.to(dev)
    return gen
