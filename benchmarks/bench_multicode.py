"""Multi-code GAN prior (mGANprior, Gu et al. 2020) against single-code inversion on out-of-domain inputs.

    python benchmarks/bench_multicode.py --model toyfaces [--n 8] [--codes 10] [--steps 100] [--json OUT]
    python benchmarks/bench_multicode.py --model mnist [--n 16]      # needs ../shared/real

toyfaces models (toyfaces, toyfaces-stylegan2, toyfaces-gansformer): n renders (seed 123) that all wear
glasses (round / square / sunglasses in turn; the part the bundled GANs omit most after the eyebrows,
docs/probe.md), code 1 starting at the regressor's latent. mnist: the first n real MNIST test digits
shifted 5 px right and down ("shifted") or dilated with a 3x3 max filter ("thick"), for the real MNIST
DCGAN (`python:examples/mnist_dcgan.py:build`, no regressor: code 1 starts at the best of 64 prior
samples). Each task runs multi-code and single-code inversion with the same loss, start and steps:

- invert: every pixel known; inpaint: the centre square (half the side) hidden;
- colorize: the grey input (toyfaces only); superres: the input averaged down 4x.

Figures per task (means over the images): `observed` = L1 between what the task observes of the output and
of the input (the loss); `truth` = L1 of the output against the full original (colour, hidden pixels,
detail; for invert the same as observed); seconds per image.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
REAL = HERE.parent.parent / "shared" / "real"
MNIST_SPEC = f"python:{HERE.parent / 'examples' / 'mnist_dcgan.py'}:build"
MNIST_LAYER = "module.layer_stack.6"  # 64 x 7 x 7, after the second block's activation


def _centre_mask(n: int, res: int) -> torch.Tensor:
    m = torch.ones(n, 1, res, res)
    m[..., res // 4 : res - res // 4, res // 4 : res - res // 4] = 0
    return m


def _mnist_inputs(n: int) -> dict[str, torch.Tensor]:
    from latentcomp.data.mnist import MNIST

    if not REAL.is_dir():
        raise SystemExit(f"mnist needs the real MNIST files in {REAL}")
    x = MNIST(REAL / "mnist").images[:n].float()
    if x.max() > 1.5:
        x = x / 127.5 - 1
    elif x.min() >= 0:
        x = x * 2 - 1
    shifted = torch.full_like(x, -1.0)
    shifted[..., 5:, 5:] = x[..., :-5, :-5]
    thick = torch.nn.functional.max_pool2d(x, 3, stride=1, padding=1)
    return {"shifted": shifted, "thick": thick}


def run(model="toyfaces", n=8, codes=10, steps=100, layer=None, tasks=None, log=print) -> dict:
    from latentcomp.edit import Pipeline
    from latentcomp.edit.multicode import degrade, invert_multicode, invert_multicode_pipe

    rows = []
    if model == "mnist":
        from latentcomp import load_generator

        G = load_generator(MNIST_SPEC)
        inputs = _mnist_inputs(n)
        layer = layer or MNIST_LAYER
        tasks = tasks or ("invert", "inpaint", "superres")
        pipe = None
    else:
        from latentcomp.data.toyfaces import ToyFaces

        pipe = Pipeline.from_pretrained(model)
        G = pipe.generator
        faces = ToyFaces(pipe.resolution, seed=123)
        x = torch.cat([faces.render_batch([i], overrides={"glasses": 1 + i % 3})[0] for i in range(n)])
        inputs = {"glasses": x}
        tasks = tasks or ("invert", "inpaint", "colorize", "superres")
    res = int(G.resolution)
    for kind, x in inputs.items():
        for task in tasks:
            mask = _centre_mask(n, res) if task == "inpaint" else None
            given = degrade(x, task, 4)
            kw = dict(codes=codes, layer=layer, task=task, factor=4, steps=steps)
            t0 = time.perf_counter()
            if pipe is None:
                r = invert_multicode(G, given, mask, **kw)
            else:
                r = invert_multicode_pipe(pipe, given, mask, **kw)
            sec = time.perf_counter() - t0
            row = {
                "input": kind,
                "task": task,
                "layer": r.layer,
                "multi_observed": float(r.observed_l1.mean()),
                "single_observed": float(r.single_observed_l1.mean()),
                "multi_truth": float((r.image - x).abs().mean()),
                "single_truth": float((r.single_image - x).abs().mean()),
                "multi_s": r.seconds / n,
                "single_s": r.single_seconds / n,
            }
            rows.append(row)
            log(
                f"{model} {kind} {task}: observed {row['multi_observed']:.4f} vs "
                f"{row['single_observed']:.4f}, "
                f"truth {row['multi_truth']:.4f} vs {row['single_truth']:.4f} ({sec:.0f} s)"
            )
    return {"model": model, "generator": G.spec, "n": n, "codes": codes, "steps": steps, "rows": rows}


def table(result: dict) -> list[list[str]]:
    out = []
    for r in result["rows"]:
        out.append(
            [
                result["model"],
                r["input"],
                r["task"],
                r["layer"],
                f"{r['single_observed']:.4f}",
                f"{r['multi_observed']:.4f}",
                f"{r['single_truth']:.4f}",
                f"{r['multi_truth']:.4f}",
                f"{r['single_s']:.2f} / {r['multi_s']:.2f}",
            ]
        )
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="toyfaces")
    p.add_argument("--n", type=int, default=8)
    p.add_argument("--codes", type=int, default=10)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--layer", default=None)
    p.add_argument("--task", action="append", default=None)
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    result = run(a.model, a.n, a.codes, a.steps, a.layer, a.task, log=log)
    print(
        "| model | input | task | layer | single: observed L1 | multi: observed L1 | single: truth L1 | "
        "multi: truth L1 | s / image single / multi |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for row in table(result):
        print("| " + " | ".join(row) + " |")
    if a.json:
        a.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
