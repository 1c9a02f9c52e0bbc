"""Compose speed: E + G throughput (batched), single-image latency, achieved FLOP/s vs the matmul peak.

    python benchmarks/bench_compose.py                 # bundled 64x64 models + ProGAN / StyleGAN2 at 256
    python benchmarks/bench_compose.py --quick         # smoke run (tiny sizes)
    python benchmarks/bench_compose.py --no-compile    # skip the torch.compile variant

Models: the bundled `toyfaces` (DCGAN) and `toyfaces-stylegan2` pipelines (falling back, with a printed
note, to `builtin:tiny-random` / `builtin:tiny-random-stylegan2` with fresh regressors while the bundled
weights are not installed), a GAN Dissect ProGAN and a StyleGAN2 (config-f widths) at 256x256 with random
weights and ResNet-18 regressors (`build_regressor` defaults).

What is timed: the core of compose, `G(E(x * m, m)).clamp(-1, 1)` under no_grad, on noise masks of the
paper's sampler; batched throughput (images/s) and batch-1 latency (p50/p95). The full
`Pipeline.compose` call (input validation, collage, E, G, known-pixel error) is timed at batch 1 as well.
Variants, each measured in the same run: fp32 eager (threads = cores), channels_last, bf16 autocast,
channels_last + bf16, fp32 with one thread, channels_last + bf16 with one thread (the 256 px models skip
channels_last and bf16 alone, to keep the run short); in fresh subprocesses: fp32 with OMP_WAIT_POLICY=PASSIVE
(OpenMP threads sleep at barriers instead of spinning, which matters when other processes compete for the
cores), torch.compile (64 px models only, one thread for the compiler, capped at 300 s: compiling took
2.6 minutes for the StyleGAN2 on the loaded 2-core machine) and torch.compile with inductor's freezing
(weights folded in as constants, as `Pipeline.compile(freeze=True)` does for its no-grad graphs).
The bf16 variants run only where the CPU has bf16 units (AVX512-BF16 or AMX; `--bf16` forces them): on
others torch emulates bf16 at a fraction of the fp32 speed, which made the 256 px models take most of an
hour and measures nothing a user would pick.
"CPU ms/img" is process CPU time per image in the batched run (all threads; spinning counts).
FLOPs per image come from torch.utils.flop_counter.FlopCounterMode (convolutions and matmuls); achieved
FLOP/s = images/s x FLOPs per image, as a fraction of this machine's fp32 (and bf16) matmul peak: the best
rate of square matmuls of several sizes (256-2048), measured before every variant with that variant's thread
count (interleaved, so a busy moment lowers one sample, not the peak). A variant that still beats the peak
is shown as ">peak" and listed in the notes: its percentage would say more about the peak than the variant.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

VARIANTS = (
    "fp32",
    "channels_last",
    "bf16",
    "channels_last+bf16",
    "fp32-1thread",
    "channels_last+bf16-1thread",
)
QUICK_VARIANTS = ("fp32", "channels_last+bf16", "fp32-1thread")
LARGE_VARIANTS = ("fp32", "channels_last+bf16", "fp32-1thread", "channels_last+bf16-1thread")  # 256 px


# ---------------------------------------------------------------------------------------------- models
def build(name: str, quick: bool = False):
    """(G, E, note) for a benchmark model name; deterministic, so a subprocess can rebuild the same."""
    from latentcomp.edit.pipeline import Pipeline
    from latentcomp.errors import LatentcompError
    from latentcomp.regressors import build_regressor

    if name in ("toyfaces", "toyfaces-stylegan2"):
        fallback = "builtin:tiny-random" if name == "toyfaces" else "builtin:tiny-random-stylegan2"
        try:
            pipe = Pipeline.from_pretrained(name)
            return pipe.generator, pipe.regressor, ""
        except LatentcompError:
            from latentcomp import load_generator

            G = load_generator(fallback)
            torch.manual_seed(0)
            E = build_regressor(G).eval()
            note = (
                f"bundled '{name}' not installed: measured {fallback} ({G.resolution}px) "
                "+ an untrained regressor"
            )
            return G, E, note
    res = 32 if quick else 256
    if name == "progan-256":
        from latentcomp.generators.progan import DissectProGANNet, ProGANGenerator

        torch.manual_seed(0)
        widths = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256, 128: 128, 256: 64}
        sizes = [512] + [widths[r] for r in sorted(widths) if r <= res]
        G = ProGANGenerator(DissectProGANNet(sizes), "gan_dissect")
        G.spec = f"(random GAN Dissect ProGAN {res}px)"
    elif name == "stylegan2-256":
        from latentcomp.generators.stylegan2 import StyleGAN2Generator, StyleGAN2Net

        torch.manual_seed(0)
        G = StyleGAN2Generator(StyleGAN2Net(res, style_dim=512, n_mlp=8, channel_multiplier=2))
        G.spec = f"(random StyleGAN2 config-f {res}px)"
    else:
        raise SystemExit(f"unknown benchmark model {name!r}")
    torch.manual_seed(0)
    E = build_regressor(G, backbone="resnet18").eval()
    note = "" if not quick else f"--quick: built at {res}px instead of 256px"
    return G, E, note


def describe(G, E) -> str:
    return (
        f"G {type(G).__name__} {G.channels}x{G.resolution}px; E {E.backbone_name}/{E.space} "
        f"({sum(p.numel() for p in E.parameters()) / 1e6:.1f}M params)"
    )


def inputs(G, n: int, seed: int = 0):
    from latentcomp.masks import noise_masks

    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, G.channels, G.resolution, G.resolution, generator=g) * 2 - 1
    m = noise_masks(n, G.resolution, generator=g)
    return x * m, m


def core(G, E):
    space = E.space

    def f(x, m):
        return G(E(x, m), space=space).clamp(-1, 1)

    return f


def set_memory_format(module: torch.nn.Module, fmt: torch.memory_format) -> None:
    """Like module.to(memory_format=fmt), but only for 4-D tensors (StyleGAN2 keeps 5-D modulated weights)."""
    for t in list(module.parameters()) + list(module.buffers()):
        if t.dim() == 4:
            t.data = t.data.contiguous(memory_format=fmt)


@contextlib.contextmanager
def variant(name: str, G, E, threads: int):
    """Apply a variant's settings to G, E and the thread count; undo them afterwards."""
    cl = "channels_last" in name
    bf16 = "bf16" in name
    old = torch.get_num_threads()
    torch.set_num_threads(1 if name.endswith("1thread") else threads)
    if cl:
        set_memory_format(G, torch.channels_last)
        set_memory_format(E, torch.channels_last)
    try:
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        with ctx, torch.no_grad():
            yield (lambda t: t.contiguous(memory_format=torch.channels_last)) if cl else (lambda t: t)
    finally:
        if cl:
            set_memory_format(G, torch.contiguous_format)
            set_memory_format(E, torch.contiguous_format)
        torch.set_num_threads(old)


