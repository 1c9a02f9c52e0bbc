"""Run every benchmark side by side, write benchmarks/results.json and print the tables (`make bench`).

    python benchmarks/run_all.py            # full run (25 min on 2 idle AVX2 cores without bf16 units)
    python benchmarks/run_all.py --quick    # smoke run (tiny sizes, a minute or two)
    python benchmarks/run_all.py --only compose,toyfaces --json /tmp/r.json

Benchmarks: compose (bench_compose.py), regressor vs optimisation (bench_regressor_vs_optimisation.py),
regressor training throughput (bench_regressor_train.py, called as a script: one process and 2-process
DDP), peak memory (bench_memory.py), toyfaces rendering (bench_toyfaces.py). The machine (cores, CPU,
load average, busy processes) and its fp32 / bf16 matmul rates are recorded in the same run, so that
ratios hold even on a noisy machine. A benchmark that fails is recorded with its error; the others go on.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_compose  # noqa: E402
import bench_memory  # noqa: E402
import bench_regressor_vs_optimisation  # noqa: E402
import bench_toyfaces  # noqa: E402
import common  # noqa: E402

ORDER = ("toyfaces", "compose", "regressor_vs_optimisation", "regressor_train", "memory")
RVO_MODELS = ("toyfaces", "toyfaces-stylegan2")


def regressor_train(quick: bool, threads: int) -> dict:
    """bench_regressor_train.py (owned by the regressor helper), called as a script with --json: one
    process with `threads` threads and 2-process DDP (one thread each); with threads > 1 also one
    process with one thread, which is what a busy machine favours."""
    script = common.HERE / "bench_regressor_train.py"
    if not script.is_file():
        return {"error": f"{script.name} not found"}
    size = ["--steps", "2", "--warmup", "1", "--batch", "8"] if quick else ["--steps", "8", "--warmup", "2"]
    runs = [["--threads", str(threads)]]
    if threads > 1:
        runs.append(["--threads", "1", "--no-ddp"])
    merged: dict = {"rows": [], "matmul_gflop_s_by_threads": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for k, extra in enumerate(runs):
            out = os.path.join(tmp, f"train{k}.json")
            err = common.run_script(
                [str(script), "--json", out, *extra, *size], timeout=600 if quick else 900
            )
            if err is not None or not os.path.exists(out):
                merged.setdefault("errors", []).append(err or "no JSON written")
                continue
            with open(out) as f:
                res = json.load(f)
            merged["matmul_gflop_s_by_threads"][extra[1]] = res.get("matmul_gflop_s")
            merged["rows"] += res.get("rows", [])
    if not merged["rows"]:
        return {"error": "; ".join(merged.get("errors", ["no rows"]))[:400]}
    return merged


def regressor_train_table(res: dict) -> tuple[list[str], list[list[str]]]:
    header = [
        "generator",
        "processes",
        "threads",
        "batch",
        "img/s",
        "s/step",
        "GFLOP/step",
        "GFLOP/s",
        "of fp32 peak (same threads)",
    ]
    if "error" in res:
        return header, [["-", "-", "-", "-", res["error"][:80], "", "", "", ""]]
    rows = []
    for r in res.get("rows", []):
        frac = r.get("fraction_of_run_fp32_peak", r.get("fraction_of_matmul_peak"))
        rows.append(
            [
                r["generator"],
                str(r["processes"]),
                str(r["threads"]),
                str(r["batch"]),
                common.fmt(r["images_per_s"]),
                common.fmt(r["step_s"], ".3f"),
                common.fmt(r["gflop_per_step"], ".2f"),
                common.fmt(r["achieved_gflop_s"]),
                common.fmt_fraction(frac, r.get("above_fp32_peak", False)),
            ]
        )
    return header, rows


def finalize(results: dict, peaks: common.Peaks) -> None:
    """Fractions of the best matmul rates of the whole run (same thread count as each measurement)."""
    b = results["benchmarks"]
    if "compose" in b and "models" in b["compose"]:
        bench_compose.add_fractions(b["compose"], peaks)
    for r in b.get("regressor_train", {}).get("rows", []):
        t = 1 if r.get("threads") == 1 else peaks.threads
        f = common.fraction_of_peak(r["achieved_gflop_s"] * 1e9, peaks.best("fp32", t))
        r["fraction_of_run_fp32_peak"], r["above_fp32_peak"] = f["fraction"], f["above_peak"]
    results["matmul_peaks"] = peaks.to_dict()


def regressor_vs_optimisation(quick: bool, threads: int, compile_variant: bool) -> dict:
    """Both bundled 64 px pipelines with a single w / z (DCGAN, StyleGAN2); the quick run only the first."""
    models = RVO_MODELS[:1] if quick else RVO_MODELS
    return {
        "models": [
            bench_regressor_vs_optimisation.run(
                quick, model=m, threads=threads, compile_variant=compile_variant
            )
            for m in models
        ]
    }


def print_all(results: dict) -> None:
    m = results["machine"]
    print(f"\nmachine: {common.machine_line(m)}")
    print(
        f"matmul rate (best of this run over sizes {', '.join(map(str, common.PEAK_SIZES))}), GFLOP/s: "
        + ", ".join(f"{k} {v['best_gflop_s']:.1f}" for k, v in results["matmul_peaks"].items())
    )
    b = results["benchmarks"]
    if "compose" in b and "error" not in b["compose"]:
        common.print_table("1. compose: E + G (* = fastest variant)", *bench_compose.table(b["compose"]))
    if "regressor_vs_optimisation" in b and "error" not in b["regressor_vs_optimisation"]:
        for r in b["regressor_vs_optimisation"]["models"]:
            common.print_table(
                f"2. regressor vs optimisation: {r['model']}", *bench_regressor_vs_optimisation.table(r)
            )
            common.print_table(
                f"2b. same time per image: {r['model']}", *bench_regressor_vs_optimisation.refine_table(r)
            )
    if "regressor_train" in b:
        common.print_table("3. regressor training throughput", *regressor_train_table(b["regressor_train"]))
    if "memory" in b and "error" not in b["memory"]:
        common.print_table("4. peak memory", *bench_memory.table(b["memory"]))
    if "toyfaces" in b:
        common.print_table("5. toyfaces rendering", *bench_toyfaces.table(b["toyfaces"]))
    notes = [f"{k}: {v['error']}" for k, v in b.items() if isinstance(v, dict) and "error" in v]
    above = b.get("compose", {}).get("above_peak") or []
    if above:
        notes.append("compose: faster than the measured fp32 matmul peak (so it is underestimated): "
                     + ", ".join(above))
    for k in ("compose", "regressor_vs_optimisation"):
        v = b.get(k, {})
        for entry in v.get("models", [v]) if isinstance(v, dict) else []:
            if isinstance(entry, dict) and entry.get("note"):
                notes.append(f"{k}: {entry['note']}")
    if notes:
        print("\nnotes:")
        for n in dict.fromkeys(notes):
            print(f"- {n}")
    print(f"\ntotal {results['seconds']:.0f} s; figures in {results['json']}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    common.add_common_args(ap)
    ap.add_argument("--only", help=f"comma-separated subset of {','.join(ORDER)}")
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile variant")
    args = ap.parse_args()
    only = [s.strip() for s in args.only.split(",")] if args.only else list(ORDER)
    unknown = [s for s in only if s not in ORDER]
    if unknown:
        ap.error(f"unknown benchmark(s) {unknown}; choose from {', '.join(ORDER)}")
    out = args.json or str(common.HERE / ("results_quick.json" if args.quick else "results.json"))
    threads = args.threads or common.cores()
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    results: dict = {
        "quick": args.quick,
        "threads": threads,
        "machine": common.machine(),
        "json": out,
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "benchmarks": {},
    }
    previous = Path(out)
    if previous.is_file():  # single-benchmark runs the docs cite stay in the one results file
        kept = {k: v for k, v in json.loads(previous.read_text()).items() if k.startswith("separate_runs")}
        results.update(kept)
    peaks = common.Peaks(threads)
    peaks.measure()
    common.log(f"machine: {common.machine_line(results['machine'])}")
    jobs = {
        "toyfaces": lambda: bench_toyfaces.run(args.quick),
        "compose": lambda: bench_compose.run(args.quick, threads, not args.no_compile, peaks=peaks),
        "regressor_vs_optimisation": lambda: regressor_vs_optimisation(
            args.quick, threads, not args.no_compile
        ),
        "regressor_train": lambda: regressor_train(args.quick, threads),
        "memory": lambda: bench_memory.run(args.quick),
    }
    for name in ORDER:
        if name not in only:
            continue
        common.log(f"== {name}")
        t = time.perf_counter()
        try:
            res = jobs[name]()
        except Exception as e:  # noqa: BLE001 - record and go on with the other benchmarks
            traceback.print_exc()
            res = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
        torch.set_num_threads(threads)
        res["seconds"] = round(time.perf_counter() - t, 1)
        results["benchmarks"][name] = res
        peaks.measure()
        results["matmul_peaks"] = peaks.to_dict()
        common.write_json(out, results)  # partial results survive an interrupted run
    finalize(results, peaks)
    results["seconds"] = time.perf_counter() - t0
    results["load_at_end"] = common.other_load()
    common.write_json(out, results)
    print_all(results)


if __name__ == "__main__":
    main()
