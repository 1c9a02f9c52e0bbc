"""GAN recipe ablation at a fixed CPU budget: which training recipe draws toyfaces best?

Every variant gets the same CPU budget on one thread (same seed, same data, same start): its step time
is measured first (round-robin with the others), and it then trains for the number of steps that fill
`--minutes`, so other load on the machine during the runs does not favour one variant. `--parallel`
variants train at a time. Each EMA generator is then measured like `latentcomp gan evaluate`: largest
attribute-marginal gap, analyzer confidence, domain FID. Training throughput is reported as
images per second and as the share of the one-thread fp32 matmul peak that the step's FLOPs reach.

    python benchmarks/bench_gan_recipe.py --arch dcgan --minutes 12 --parallel 2 --n 2000
    python benchmarks/bench_gan_recipe.py --quick          # smoke run: seconds per variant

By default every variant warm-starts G from the bundled generator of the same architecture (with a
fresh discriminator), so a short budget compares what each recipe does to a model that already draws
faces; `--init none` trains from scratch. A warm-started G first waits `--d-warmup` steps while the
fresh D learns (without them the fresh D's early verdicts wreck the warm G before the recipe matters).
Runs go to `--out` (default runs/gan-recipe/ARCH); the table is printed and written to `--json`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import common

VARIANTS: dict[str, list[str]] = {
    "baseline": [],
    "diffaug": ["--augment", "color,translation,cutout"],
    "seg": ["--seg-weight", "1.0"],
    "seg+diffaug": ["--seg-weight", "1.0", "--augment", "color,translation,cutout"],
    "seg+translation": ["--seg-weight", "1.0", "--augment", "translation"],
    "d-lr/2": ["--d-lr", "HALF"],
    "batch64": ["--batch", "64"],
    "bf16": ["--precision", "bf16"],
    "diffaug+bf16": ["--augment", "color,translation,cutout", "--precision", "bf16"],
}
ARCH_ARGS = {
    "dcgan": ["--width", "32", "--z-dim", "128"],
    "stylegan2": ["--width", "16", "--z-dim", "128"],
    "gansformer": ["--width", "16", "--z-dim", "256"],
}
DEFAULT_LR = {"dcgan": (2e-4, 2e-4), "stylegan2": (2e-3, 4e-4), "gansformer": (2e-3, 4e-4)}


def variant_args(name: str, arch: str) -> list[str]:
    args = list(VARIANTS[name])
    if "HALF" in args:
        args[args.index("HALF")] = str(DEFAULT_LR[arch][1] / 2)
    return args


def train(name: str, args, run: Path, steps: int) -> dict:
    warm = args.init != "none"
    cmd = [
        "-m", "latentcomp.cli", "gan", "train", "--out", str(run), "--arch", args.arch,
        *ARCH_ARGS[args.arch], "--steps", str(steps + (args.d_warmup if warm else 0)),
        "--threads", "1", "--seed", str(args.seed),
        "--checkpoint-every", "250", *variant_args(name, args.arch),
    ]
    if warm:
        init = args.init or f"builtin:toyfaces-{args.arch}"
        cmd += ["--init-generator", init, "--d-warmup", str(args.d_warmup)]
    common.log(f"[{name}] training {steps} steps")
    error = common.run_script(cmd, timeout=args.minutes * 60 * 4 + 600, env={"OMP_NUM_THREADS": "1"})
    if error:
        return {"error": error}
    meta = json.loads((run / "generator.json").read_text())
    return {"steps": meta["trained_steps"], "train_s": meta["wall_time_s"]}


EVAL_SNIPPET = """
import json, sys, torch
torch.set_num_threads(1)
from latentcomp.generators import load_generator
from latentcomp.metrics.generator_quality import generator_quality
from latentcomp.metrics.second_view import BUNDLED, load_second_view
view = load_second_view("builtin") if BUNDLED.is_file() else None
r = generator_quality(load_generator(sys.argv[1]), n=int(sys.argv[2]), seed=0, second_view=view)
print(json.dumps(r))
"""


def evaluate(spec: str, n: int) -> dict:
    return common.run_json_subprocess(["-c", EVAL_SNIPPET, spec, str(n)], timeout=3600,
                                      env={"OMP_NUM_THREADS": "1"})


def _trainer(name: str, args, folder: Path):
    """A small-pool trainer of this variant (for FLOP counting and step timing only)."""
    from latentcomp.training.gan import GANConfig, GANTrainer

    flags = variant_args(name, args.arch)
    opts = dict(zip(flags[::2], flags[1::2], strict=True))
    arch = dict(zip(ARCH_ARGS[args.arch][::2], ARCH_ARGS[args.arch][1::2], strict=True))
    cfg = GANConfig(
        arch=args.arch, pool_size=64, width=int(arch["--width"]), z_dim=int(arch["--z-dim"]),
        batch=int(opts.get("--batch", 32)), augment=opts.get("--augment", ""),
        seg_weight=float(opts.get("--seg-weight", 0)), precision=opts.get("--precision", "fp32"),
    )
    return GANTrainer(cfg, folder / name.replace("/", "-"))


def step_costs(names: list[str], args, rounds: int = 3, steps: int = 8) -> dict[str, tuple[float, float]]:
    """Per variant: FLOPs of one training step (D + G step, forward and backward) and its seconds on one
    thread. Timing rounds go round-robin over the variants and each keeps its best round, so a moment of
    other load on the machine does not land on one variant; a round of 8 steps holds one R1 step."""
    import tempfile

    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        trainers = {name: _trainer(name, args, Path(tmp)) for name in names}
        flops = {}
        for name, t in trainers.items():
            t.step = 1  # a step without R1: the FLOPs of the common step
            flops[name] = common.count_flops(t.train_step)
            t.train_step()  # warm-up
        best = dict.fromkeys(names, float("inf"))
        for _ in range(rounds):
            for name, t in trainers.items():
                t.step = 0
                times = common.time_calls(t.train_step, reps=steps, warmup=0)
                best[name] = min(best[name], sum(times) / len(times))
    return {name: (flops[name], best[name]) for name in names}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", default="dcgan", choices=sorted(ARCH_ARGS))
    ap.add_argument("--variants", default="baseline,diffaug,seg,seg+diffaug",
                    help=f"comma-separated, from: {', '.join(VARIANTS)}")
    ap.add_argument("--minutes", type=float, default=12.0, help="training budget per variant")
    ap.add_argument("--parallel", type=int, default=2, help="variants trained at once (one thread each)")
    ap.add_argument("--n", type=int, default=2000, help="samples (and renders) per evaluation")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--init", default="", help="warm-start spec (default builtin:toyfaces-ARCH), or none")
    ap.add_argument("--d-warmup", type=int, default=300,
                    help="with a warm start: D-only steps first (on top of the budget, the same for all)")
    ap.add_argument("--out", default="", help="run folder root (default runs/gan-recipe/ARCH)")
    ap.add_argument("--time-only", action="store_true",
                    help="only measure each variant's step time side by side (no training, no evaluation)")
    common.add_common_args(ap)
    args = ap.parse_args()
    if args.quick:
        args.minutes, args.n = 0.15, 200
    names = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        sys.exit(f"--variants: unknown {', '.join(unknown)}; accepted: {', '.join(VARIANTS)}")
    root = Path(args.out or common.ROOT / "runs" / "gan-recipe" / args.arch)
    runs = {name: root / name.replace("/", "-").replace("+", "-") for name in names}
    for run in runs.values():
        if run.exists():
            sys.exit(f"{run} exists; remove it or pass another --out")

    peak = common.matmul_peak(1)
    costs = step_costs(names, args)
    flops = {name: c[0] for name, c in costs.items()}
    steps = {name: max(1, int(args.minutes * 60 / c[1])) for name, c in costs.items()}
    for name in names:
        common.log(f"[{name}] {costs[name][1] * 1e3:.0f} ms/step alone -> {steps[name]} steps")
    if args.time_only:
        base = costs[names[0]][1]
        rows = [
            [name, common.fmt(sec * 1e3, ".0f"), common.fmt((64 if name == "batch64" else 32) / sec),
             common.fmt(base / sec, ".2f") + "x", common.fmt(100 * flops[name] / sec / peak, ".0f") + "%"]
            for name, (_, sec) in costs.items()
        ]
        common.print_table(
            f"GAN training step, {args.arch}, 1 thread (best of 3 round-robin rounds)",
            ["variant", "ms/step", "img/s", f"vs {names[0]}", "of fp32 peak"], rows,
        )
        return
    start = time.time()
    with ThreadPoolExecutor(args.parallel) as pool:
        trained = dict(zip(names, pool.map(lambda v: train(v, args, runs[v], steps[v]), names), strict=True))
        specs = {
            v: f"{args.arch}:{runs[v] / 'generator.safetensors'}" for v in names if "error" not in trained[v]
        }
        if args.init != "none":
            specs["(start)"] = args.init or f"builtin:toyfaces-{args.arch}"
        quality = dict(zip(specs, pool.map(lambda v: evaluate(specs[v], args.n), specs), strict=True))
    peak = max(peak, common.matmul_peak(1))

    rows, results = [], {}
    for name in [*(["(start)"] if "(start)" in quality else []), *names]:
        q, t = quality.get(name, {}), trained.get(name, {})
        batch = 64 if name == "batch64" else 32
        sec = costs[name][1] if name in costs else float("nan")  # measured alone, not under parallel load
        img_s = batch / sec
        share = flops[name] / sec / peak if name in flops else float("nan")
        results[name] = {
            **t, "step_s_alone": sec, "img_per_s": img_s, "peak_share": share,
            "step_gflop": flops.get(name, 0) / 1e9, "quality": q,
            "args": variant_args(name, args.arch) if name in VARIANTS else [],
        }
        gaps = q.get("marginal_gap_pp", {})
        worst = max(gaps, key=gaps.get) if gaps else "-"
        rows.append([
            name, common.fmt(t.get("steps"), "d"), common.fmt(img_s), common.fmt(100 * share, ".0f") + "%",
            common.fmt(q.get("max_marginal_gap_pp")) + f" ({worst})",
            common.fmt(q.get("confidence_samples"), ".3f"),
            common.fmt(q.get("fid_samples_vs_renders"), ".1f"),
            common.fmt(q.get("fid2_samples_vs_renders"), ".1f"), q.get("error", t.get("error", "")),
        ])
    common.print_table(
        f"GAN recipe ablation: {args.arch}, {args.minutes:g} min on 1 thread per variant, n = {args.n}",
        ["variant", "steps", "img/s", "of peak", "max gap pp", "confidence", "domain FID", "FID (2nd view)",
         "error"], rows,
    )
    out = {"machine": common.machine(), "arch": args.arch, "minutes": args.minutes, "n": args.n,
           "init": args.init or f"builtin:toyfaces-{args.arch}", "fp32_peak_1t_gflop_s": peak / 1e9,
           "wall_s": time.time() - start, "variants": results}
    if args.json:
        common.write_json(args.json, out)


if __name__ == "__main__":
    main()