# ----------------------------------------------------------------------------------------- measuring
def settings(quick: bool, small: bool) -> dict:
    """Batch, repetitions and time budget (s) per measurement."""
    if quick:
        return {"batch": 4 if small else 2, "reps_batch": 1, "reps_single": 3, "budget": 2.0}
    if small:
        return {"batch": 64, "reps_batch": 3, "reps_single": 15, "budget": 15.0}
    return {"batch": 2, "reps_batch": 2, "reps_single": 3, "budget": 15.0}


def measure(f, G, prep, batch: int, reps_batch: int, reps_single: int, budget: float) -> dict:
    """Batched throughput (best batch), CPU seconds per image, single-image latency p50 / p95."""
    xb, mb = (prep(t) for t in inputs(G, batch, seed=1))
    x1, m1 = (prep(t) for t in inputs(G, 1, seed=2))
    f(xb, mb)  # warm-up
    cpu0 = time.process_time()
    tb = common.time_calls(lambda: f(xb, mb), reps_batch, warmup=0, budget_s=budget)
    cpu = (time.process_time() - cpu0) / (batch * len(tb))
    t1 = common.time_calls(lambda: f(x1, m1), reps_single, warmup=1, budget_s=budget / 2)
    s = common.summary(t1)
    return {
        "batch": batch,
        "images_per_s": batch / min(tb),
        "cpu_ms_per_image": cpu * 1e3,
        "batches_timed": len(tb),
        "latency_p50_ms": s["p50_ms"],
        "latency_p95_ms": s["p95_ms"],
        "latency_n": s["n"],
    }


def run_variant(name: str, G, E, threads: int, cfg: dict, ref: torch.Tensor) -> dict:
    f = core(G, E)
    x1, m1 = inputs(G, 1, seed=2)
    try:
        with variant(name, G, E, threads) as prep:
            r = measure(f, G, prep, **cfg)
            r["max_abs_diff"] = float((f(prep(x1), prep(m1)).float() - ref).abs().max())
    except Exception as e:  # noqa: BLE001 - a variant that does not run is a result too
        r = {"error": f"{type(e).__name__}: {str(e)[:200]}"}
    return r


