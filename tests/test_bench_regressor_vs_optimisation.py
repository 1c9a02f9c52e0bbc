"""The regressor-vs-optimisation benchmark's choice of best variant (its figures are measured, not tested)."""

import importlib.util
import math
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_regressor_vs_optimisation.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_regressor_vs_optimisation", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_unreached_median_ranks_by_its_lower_bound():
    bench = _bench()
    measured = {"speedup_median": 115.0, "speedup_lower_bound_unreached": 310.0}
    unreached = {"speedup_median": math.inf, "speedup_lower_bound_unreached": 92.0}
    assert bench.best_variant({"compile": measured, "compile + bf16 E": unreached}) == "compile"
    unreached_high = {"speedup_median": math.inf, "speedup_lower_bound_unreached": 140.0}
    assert bench.best_variant({"compile": measured, "compile + bf16 E": unreached_high}) == "compile + bf16 E"
