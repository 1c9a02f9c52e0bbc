"""Peak memory (RSS) of compose and of a few training steps, each case in a fresh subprocess.

    python benchmarks/bench_memory.py [--quick]

Peak RSS = VmHWM of /proc/self/status of the subprocess at its end (getrusage's ru_maxrss would include
the parent's size at fork); the "baseline" case only imports torch and latentcomp, so "increment" =
case - baseline is what the work itself needs.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402

CASES_QUICK = ("baseline", "compose-toyfaces-b1", "compose-toyfaces-b64", "train-regressor", "train-gan")
CASES_FULL = CASES_QUICK + ("compose-stylegan2-256-b4", "compose-progan-256-b4")


def peak_mib() -> float:
    """Peak RSS of this process image. VmHWM from /proc (per address space, so it starts afresh at exec);
    `getrusage` would also count the parent's size at fork, which Linux carries over an exec."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def worker(case: str, quick: bool) -> dict:
    import torch

    torch.set_num_threads(common.cores())
    import latentcomp  # noqa: F401 - part of the baseline
    from latentcomp.edit.pipeline import Pipeline

    info: dict = {"case": case}
    if case.startswith("compose-"):
        import bench_compose

        name, batch = case[len("compose-") :].rsplit("-b", 1)
        G, E, note = bench_compose.build(name, quick)
        pipe = Pipeline(G, E)
        x, m = bench_compose.inputs(G, int(batch))
        pipe.compose([x], [m])
        info.update(model=name, batch=int(batch), note=note, resolution=G.resolution)
    elif case == "train-regressor":
        from latentcomp.training.regressor import RegressorTrainer, TrainConfig

        spec = _bundled_or("builtin:toyfaces-dcgan", "builtin:tiny-random-stylegan2")
        with tempfile.TemporaryDirectory() as out:
            cfg = TrainConfig(
                generator=spec,
                out=out,
                batch=16,
                lpips="none",
                steps=10,
                tensorboard=False,
                progress=False,
                device="cpu",
            )
            tr = RegressorTrainer(cfg)
            for _ in range(2 if quick else 5):
                tr.train_step()
            tr.close()
        info.update(generator=spec, batch=16, steps=2 if quick else 5, lpips="none")
    elif case == "train-gan":
        from latentcomp.training.gan import GANConfig, GANTrainer

        res, width, batch = (32, 8, 8) if quick else (64, 32, 32)
        with tempfile.TemporaryDirectory() as out:
            cfg = GANConfig(
                arch="dcgan",
                resolution=res,
                width=width,
                batch=batch,
                z_dim=128,
                pool_size=256 if quick else 2000,
                steps=10,
            )
            tr = GANTrainer(cfg, out)
            for _ in range(2 if quick else 5):
                tr.train_step()
        info.update(arch="dcgan", resolution=res, width=width, batch=batch, pool=cfg.pool_size)
    elif case != "baseline":
        raise SystemExit(f"unknown case {case}")
    info["peak_rss_mib"] = peak_mib()
    return info


def _bundled_or(spec: str, fallback: str) -> str:
    from latentcomp.errors import LatentcompError
    from latentcomp.generators import load_generator

    try:
        load_generator(spec)
        return spec
    except LatentcompError:
        return fallback


def run(quick: bool = False) -> dict:
    rows = []
    for case in CASES_QUICK if quick else CASES_FULL:
        common.log(f"[memory] {case}")
        args = [os.path.abspath(__file__), "--worker", case] + (["--quick"] if quick else [])
        r = common.run_json_subprocess(args, timeout=600)
        r.setdefault("case", case)
        rows.append(r)
    base = next((r["peak_rss_mib"] for r in rows if r["case"] == "baseline" and "peak_rss_mib" in r), None)
    for r in rows:
        if base is not None and "peak_rss_mib" in r:
            r["increment_mib"] = r["peak_rss_mib"] - base
    return {"cases": rows}


def table(res: dict) -> tuple[list[str], list[list[str]]]:
    header = ["case", "details", "peak RSS MiB", "over baseline MiB"]
    rows = []
    for r in res["cases"]:
        if "error" in r:
            rows.append([r["case"], r["error"][:70], "-", "-"])
            continue
        details = ", ".join(
            f"{k}={v}"
            for k, v in r.items()
            if k not in ("case", "peak_rss_mib", "increment_mib", "note") and v != ""
        )
        rows.append(
            [
                r["case"],
                details,
                common.fmt(r["peak_rss_mib"], ".0f"),
                common.fmt(r.get("increment_mib"), ".0f"),
            ]
        )
    return header, rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    common.add_common_args(ap)
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.quick)))
        return
    res = run(args.quick)
    common.print_table("peak memory (RSS)", *table(res))
    if args.json:
        common.write_json(args.json, res)


if __name__ == "__main__":
    main()
