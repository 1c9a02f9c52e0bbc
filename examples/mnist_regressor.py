"""Real-generator check: a regressor for someone else's MNIST DCGAN, tested on *real* MNIST digits.

    python examples/mnist_regressor.py --minutes 10 --out runs/mnist-regressor

1. Trains a regressor (small conv net, z head, RGBM input) for at most --minutes on the CPU against
   the MNIST DCGAN of `examples/mnist_dcgan.py` (weights: ../shared/real/mnist-dcgan/generator.pth or
   $LATENTCOMP_MNIST_DCGAN), self-supervised on the generator's own samples, with the paper's masks
   (and a fraction of unmasked inputs, since the test below is unmasked). No real image is used in training.
2. Fits a small CNN classifier on the first half of the real MNIST test set (../shared/real/mnist or
   $LATENTCOMP_MNIST).
3. Reconstructs real digits of the other half, x -> G(E(x)), and reports the mean L1 (images in
   [-1, 1]) and the fraction whose reconstruction the classifier gives the input's label; the same with
   paper-sampler masks (L1 on the known pixels). Writes OUT/results.json and OUT/reconstructions.png.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

HERE = Path(__file__).resolve().parent
REAL = HERE.parent.parent / "shared" / "real"
GENERATOR_SPEC = f"python:{HERE / 'mnist_dcgan.py'}:build"


class DigitClassifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 14
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 7
            nn.Flatten(), nn.Dropout(0.3), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10),
        )  # fmt: skip

    def forward(self, x):
        return self.net(x)


def fit_classifier(x, y, epochs: int = 4, seed: int = 0) -> DigitClassifier:
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    clf = DigitClassifier()
    opt = torch.optim.Adam(clf.parameters(), lr=2e-3)
    for _ in range(epochs):
        perm = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), 64):
            idx = perm[i : i + 64]
            xb = x[idx]
            # small random shifts: the classifier should judge digits, not pixel positions
            dx, dy = torch.randint(-2, 3, (2,), generator=g).tolist()
            xb = torch.roll(xb, shifts=(dy, dx), dims=(2, 3))
            loss = F.cross_entropy(clf(xb), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return clf.eval()


@torch.no_grad()
def predict(clf, x) -> torch.Tensor:
    return torch.cat([clf(x[i : i + 500]).argmax(1) for i in range(0, len(x), 500)])


@torch.no_grad()
def reconstruct(reg, G, x, m=None) -> torch.Tensor:
    outs = []
    for i in range(0, len(x), 250):
        mi = None if m is None else m[i : i + 250]
        outs.append(G(reg(x[i : i + 250], mi)).clamp(-1, 1))
    return torch.cat(outs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0, help="training time limit (CPU)")
    ap.add_argument("--out", default="runs/mnist-regressor")
    ap.add_argument("--max-steps", type=int, default=100_000, help="stop earlier if reached")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--unmasked-fraction", type=float, default=0.5)
    ap.add_argument("--eval", type=int, default=2000, help="real test digits to reconstruct")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--resume", action="store_true", help="continue a previous run in --out")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from latentcomp.data.mnist import MNIST
    from latentcomp.generators import load_generator
    from latentcomp.masks import noise_masks
    from latentcomp.regressors import load_regressor
    from latentcomp.training.regressor import TrainConfig, train_regressor

    out = Path(args.out)
    t0 = time.perf_counter()
    cfg = TrainConfig(
        generator=GENERATOR_SPEC, out=str(out), steps=args.max_steps, batch=args.batch, lr=args.lr,
        unmasked_fraction=args.unmasked_fraction, lpips="none", eval_every=500, test_size=256,
        seed=args.seed, device="cpu", max_minutes=args.minutes, resume=args.resume, backbone="small",
    )  # fmt: skip
    result = train_regressor(cfg)
    train_s = time.perf_counter() - t0

    reg = load_regressor(out)
    G = load_generator(GENERATOR_SPEC)
    mnist = MNIST(os.environ.get("LATENTCOMP_MNIST", REAL / "mnist"), split="test")
    n_fit = len(mnist) // 2
    clf = fit_classifier(mnist.images[:n_fit], mnist.labels[:n_fit], seed=args.seed)
    x, y = mnist.images[n_fit : n_fit + args.eval], mnist.labels[n_fit : n_fit + args.eval]
    clf_acc = (predict(clf, x) == y).float().mean().item()

    rec = reconstruct(reg, G, x)
    m = noise_masks(len(x), 28, generator=torch.Generator().manual_seed(123))
    rec_m = reconstruct(reg, G, x, m)
    z_rand = G.sample_latent(len(x), generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        random_samples = G(z_rand)
    known = m.sum().item()

    def agree(images):
        return (predict(clf, images) == y).float().mean().item()

    res = {
        "command": f"python examples/mnist_regressor.py --minutes {args.minutes:g} --out {args.out}"
        + (f" --threads {args.threads}" if args.threads else ""),
        "generator": GENERATOR_SPEC.replace(str(HERE), "examples"),
        "train_steps": result.step, "train_wall_s": round(result.wall_s, 1), "total_wall_s": None,
        "batch": args.batch, "best_test_loss_on_samples": result.best_test_loss,
        "classifier_accuracy_real": clf_acc, "eval_digits": len(x),
        "unmasked": {"l1": (rec - x).abs().mean().item(), "label_agreement": agree(rec)},
        "masked": {
            "known_fraction": known / m.numel(),
            "l1_known": ((rec_m - x).abs() * m).sum().item() / known,
            "l1_all": (rec_m - x).abs().mean().item(),
            "label_agreement": agree(rec_m),
        },
        "reference_random_samples_label_agreement": agree(random_samples),
    }  # fmt: skip
    res["total_wall_s"] = round(time.perf_counter() - t0, 1)
    res["train_wall_s_this_invocation"] = round(train_s, 1)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(res, indent=2) + "\n")

    from torchvision.utils import save_image

    k = 16
    grid = torch.cat([x[:k], rec[:k], x[:k] * m[:k], rec_m[:k]]) * 0.5 + 0.5
    save_image(grid, out / "reconstructions.png", nrow=k, padding=1)
    print(json.dumps(res, indent=2))
    print(f"rows of {out / 'reconstructions.png'}: real, G(E(real)), masked real, G(E(masked real))")


if __name__ == "__main__":
    main()
