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


def test_batch_sizes_to_try_stay_below_n_and_include_n():
    bench = _bench()
    assert bench.chunk_sizes((5, 10, 25, 50), 200) == [5, 10, 25, 50, 200]
    assert bench.chunk_sizes((50, 5, 10, 25), 16) == [5, 10, 16]
    assert bench.chunk_sizes((5, 10), 5) == [5]


def test_optimisation_in_batches_follows_the_same_trajectories():
    """The bench times optimisation in the batch size that is fastest for it: that is only fair if each
    image's path does not depend on the batch it is optimised in."""
    import torch

    from latentcomp import load_generator
    from latentcomp.edit import Pipeline
    from latentcomp.regressors import build_regressor

    bench = _bench()
    G = load_generator("builtin:tiny-random-stylegan2")
    torch.manual_seed(0)
    pipe = Pipeline(G, build_regressor(G))
    x, m = bench.targets(pipe, 6)
    whole = pipe.optimize(x, m, steps=4, track=True).history
    opt = bench.measure_optimisation(pipe, x, m, 6, budget=1e9, max_steps=4, opt_lr=None, chunks=[2, 6])
    assert opt["chunk"] in (2, 6) and set(opt["step_seconds_by_chunk"]) == {2, 6}
    assert opt["history"].shape == whole.shape == (5, 6)
    assert torch.allclose(opt["history"], whole, atol=1e-5)
    in_pairs = torch.cat(
        [pipe.optimize(xc, mc, steps=4, track=True).history for xc, mc in bench.batches(x, m, 2)], 1
    )
    assert torch.allclose(in_pairs, whole, atol=1e-5)
    assert not torch.equal(whole[0], whole[-1])  # it did optimise
