"""Time per image of regressor variants, side by side: G(E(x, m)) batched and one image at a time.

    python benchmarks/bench_regressor_variants.py --model builtin:toyfaces-stylegan2-regressor \
        --model runs/i24/iterative/last.safetensors@1,2,3 --model runs/i24/pyramid/last.safetensors

`MODEL@K,K,...` times an iterative regressor at each number of passes. Inputs: samples of the first model's
generator under the paper's masks (seed 0). The models are timed round-robin (`--rounds`, median of the
rounds), so that a machine whose load changes during the run slows every variant alike. A script that
prints figures, not a test.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def parse_model(spec: str) -> tuple[str, list[int | None]]:
    if "@" in spec:
        path, ks = spec.rsplit("@", 1)
        return path, [int(k) for k in ks.split(",") if k.strip()]
    return spec, [None]


def main() -> None:
    from latentcomp.edit.pipeline import Pipeline
    from latentcomp.masks import noise_masks

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", action="append", required=True, help="regressor (MODEL or MODEL@K,K)")
    ap.add_argument("--batch", type=int, default=50)
    ap.add_argument("--singles", type=int, default=20, help="one-image calls per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    entries = []
    for spec in args.model:
        path, ks = parse_model(spec)
        pipe = Pipeline.from_pretrained(path)
        for k in ks:
            entries.append((f"{path}" + (f" @ {k} passes" if k else ""), pipe, k))
    first = entries[0][1]
    x = first.sample(args.batch, seed=0)
    m = noise_masks(args.batch, first.resolution, generator=torch.Generator().manual_seed(0))
    batched = {name: [] for name, _, _ in entries}
    single = {name: [] for name, _, _ in entries}
    with torch.no_grad():
        for _ in range(args.rounds):
            for name, pipe, k in entries:
                pipe.set_iterations(k)
                pipe.generate(pipe.invert(x[:2], m[:2]))  # warm-up
                t = time.perf_counter()
                pipe.generate(pipe.invert(x, m))
                batched[name].append((time.perf_counter() - t) / args.batch)
                times = []
                for i in range(args.singles):
                    t = time.perf_counter()
                    pipe.generate(pipe.invert(x[i : i + 1], m[i : i + 1]))
                    times.append(time.perf_counter() - t)
                single[name].append(statistics.median(times))
    print(f"| regressor | ms / image, batch {args.batch} | ms, one image | parameters |")
    print("|---|---|---|---|")
    for name, pipe, _ in entries:
        params = sum(p.numel() for p in pipe.regressor.parameters())
        b, s1 = statistics.median(batched[name]) * 1e3, statistics.median(single[name]) * 1e3
        print(f"| {name} | {b:.2f} | {s1:.2f} | {params / 1e6:.1f} M |")


if __name__ == "__main__":
    main()