def pipeline_latency(G, E, reps: int, budget_s: float, threads: int) -> dict:
    from latentcomp.edit.pipeline import Pipeline

    pipe = Pipeline(G, E)
    x, m = inputs(G, 1, seed=3)
    torch.set_num_threads(threads)
    t = common.time_calls(lambda: pipe.compose([x], [m]), reps, warmup=2, budget_s=budget_s)
    s = common.summary(t)
    return {"latency_p50_ms": s["p50_ms"], "latency_p95_ms": s["p95_ms"], "n": s["n"]}


def worker(args) -> None:
    """Subprocess variants: OMP_WAIT_POLICY (set by the parent before torch starts) and torch.compile."""
    threads = args.threads or common.cores()
    torch.set_num_threads(threads)
    G, E, _ = build(args.worker, args.quick)
    cfg = settings(args.quick, G.resolution <= 64)
    x1, m1 = inputs(G, 1, seed=2)
    with torch.no_grad():
        ref = core(G, E)(x1, m1)
    if not args.compile:
        print(json.dumps(run_variant("fp32", G, E, threads, cfg, ref)))
        return
    if args.freeze:
        import torch._inductor.config as inductor_config

        inductor_config.freezing = True  # this process only compiles the timed no-grad function
    f = torch.compile(core(G, E), dynamic=False)
    xb, mb = inputs(G, cfg["batch"], seed=1)
    with torch.no_grad():
        t0 = time.perf_counter()
        f(xb, mb)
        f(x1, m1)
        compile_s = time.perf_counter() - t0
        r = measure(f, G, lambda t: t, **cfg)
        r["max_abs_diff"] = float((f(x1, m1) - ref).abs().max())
    r["compile_s"] = compile_s
    print(json.dumps(r))


def run(
    quick: bool = False,
    threads: int = 0,
    compile_variant: bool = True,
    compile_timeout: float = 300.0,
    models: list[str] | None = None,
    peaks: common.Peaks | None = None,
    bf16: bool | None = None,
) -> dict:
    """`bf16`: run the bf16 variants (None: where the CPU has bf16 units)."""
    threads = threads or common.cores()
    bf16 = common.native_bf16() if bf16 is None else bf16
    torch.set_num_threads(threads)
    peaks = peaks or common.Peaks(threads, bf16=bf16)
    models = models or ["toyfaces", "toyfaces-stylegan2", "progan-256", "stylegan2-256"]
    out = {"threads": threads, "models": []}
    for name in models:
        common.log(f"[compose] {name}")
        peaks.measure()
        G, E, note = build(name, quick)
        if note:
            print(f"note: {note}", file=sys.stderr)
        small = G.resolution <= 64
        cfg = settings(quick, small)
        x1, m1 = inputs(G, 1, seed=2)
        with torch.no_grad():
            flops = common.count_flops(functools.partial(core(G, E), x1, m1))
            ref = core(G, E)(x1, m1)
        entry = {
            "model": name,
            "description": describe(G, E),
            "note": note,
            "resolution": G.resolution,
            "gflop_per_image": flops / 1e9,
            "settings": cfg,
            "variants": {},
        }
        for v in QUICK_VARIANTS if quick else VARIANTS if small else LARGE_VARIANTS:
            if "bf16" in v and not bf16:
                entry["variants"][v] = {"error": "skipped: no bf16 units on this CPU (--bf16 forces it)"}
                continue
            peaks.measure(1 if v.endswith("1thread") else threads)  # interleaved with the variants
            entry["variants"][v] = run_variant(v, G, E, threads, cfg, ref)
            common.log(
                f"  {v}: {entry['variants'][v].get('images_per_s', entry['variants'][v].get('error'))}"
            )
        # variants that need a fresh process: OMP_WAIT_POLICY=PASSIVE (threads sleep instead of spinning at
        # barriers, which matters when other processes compete for the cores) and torch.compile
        base = [os.path.abspath(__file__), "--worker", name, "--threads", str(threads)] + (
            ["--quick"] if quick else []
        )
        first_small = not any(e["resolution"] <= 64 for e in out["models"])
        if not quick or first_small:
            common.log("  fp32-passive (subprocess)")
            entry["variants"]["fp32-passive"] = common.run_json_subprocess(
                base, timeout=900, env={"OMP_WAIT_POLICY": "PASSIVE"}
            )
        if compile_variant and small and not quick:
            for v, flags in (("compile", ["--compile"]), ("compile+freeze", ["--compile", "--freeze"])):
                common.log(f"  {v} (subprocess, capped)")
                entry["variants"][v] = common.run_json_subprocess(
                    base + flags, timeout=compile_timeout, env={"TORCHINDUCTOR_COMPILE_THREADS": "1"}
                )
        elif compile_variant and small and first_small:
            entry["variants"]["compile"] = {"error": "skipped in --quick"}
        ok = {k: v for k, v in entry["variants"].items() if "images_per_s" in v}
        entry["best_variant"] = max(ok, key=lambda k: ok[k]["images_per_s"]) if ok else None
        entry["pipeline_compose"] = pipeline_latency(G, E, cfg["reps_single"], cfg["budget"] / 2, threads)
        out["models"].append(entry)
        del G, E
    peaks.measure()
    add_fractions(out, peaks)
    return out


