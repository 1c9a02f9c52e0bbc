"""Regressor vs optimisation: how much longer latent optimisation needs to match one regressor pass.

    python benchmarks/bench_regressor_vs_optimisation.py [--quick] [--n 200] [--model toyfaces]

Inputs: n samples of the model's generator (x = G(z), z from its prior, seed 0), hidden by masks of the
paper's sampler (`latentcomp.masks.noise_masks`). Each method runs over the n inputs in batches of the size
that is fastest for it, tried side by side (`--batch-sizes`, and all n at once; the ratio with both in one
batch of n is printed too). Figures:
- regressor: time of G(E(x * m, m)) per image, and its masked L1 on the known pixels (per image);
- optimisation only (`Pipeline.optimize`: Adam from the generator's mean latent, the applications' refine
  objective from `latentcomp.edit.refine`): the masked L1 after every step; for each image the first step
  at which it is <= the regressor's error; time to reach = steps x time per step per image;
  speed-up = that time / the regressor's time per image (target >= 100x), with E + G timed as its best
  call and, like for like with the step's long-run mean, as its median call;
- regressor + N refinement steps (`Pipeline.refine`) vs optimisation only given the same time per image:
  mean masked L1 of both.
Variants, side by side: eager; then with `Pipeline.compile(freeze=False)` (E and G under torch.compile
for both methods, so the comparison stays like for like; compile time not counted); with `--freeze`,
compiled with freezing (`Pipeline.compile(freeze=True)`): the graphs run without grad, i.e. the
regressor's E + G, fold the weights in as constants. The optimisation's steps need grad through G (and E,
in the objective's latent term), which freezing cannot serve, so they run the same graphs as in the pass
before. Off by default: freezing speeds E + G at small batches, not at the batch sizes this bench picks
(figures in docs/benchmarks.md). With `--int8`, the compiled pipeline with E as an int8 copy
(`Pipeline.set_regressor_precision("int8")`): it serves E's calls without grad, i.e. the regressor's pass
and the objective's anchor E(x, m); the objective's latent term needs E's gradient and runs the fp32 E, as
int8 kernels have no backward. Off by default: it adds minutes, and its gain stayed within the spread
between runs (E + G 10-13% faster, the regressor's error 1-5% higher; docs/benchmarks.md). Then the
compiled pipeline with E under bf16 autocast (`Pipeline.set_regressor_precision("bf16")`), again in both
methods: the objective's latent term runs E at every optimisation step. G stays fp32. The bf16 pass runs
only where the CPU has bf16 units (`--bf16` forces it): emulated, it slows both methods' E several-fold.
`--no-eager` / `--no-compile` / `--no-bf16` skip those passes.
Without the bundled models, a small regressor for `builtin:tiny-random-stylegan2` is trained for a few
steps first (printed note), so that the regressor's error means something.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

TARGET = 100.0
# batch sizes tried for each method (besides all n inputs at once): on a CPU the fastest is rarely the
# largest (caches), and it differs between E + G and an optimisation step
DEFAULT_BATCH_SIZES = (5, 10, 25, 50)


def load_pipeline(name: str, quick: bool):
    from latentcomp.edit.pipeline import Pipeline
    from latentcomp.errors import LatentcompError

    try:
        return Pipeline.from_pretrained(name), ""
    except LatentcompError:
        pass
    from latentcomp.regressors import load_regressor
    from latentcomp.training.regressor import TrainConfig, train_regressor

    spec = "builtin:tiny-random-stylegan2"
    steps = 20 if quick else 300
    common.log(
        f"[reg-vs-opt] bundled {name!r} not installed: training a regressor for {spec} ({steps} steps)"
    )
    with tempfile.TemporaryDirectory() as out:
        cfg = TrainConfig(
            generator=spec,
            out=out,
            steps=steps,
            batch=16,
            lr=1e-3,
            lpips="none",
            eval_every=steps,
            test_size=16,
            tensorboard=False,
            progress=False,
            device="cpu",
        )
        train_regressor(cfg)
        E = load_regressor(out)
    pipe = Pipeline(E.load_generator(), E)
    note = (
        f"bundled '{name}' not installed: {spec} (32px, random weights) with a regressor trained here for "
        f"{steps} steps (batch 16, no LPIPS)"
    )
    return pipe, note


def targets(pipe, n: int, seed: int = 0):
    from latentcomp.masks import noise_masks

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        x = pipe.sample(n, seed=seed)
    m = noise_masks(n, pipe.resolution, generator=g)
    return x * m, m


def chunk_sizes(requested, n: int) -> list[int]:
    """The batch sizes to try: the requested ones below n, and n itself (one batch)."""
    return sorted({c for c in requested if 0 < c < n} | {n})


def batches(x, m, chunk: int):
    return list(zip(x.split(chunk), m.split(chunk), strict=True))


def measure_regressor(pipe, x, m, n: int, chunks: list[int]) -> dict:
    """E + G over all n inputs, in batches of each size in `chunks`; each timed as best of 5 (after 2
    warm-up calls: a compiled E may recompile on its second call). The fastest batch size counts; its
    masked L1 on the known pixels is the error to reach."""
    from latentcomp.edit.refine import masked_l1

    def regress(chunk):
        with torch.no_grad():
            return torch.cat([pipe.generate(pipe.invert(xc, mc)) for xc, mc in batches(x, m, chunk)])

    times, cpu_seconds = {}, {}  # per batch size: wall time of each call; CPU seconds per image
    for chunk in chunks:
        regress(chunk)
        regress(chunk)
        c0 = time.process_time()
        times[chunk] = common.time_calls(lambda c=chunk: regress(c), 5, warmup=0)
        cpu_seconds[chunk] = (time.process_time() - c0) / (len(times[chunk]) * n)
    seconds_by_chunk = {c: min(t) / n for c, t in times.items()}
    best = min(seconds_by_chunk, key=seconds_by_chunk.get)
    return {
        "seconds": seconds_by_chunk[best],
        "cpu_seconds": cpu_seconds[best],
        # the optimisation's time is the mean of one long run: the median call shows how much "best of"
        # favours the regressor on a noisy machine
        "median_seconds": statistics.median(times[best]) / n,
        "error": masked_l1(regress(best), x, m).cpu(),
        "chunk": best,
        "seconds_by_chunk": seconds_by_chunk,
    }


TRIAL_IMAGES = 20  # the optimisation's batch-size trials use at least this many inputs (noise)


def measure_optimisation(
    pipe, x, m, n: int, budget: float, max_steps: int, opt_lr: float | None, chunks: list[int]
) -> dict:
    """Optimisation only. A trial per batch size (2 warm-up steps, then the time of 8 steps minus that of 2
    on >= TRIAL_IMAGES inputs) picks the fastest batch size and the step count that fits the budget; the
    tracked run then optimises all n inputs in batches of that size. Each image's trajectory does not
    depend on its batch (per-image losses, Adam per coordinate)."""

    def optimise(chunk, images, steps, track=False):
        return [
            pipe.optimize(xc, mc, steps=steps, lr=opt_lr, track=track)
            for xc, mc in batches(x[:images], m[:images], chunk)
        ]

    by_chunk = {}
    for chunk in chunks:
        images = min(n, chunk * math.ceil(TRIAL_IMAGES / chunk))
        optimise(chunk, images, 2)  # warm-up (and compilation)
        short = sum(r.seconds for r in optimise(chunk, images, 2))
        long = sum(r.seconds for r in optimise(chunk, images, 8))
        by_chunk[chunk] = max(long - short, 1e-9) / 6 / images
    best = min(by_chunk, key=by_chunk.get)
    steps = int(max(2, min(max_steps, budget / (by_chunk[best] * n))))
    common.log(
        f"[reg-vs-opt] {n} inputs, optimisation {steps} steps in batches of {best} "
        f"(~{by_chunk[best] * n:.2f} s/step for all)"
    )
    c0 = time.process_time()
    runs = optimise(best, n, steps, track=True)
    seconds = sum(r.seconds for r in runs)
    return {
        "steps": steps,
        "history": torch.cat([r.history for r in runs], dim=1),  # (steps + 1, n)
        "step_seconds": seconds / steps / n,  # per step, per image
        "step_cpu_seconds": (time.process_time() - c0) / steps / n,
        "perceptual_used": bool(runs[0].perceptual_used),
        "chunk": best,
        "step_seconds_by_chunk": by_chunk,
    }


def compare(pipe, x, m, n: int, reg: dict, opt: dict, refine_steps: tuple[int, ...]) -> dict:
    """Speed-ups of the regressor over optimisation to its error, and regressor + N refinement steps vs
    optimisation only given the same time per image."""
    t_reg, cpu_reg, err_reg = reg["seconds"], reg["cpu_seconds"], reg["error"]
    steps, hist, step_s, cpu_step = opt["steps"], opt["history"], opt["step_seconds"], opt["step_cpu_seconds"]
    reached = hist <= err_reg.unsqueeze(0)
    first = torch.where(reached.any(0), reached.float().argmax(0), torch.full((n,), -1)).tolist()
    ratios = [(k * step_s) / t_reg if k >= 0 else math.inf for k in first]
    finite = sorted(r for r in ratios if math.isfinite(r))
    n_reached = len(finite)
    median = statistics.median(ratios) if n_reached * 2 > n else math.inf
    lower_bound = steps * step_s / t_reg  # for images that never reached it
    # the same ratio in CPU time (process time, all threads): less sensitive to other processes' load
    cpu_ratios = [k * cpu_step / cpu_reg if k >= 0 else math.inf for k in first]
    cpu_median = statistics.median(cpu_ratios) if n_reached * 2 > n else math.inf

    # both methods in one batch of all n inputs (the figure before batch sizes were tried): the tracked
    # run's step time, scaled by the trials' cost of a step in one batch vs in the chosen batch size
    trial = opt["step_seconds_by_chunk"]
    step_one_batch = step_s * trial[n] / trial[opt["chunk"]]
    reg_one_batch = reg["seconds_by_chunk"][n]
    one_batch = [k * step_one_batch / reg_one_batch if k >= 0 else math.inf for k in first]

    refine = []
    for k in refine_steps:
        runs = [pipe.refine(xc, mc, steps=k) for xc, mc in batches(x, m, opt["chunk"])]
        t_total = t_reg + sum(r.seconds for r in runs) / n
        k_opt = min(steps, int(t_total / step_s))
        refine.append(
            {
                "refine_steps": k,
                "seconds_per_image": t_total,
                "regressor_refine_l1": float(torch.cat([r.known_l1 for r in runs]).mean()),
                "optimisation_steps_same_time": k_opt,
                "optimisation_l1_same_time": float(hist[k_opt].mean()),
                "optimisation_time_covered": k_opt == int(t_total / step_s),
            }
        )
    return {
        "regressor_precision": pipe.regressor_precision,
        "perceptual_term_used": opt["perceptual_used"],
        "regressor_ms_per_image": t_reg * 1e3,
        "regressor_ms_per_image_median_call": reg["median_seconds"] * 1e3,
        "regressor_batch": reg["chunk"],
        "regressor_ms_per_image_by_batch": {c: t * 1e3 for c, t in reg["seconds_by_chunk"].items()},
        "regressor_l1_mean": float(err_reg.mean()),
        "optimisation_steps": steps,
        "optimisation_ms_per_step_per_image": step_s * 1e3,
        "optimisation_batch": opt["chunk"],
        "optimisation_trial_ms_per_step_per_image_by_batch": {
            c: t * 1e3 for c, t in opt["step_seconds_by_chunk"].items()
        },
        "optimisation_l1_final_mean": float(hist[-1].mean()),
        "median_steps_to_regressor_error": statistics.median(k if k >= 0 else math.inf for k in first),
        "reached_regressor_error": n_reached,
        "speedup_median": median,
        "speedup_p10": common.percentile(finite, 10) if finite else math.inf,
        "speedup_median_one_batch": statistics.median(one_batch) if n_reached * 2 > n else math.inf,
        # E + G at its median call instead of its best: like for like with the optimisation's step time,
        # which is the mean of one long run (best-of favours the regressor on a noisy machine)
        "speedup_median_regressor_median_call": median * t_reg / reg["median_seconds"],
        "speedup_lower_bound_unreached_regressor_median_call": lower_bound * t_reg / reg["median_seconds"],
        "speedup_lower_bound_unreached_one_batch": steps * step_one_batch / reg_one_batch,
        "speedup_lower_bound_unreached": lower_bound,
        "regressor_cpu_ms_per_image": cpu_reg * 1e3,
        "optimisation_cpu_ms_per_step_per_image": cpu_step * 1e3,
        "speedup_median_cpu_time": cpu_median,
        "speedup_lower_bound_unreached_cpu_time": steps * cpu_step / cpu_reg,
        "meets_target": (median >= TARGET) if math.isfinite(median) else lower_bound >= TARGET,
        "refine": refine,
    }


def run(
    quick: bool = False,
    n: int = 200,
    model: str = "toyfaces",
    threads: int = 0,
    steps: int = 0,
    opt_budget_s: float = 0.0,
    refine_steps: tuple[int, ...] = (10, 30),
    compile_variant: bool = True,
    opt_lr: float | None = None,
    bf16_variant: bool | None = None,
    batch_sizes: tuple[int, ...] = DEFAULT_BATCH_SIZES,
    eager_variant: bool = True,
    freeze_variant: bool = False,
    int8_variant: bool = False,
    iterations: int | None = None,
) -> dict:
    """Eager, then (unless quick or disabled) the same pipeline compiled (`Pipeline.compile(freeze=False)`),
    then (if asked) compiled with its no-grad graphs frozen (E + G only), then (if asked) with E as an int8
    copy, then with E in bf16 (`bf16_variant`; None: where the CPU has bf16 units). Compiling and bf16
    apply to the regressor's E + G and to the optimisation's steps alike; freezing can only apply to E + G
    (see the module's doc), int8 to E's calls without grad. Each method runs at its fastest of
    `batch_sizes` (and n)."""
    if bf16_variant is None:
        # emulated bf16 slows both methods' E several-fold and says nothing about a CPU that has the units
        bf16_variant = common.native_bf16()
        if not bf16_variant:
            common.log("[reg-vs-opt] skipping the bf16 E variant: no bf16 units here (--bf16 forces it)")
    threads = threads or common.cores()
    torch.set_num_threads(threads)
    if quick:
        n = min(n, 16)
        refine_steps = refine_steps[:1]
    pipe, note = load_pipeline(model, quick)
    pipe.set_iterations(iterations)  # passes of an iterative regressor (None: its default)
    if note:
        print(f"note: {note}", file=sys.stderr)
    x, m = targets(pipe, n)
    budget = opt_budget_s or (10.0 if quick else 120.0)
    max_steps = steps or (20 if quick else 400)
    chunks = chunk_sizes(batch_sizes, n)

    def variant():
        reg = measure_regressor(pipe, x, m, n, chunks)
        opt = measure_optimisation(pipe, x, m, n, budget, max_steps, opt_lr, chunks)
        return compare(pipe, x, m, n, reg, opt, refine_steps)

    variants = {"eager": variant()} if eager_variant or quick else {}
    # one static graph per batch size and grad mode (and autocast for the bf16 pass): allow them all
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 8 * len(chunks))
    compiled = (("compile", False, compile_variant), ("compile + freeze", True, freeze_variant))
    for name, freeze, wanted in compiled:
        if not wanted or quick:
            continue
        common.log(f"[reg-vs-opt] {name} (torch.compile of E and G, freeze={freeze}; compile not timed)")
        torch._dynamo.reset()  # a graph compiled before would be reused, frozen or not
        t0 = time.perf_counter()
        pipe.compile(dynamic=False, freeze=freeze)
        variants[name] = variant()
        variants[name]["seconds_including_compile"] = time.perf_counter() - t0
    if int8_variant:
        common.log("[reg-vs-opt] E as an int8 copy for its calls without grad (G fp32)")
        pipe.set_regressor_precision("int8")
        variants["compile + int8 E" if pipe.compiled else "int8 E"] = variant()
    if bf16_variant:
        # E runs in bf16 in both methods: the objective's latent term calls it at every optimisation step
        common.log("[reg-vs-opt] E under bf16 autocast in both methods (G fp32)")
        pipe.set_regressor_precision("bf16")
        variants["compile + bf16 E" if pipe.compiled else "bf16 E"] = variant()
    return {
        "model": model,
        "regressor_passes": pipe.iterations or getattr(pipe.regressor, "iterations", 1),
        "note": note,
        "n": n,
        "batch_sizes": chunks,
        "resolution": pipe.resolution,
        "threads": threads,
        "space": pipe.space,
        "optimisation_lr": opt_lr or 0.05,  # Pipeline.optimize's default
        "target_speedup": TARGET,
        "variants": variants,
        "best_variant": best_variant(variants),
        "meets_target": any(v["meets_target"] for v in variants.values()),
    }


def best_variant(variants: dict) -> str:
    """The variant with the highest proven speed-up: its median, or where fewer than half of the inputs
    reached the regressor's error within the budget (median infinite) the lower bound, all that it proves."""

    def proven(v: dict) -> float:
        median = v["speedup_median"]
        return median if math.isfinite(median) else v["speedup_lower_bound_unreached"]

    return max(variants, key=lambda k: proven(variants[k]))


def _speedup_cell(value: float, lower_bound: float) -> str:
    """A median speed-up, or "> bound" where fewer than half of the inputs reached the regressor's error."""
    return common.fmt(value, ".0f") + "x" if math.isfinite(value) else f"> {lower_bound:.0f}x"


def table(res: dict) -> tuple[list[str], list[list[str]]]:
    header = [
        "model",
        "variant",
        "n",
        "regressor ms/img (batch)",
        "regressor L1",
        "opt steps",
        "opt ms/step/img (batch)",
        "reached",
        "median steps",
        "speed-up (median)",
        "speed-up (E + G median call)",
        "speed-up (CPU time)",
        "speed-up (one batch of n)",
        "target",
    ]
    rows = []
    for name, v in res["variants"].items():
        rows.append(
            [
                res["model"],
                name,
                str(res["n"]),
                f"{common.fmt(v['regressor_ms_per_image'], '.2f')} ({v['regressor_batch']})",
                common.fmt(v["regressor_l1_mean"], ".4f"),
                str(v["optimisation_steps"]),
                f"{common.fmt(v['optimisation_ms_per_step_per_image'], '.2f')} ({v['optimisation_batch']})",
                f"{v['reached_regressor_error']}/{res['n']}",
                common.fmt(v["median_steps_to_regressor_error"], ".0f"),
                _speedup_cell(v["speedup_median"], v["speedup_lower_bound_unreached"]),
                _speedup_cell(
                    v["speedup_median_regressor_median_call"],
                    v["speedup_lower_bound_unreached_regressor_median_call"],
                ),
                _speedup_cell(v["speedup_median_cpu_time"], v["speedup_lower_bound_unreached_cpu_time"]),
                _speedup_cell(v["speedup_median_one_batch"], v["speedup_lower_bound_unreached_one_batch"]),
                f">= {TARGET:.0f}x ({'met' if v['meets_target'] else 'MISSED'})",
            ]
        )
    return header, rows


def refine_table(res: dict) -> tuple[list[str], list[list[str]]]:
    header = ["variant", "method", "ms/img", "masked L1 (known pixels)"]
    rows = []
    for name, v in res["variants"].items():
        rows.append(
            [
                name,
                "regressor",
                common.fmt(v["regressor_ms_per_image"], ".2f"),
                common.fmt(v["regressor_l1_mean"], ".4f"),
            ]
        )
        for r in v["refine"]:
            ms = common.fmt(r["seconds_per_image"] * 1e3, ".2f")
            rows.append(
                [
                    name,
                    f"regressor + {r['refine_steps']} refine steps",
                    ms,
                    common.fmt(r["regressor_refine_l1"], ".4f"),
                ]
            )
            rows.append(
                [
                    name,
                    f"optimisation only, same time ({r['optimisation_steps_same_time']} steps)",
                    ms,
                    common.fmt(r["optimisation_l1_same_time"], ".4f"),
                ]
            )
    return header, rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    common.add_common_args(ap)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--model", default="toyfaces", help="toyfaces, toyfaces-stylegan2 or a regressor run")
    ap.add_argument("--steps", type=int, default=0, help="max optimisation steps (0: 400, fit to --budget)")
    ap.add_argument("--budget", type=float, default=0.0, help="seconds for each optimisation run")
    ap.add_argument("--no-eager", action="store_true", help="skip the eager variant")
    ap.add_argument("--no-compile", action="store_true", help="skip the compiled variant without freezing")
    ap.add_argument("--freeze", action="store_true", help="add a compiled variant with frozen E + G graphs")
    ap.add_argument("--int8", action="store_true", help="add a variant with an int8 copy of E (CPU)")
    ap.add_argument("--no-bf16", action="store_true", help="skip the variant with E under bf16 autocast")
    ap.add_argument("--bf16", action="store_true", help="run the bf16 variant even without bf16 units")
    ap.add_argument(
        "--batch-sizes",
        default=",".join(map(str, DEFAULT_BATCH_SIZES)),
        help="comma-separated batch sizes to try for each method, besides all --n inputs at once",
    )
    ap.add_argument("--opt-lr", type=float, default=None, help="Adam lr of optimisation only (default 0.05)")
    ap.add_argument("--iterations", type=int, default=None, help="passes of an iterative regressor")
    args = ap.parse_args()
    try:
        batch_sizes = tuple(int(b) for b in args.batch_sizes.split(",") if b.strip())
    except ValueError:
        ap.error(f"--batch-sizes: expected comma-separated integers, got {args.batch_sizes!r}")
    if any(b < 1 for b in batch_sizes):
        ap.error(f"--batch-sizes: sizes must be >= 1, got {args.batch_sizes!r}")
    if args.bf16 and args.no_bf16:
        ap.error("--bf16 and --no-bf16 exclude each other")
    bf16_variant = False if args.no_bf16 else True if args.bf16 else None  # None: where the CPU has units
    t = time.perf_counter()
    machine = common.machine()  # ratios depend on the CPU (e.g. bf16 is emulated without avx512_bf16)
    res = run(
        args.quick,
        args.n,
        args.model,
        args.threads,
        args.steps,
        args.budget,
        compile_variant=not args.no_compile,
        opt_lr=args.opt_lr,
        bf16_variant=bf16_variant,
        batch_sizes=batch_sizes,
        eager_variant=not args.no_eager,
        freeze_variant=args.freeze,
        int8_variant=args.int8,
        iterations=args.iterations,
    )
    common.log(f"optimisation-only Adam lr {res['optimisation_lr']}")
    common.print_table("regressor vs optimisation", *table(res))
    common.print_table("same time per image: regressor + refine vs optimisation", *refine_table(res))
    common.log(f"({time.perf_counter() - t:.0f} s)")
    if args.json:
        common.write_json(args.json, {"machine": machine, **res})


if __name__ == "__main__":
    main()
