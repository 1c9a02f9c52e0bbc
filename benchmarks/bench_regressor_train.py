"""Regressor training throughput: images/s and achieved FLOP/s, one process and 2-process DDP.

    python benchmarks/bench_regressor_train.py                       # bundled configs (or tiny ones)
    python benchmarks/bench_regressor_train.py --generator builtin:tiny-random-stylegan2 --batch 16
    python benchmarks/bench_regressor_train.py --no-ddp --json out.json

For each generator: FLOPs of one training step (E forward + G forward twice + backward through G and E,
counted by torch.utils.flop_counter.FlopCounterMode), then timed steps after a warm-up. The same run
measures this machine's fp32 matmul rate (a 1024^3 matmul with the same thread count), so that achieved
FLOP/s can be read against it. DDP runs the same steps under `torchrun --nproc-per-node 2` (gloo on
CPU), each process with half the threads and the same per-process batch (global batch doubles).
A script that prints figures, not a test. `run(...)` returns the figures as a dict for other scripts.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

DEFAULT_GENERATORS = ("builtin:toyfaces-dcgan", "builtin:toyfaces-stylegan2")
FALLBACK_GENERATORS = ("builtin:tiny-random", "builtin:tiny-random-stylegan2")


def matmul_peak(threads: int, n: int = 1024, reps: int = 10) -> float:
    """fp32 matmul FLOP/s with `threads` threads (best of a few runs)."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(reps):
            a @ b
        best = min(best, time.perf_counter() - t)
    torch.set_num_threads(old)
    return 2 * n**3 * reps / best


def make_trainer(generator: str, batch: int, lpips: str, device: str, out: str):
    from latentcomp.training.regressor import RegressorTrainer, TrainConfig

    cfg = TrainConfig(generator=generator, out=out, batch=batch, lpips=lpips, steps=10**9,
                      tensorboard=False, progress=False, device=device)  # fmt: skip
    return RegressorTrainer(cfg)


def step_flops(trainer) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc:
        trainer.train_step()
    return int(fc.get_total_flops())


def timed_steps(trainer, steps: int, warmup: int) -> float:
    for _ in range(warmup):
        trainer.train_step()
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    if trainer.dist.world > 1:
        torch.distributed.barrier()
    t = time.perf_counter()
    for _ in range(steps):
        trainer.train_step()
    if trainer.device.type == "cuda":
        torch.cuda.synchronize()
    if trainer.dist.world > 1:
        torch.distributed.barrier()
    return time.perf_counter() - t


def run(generator: str, batch: int = 16, steps: int = 10, warmup: int = 2, lpips: str = "none",
        device: str = "cpu", threads: int | None = None) -> dict:  # fmt: skip
    """Single-process figures for one generator."""
    threads = threads or torch.get_num_threads()
    torch.set_num_threads(threads)
    with tempfile.TemporaryDirectory() as out:
        tr = make_trainer(generator, batch, lpips, device, out)
        flops = step_flops(tr)
        dt = timed_steps(tr, steps, warmup)
        desc = f"{tr.E.backbone_name}/{tr.E.space}, G {tr.G.channels}x{tr.G.resolution}"
        tr.close()
    return {
        "generator": generator, "regressor": desc, "processes": 1, "threads": threads, "batch": batch,
        "images_per_s": batch * steps / dt, "step_s": dt / steps, "gflop_per_step": flops / 1e9,
        "achieved_gflop_s": flops * steps / dt / 1e9,
    }  # fmt: skip


def run_ddp(generator: str, batch: int, steps: int, warmup: int, lpips: str, threads: int) -> dict:
    """2-process DDP figures (gloo, CPU) via torchrun; each process gets threads // 2 threads."""
    with tempfile.TemporaryDirectory() as tmp:
        res = Path(tmp) / "ddp.json"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
               __file__, "--worker", "--generator", generator, "--batch", str(batch), "--steps", str(steps),
               "--warmup", str(warmup), "--lpips", lpips, "--threads", str(max(1, threads // 2)),
               "--json", str(res)]  # fmt: skip
        env = {**os.environ, "OMP_NUM_THREADS": str(max(1, threads // 2))}
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            raise RuntimeError(f"DDP benchmark failed:\n{proc.stderr[-3000:]}")
        return json.loads(res.read_text())


def worker(args) -> None:
    """One torchrun process: time steps of the DDP trainer; rank 0 writes the figures."""
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as out:
        tr = make_trainer(args.generator[0], args.batch, args.lpips, "cpu", out)
        flops = step_flops(tr)  # per process, per step
        dt = timed_steps(tr, args.steps, args.warmup)
        world = tr.dist.world
        if tr.dist.is_main:
            g = args.batch * world
            Path(args.json).write_text(json.dumps({
                "generator": args.generator[0], "processes": world, "threads": args.threads * world,
                "batch": g, "images_per_s": g * args.steps / dt, "step_s": dt / args.steps,
                "gflop_per_step": flops * world / 1e9,
                "achieved_gflop_s": flops * world * args.steps / dt / 1e9,
            }))  # fmt: skip
        tr.close()


def available(specs) -> list[str]:
    from latentcomp.errors import LatentcompError
    from latentcomp.generators import load_generator

    ok = []
    for s in specs:
        try:
            load_generator(s)
            ok.append(s)
        except LatentcompError:
            pass
    return ok


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--generator", action="append", help="generator spec (repeatable)")
    ap.add_argument("--batch", type=int, default=16, help="per-process batch")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--lpips", default="none", help="alex / vgg need ImageNet weights in the torch cache")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-ddp", action="store_true")
    ap.add_argument("--json", help="write the figures here")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args)
        return
    gens = args.generator or (available(DEFAULT_GENERATORS) or list(FALLBACK_GENERATORS))
    peak = matmul_peak(args.threads)
    rows = []
    for g in gens:
        rows.append(run(g, args.batch, args.steps, args.warmup, args.lpips, args.device, args.threads))
        if not args.no_ddp and args.device == "cpu":
            rows.append(run_ddp(g, args.batch, args.steps, args.warmup, args.lpips, args.threads))
    print(f"fp32 matmul rate, {args.threads} threads: {peak / 1e9:.1f} GFLOP/s")
    print(f"{'generator':34s} {'proc':>4s} {'batch':>5s} {'img/s':>8s} {'s/step':>7s} {'GFLOP/step':>10s} "
          f"{'GFLOP/s':>8s} {'of peak':>7s}")  # fmt: skip
    for r in rows:
        r["fraction_of_matmul_peak"] = r["achieved_gflop_s"] * 1e9 / peak
        print(f"{r['generator']:34s} {r['processes']:4d} {r['batch']:5d} {r['images_per_s']:8.1f} "
              f"{r['step_s']:7.3f} {r['gflop_per_step']:10.2f} {r['achieved_gflop_s']:8.1f} "
              f"{r['fraction_of_matmul_peak']:7.1%}")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps({"matmul_gflop_s": peak / 1e9, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