def add_fractions(out: dict, peaks: common.Peaks) -> None:
    """Achieved FLOP/s and its fraction of the best matmul rate with the variant's own thread count
    (fp32 peak for every variant; bf16 peak as well for the bf16 ones)."""
    out["matmul_peak_gflop_s"] = {k: v["best_gflop_s"] for k, v in peaks.to_dict().items()}
    for entry in out["models"]:
        flops = entry["gflop_per_image"] * 1e9
        for v, r in entry["variants"].items():
            if "images_per_s" not in r:
                continue
            t = 1 if v.endswith("1thread") else out["threads"]
            achieved = r["images_per_s"] * flops
            r["achieved_gflop_s"] = achieved / 1e9
            r["peak_threads"] = t
            f = common.fraction_of_peak(achieved, peaks.best("fp32", t))
            r["fraction_of_fp32_peak"], r["above_fp32_peak"] = f["fraction"], f["above_peak"]
            if "bf16" in v:
                r["fraction_of_bf16_peak"] = achieved / peaks.best("bf16", t)
    out["above_peak"] = [
        f"{e['model']} {v}"
        for e in out["models"]
        for v, r in e["variants"].items()
        if r.get("above_fp32_peak")
    ]


def table(res: dict) -> tuple[list[str], list[list[str]]]:
    header = [
        "model",
        "variant",
        "batch",
        "img/s",
        "CPU ms/img",
        "p50 ms",
        "p95 ms",
        "GFLOP/img",
        "GFLOP/s",
        "of fp32 peak (same threads)",
        "max abs diff",
    ]
    rows = []
    for m in res["models"]:
        for v, r in m["variants"].items():
            mark = " *" if v == m.get("best_variant") else ""
            if "error" in r:
                rows.append([m["model"], v, "-", r["error"][:60]] + [""] * 7)
                continue
            rows.append(
                [
                    m["model"],
                    v + mark,
                    str(r["batch"]),
                    common.fmt(r["images_per_s"]),
                    common.fmt(r.get("cpu_ms_per_image")),
                    common.fmt(r["latency_p50_ms"]),
                    common.fmt(r["latency_p95_ms"]),
                    common.fmt(m["gflop_per_image"], ".3f"),
                    common.fmt(r["achieved_gflop_s"]),
                    common.fmt_fraction(r["fraction_of_fp32_peak"], r.get("above_fp32_peak", False)),
                    common.fmt(r.get("max_abs_diff"), ".1e"),
                ]
            )
        p = m["pipeline_compose"]
        rows.append(
            [
                m["model"],
                "Pipeline.compose (fp32)",
                "1",
                "",
                "",
                common.fmt(p["latency_p50_ms"]),
                common.fmt(p["latency_p95_ms"]),
                "",
                "",
                "",
                "",
            ]
        )
    return header, rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    common.add_common_args(ap)
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument(
        "--model", action="append", help="toyfaces, toyfaces-stylegan2, progan-256, stylegan2-256"
    )
    ap.add_argument("--bf16", action="store_true", help="run the bf16 variants even without bf16 units")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--compile", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--freeze", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return
    res = run(args.quick, args.threads, not args.no_compile, models=args.model, bf16=args.bf16 or None)
    print(
        "matmul peaks (best of the run), GFLOP/s: "
        + ", ".join(f"{k} {v:.1f}" for k, v in res["matmul_peak_gflop_s"].items())
    )
    common.print_table("compose: E + G", *table(res))
    if res["above_peak"]:
        print(
            "note: faster than the measured fp32 matmul peak (so the peak is underestimated, e.g. the "
            "machine was busy while it was measured): " + ", ".join(res["above_peak"])
        )
    if args.json:
        common.write_json(args.json, res)


if __name__ == "__main__":
    main()
