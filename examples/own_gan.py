"""Bring your own GAN, end to end, on a real checkpoint: the MNIST DCGAN of examples/mnist_dcgan.py.

    python examples/own_gan.py --out runs/own-gan                          # about 10 minutes, one CPU core
    python examples/own_gan.py --out runs/own-gan --steps 20 --n-eval 32   # a smoke run (seconds)

docs/own-gan.md walks through it; every step is also one `latentcomp` command there.

1. load the generator through its `python:` spec and sample a grid;
2. train a regressor on the generator's own samples (no data set needed);
3. evaluate it on fresh masked samples, and on real MNIST test digits when they are there;
4. build a Pipeline, naming the generator (a model file may not choose code to run);
5. compose: the top half of one real digit over the bottom half of another;
6. complete: four completions of a digit whose bottom half is hidden;
7. save the pipeline (`save_pretrained`) and print the command that serves it in the web editor.

Writes into --out: samples.png, the regressor run (run/), evaluation.json, digits/ (the real digits and
masks used), composed.png, completion_k0..3.png, model/ (the saved pipeline) and summary.json.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch

import latentcomp as lc

HERE = Path(__file__).resolve().parent
SPEC = "python:examples/mnist_dcgan.py:build"  # relative to the repository root (run from there)
MNIST_DIR = Path(os.environ.get("LATENTCOMP_MNIST", HERE.parent.parent / "shared" / "real" / "mnist"))


def generator_spec() -> str:
    """The spec as the docs write it when run from the repository root, else with the file's full path."""
    return SPEC if Path("examples/mnist_dcgan.py").resolve() == HERE / "mnist_dcgan.py" else (
        f"python:{HERE / 'mnist_dcgan.py'}:build"
    )


def real_digits(n: int):
    """n real MNIST test digits (1, 28, 28) in [-1, 1], or None where the IDX files are absent."""
    from latentcomp.data.mnist import MNIST

    if not MNIST_DIR.is_dir():
        return None
    return MNIST(MNIST_DIR, split="test").images[:n]


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="runs/own-gan", help="output folder")
    ap.add_argument("--steps", type=int, default=3000, help="regressor training steps")
    ap.add_argument("--minutes", type=float, default=10.0, help="training time limit")
    ap.add_argument("--batch", type=int, default=32, help="training batch")
    ap.add_argument("--n-eval", type=int, default=500, help="samples for the evaluation")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    out = Path(args.out)
    spec = generator_spec()

    # 1. load and sample: any module that maps z to images works through a python: spec
    G = lc.load_generator(spec)
    print(f"1. {G.describe()}")
    samples = G(G.sample_latent(16, generator=torch.Generator().manual_seed(args.seed))).clamp(-1, 1)
    from torchvision.utils import save_image

    out.mkdir(parents=True, exist_ok=True)
    save_image(samples * 0.5 + 0.5, out / "samples.png", nrow=8, padding=1)

    # 2. train a regressor on G's own samples: the paper's masks, half the inputs unmasked
    from latentcomp.training.regressor import TrainConfig, train_regressor

    cfg = TrainConfig(
        generator=spec, out=str(out / "run"), steps=args.steps, batch=args.batch, lr=5e-4,
        unmasked_fraction=0.5, lpips="none", eval_every=max(1, min(500, args.steps)), test_size=64,
        seed=args.seed, device="cpu", max_minutes=args.minutes, progress=False, tensorboard=False,
    )  # fmt: skip
    result = train_regressor(cfg, generator=G)
    print(f"2. trained {result.step} steps, held-out loss {result.best_test_loss:.4f} -> {out / 'run'}")

    # 3. evaluate: L1 on fresh samples (unmasked and under the paper's masks), then on real digits
    from latentcomp.regressors.evaluate import evaluate_regressor

    E = lc.load_regressor(out / "run")
    ev = evaluate_regressor(E, generator=G, n=args.n_eval, progress=False)
    real = real_digits(16)
    if real is not None:
        with torch.no_grad():
            rec = G(E(real)).clamp(-1, 1)
        ev["real_digits/l1_all"] = float((rec - real).abs().mean())
    (out / "evaluation.json").write_text(json.dumps(ev, indent=2) + "\n")
    print(f"3. L1 unmasked {ev['unmasked/l1_all']:.3f}, masked (known pixels) {ev['masked/l1_known']:.3f}")

    # 4. a Pipeline: the run records the python: spec, which is refused unless we name the generator
    pipe = lc.Pipeline.from_pretrained(out / "run", generator=spec)

    # 5. compose: top half of digit a over the bottom half of digit b (real digits, or samples)
    digits = real if real is not None else samples
    a, b = digits[0:1], digits[1:2]
    top = lc.masks.box_mask(28, (0, 0, 28, 14))
    d = out / "digits"
    for name, img in (("a", a), ("b", b)):
        lc.io.save_image(img[0], d / f"{name}.png")
    lc.io.save_mask(top, d / "top.png")
    composed = pipe.compose([b, a], [None, top])  # later parts on top
    lc.io.save_image(composed.image[0], out / "composed.png")
    print(f"5. composed: known-pixel L1 {float(composed.known_error[0]):.3f} -> {out / 'composed.png'}")

    # 6. complete: the bottom half of digit a hidden, four completions
    res = pipe.inpaint(a, top, n=4, seed=args.seed)
    for k in range(4):
        lc.io.save_image(res.images[0, k], out / f"completion_k{k}.png")
    print(f"6. completions: known-pixel L1 {float(res.known_error.mean()):.3f}, diversity "
          f"{float(res.diversity[0]):.3f}")  # fmt: skip

    # 7. save and serve
    folder = pipe.save_pretrained(out / "model")
    serve = f"latentcomp serve --model {folder} --generator {spec}"
    print(f"7. saved {folder}; open it in the editor with:\n   {serve}")
    summary = {
        "generator": spec,
        "train_steps": result.step,
        "evaluation": ev,
        "compose_known_l1": float(composed.known_error[0]),
        "inpaint_known_l1": float(res.known_error.mean()),
        "inpaint_diversity": float(res.diversity[0]),
        "real_digits": real is not None,
        "serve": serve,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


if __name__ == "__main__":
    main()
