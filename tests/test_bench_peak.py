"""The compose benchmark's "of fp32 peak": a peak over several sizes, measured per thread count between
the variants, and a variant that beats it flagged instead of printed as more than 100%."""

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import bench_compose
    import common

    yield common, bench_compose
    for name in ("bench_compose", "common"):
        sys.modules.pop(name, None)


def test_peak_is_the_best_over_sizes(bench, monkeypatch):
    common, _ = bench
    rate = common.matmul_peak(1, sizes=(64, 128), seconds=0.05)
    assert rate > 0
    single = [common.matmul_peak(1, n=64, seconds=0.02), common.matmul_peak(1, n=128, seconds=0.02)]
    assert all(r > 0 for r in single)
    peaks = common.Peaks(2, seconds=0.02, bf16=False)
    monkeypatch.setattr(common, "matmul_peak", lambda t, dtype, seconds: 10.0 * t)
    peaks.measure(threads=1)
    assert set(peaks.samples) == {"fp32_1t"}  # only the thread count asked for, no bf16 without units
    peaks.measure()
    assert set(peaks.samples) == {"fp32_1t", "fp32_2t"} and len(peaks.samples["fp32_1t"]) == 2


def test_a_variant_faster_than_the_peak_is_flagged(bench):
    common, bench_compose = bench

    class FakePeaks:
        threads = 2

        def best(self, dtype="fp32", threads=None):
            return 100e9 if threads == 2 else 50e9

        def to_dict(self):
            return {"fp32_2t": {"best_gflop_s": 100.0}, "fp32_1t": {"best_gflop_s": 50.0}}

    variant = {"batch": 8, "latency_p50_ms": 1.0, "latency_p95_ms": 1.0}
    out = {
        "threads": 2,
        "models": [
            {
                "model": "m",
                "gflop_per_image": 1.0,
                "variants": {
                    "fp32": {**variant, "images_per_s": 49.0},  # 49 GFLOP/s of 100
                    "channels_last-1thread": {**variant, "images_per_s": 50.3},  # 50.3 of 50: beats it
                },
                "pipeline_compose": {"latency_p50_ms": 1.0, "latency_p95_ms": 1.0},
            }
        ],
    }
    bench_compose.add_fractions(out, FakePeaks())
    v = out["models"][0]["variants"]
    assert v["fp32"]["fraction_of_fp32_peak"] == pytest.approx(0.49) and not v["fp32"]["above_fp32_peak"]
    assert v["channels_last-1thread"]["above_fp32_peak"]
    assert out["above_peak"] == ["m channels_last-1thread"]
    _, rows = bench_compose.table(out)
    cells = {r[1]: r[9] for r in rows}
    assert cells["fp32"] == "49.0%" and cells["channels_last-1thread"] == ">peak (100.6%)"
