"""Metrics: the toyfaces analyzer and (beside it) image / distribution metrics.

Imports are lazy so that `import latentcomp.metrics` stays light; add a name to `_LAZY` to export it.
"""

from __future__ import annotations

import importlib

# public name -> module (relative to this package) that defines it
_LAZY = {
    "Analyzer": ".analyzer",
    "AnalyzerOutput": ".analyzer",
    "load_analyzer": ".analyzer",
    "train_analyzer": ".analyzer",
    "evaluate_analyzer": ".analyzer",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
