"""Bring-your-own generator example: a DCGAN trained on MNIST by someone else, loaded via `python:`.

    latentcomp sample --generator python:examples/mnist_dcgan.py:build --n 64 --out digits.png

The weights are `models/generator.pth` of github.com/dennisjooo/DCGAN-on-MNIST (a plain state dict; the
repository states no licence, so they are not shipped here). `build()` reads them from the path in the
environment variable LATENTCOMP_MNIST_DCGAN, or from ../shared/real/mnist-dcgan/generator.pth next to
this repository. The network below is written from the architecture facts (layer types, shapes and
indices of its `layer_stack`): z (N, 100) ~ N(0, I) -> 1 x 28 x 28 images in [-1, 1].
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from latentcomp.errors import LatentcompError
from latentcomp.generators.custom import CustomGenerator

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PATH = REPO.parent / "shared" / "real" / "mnist-dcgan" / "generator.pth"
Z_DIM = 100


class ToMap(nn.Module):
    """(N, 100) -> (N, 100, 1, 1); index 0 of the stack, no parameters."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z.reshape(z.shape[0], -1, 1, 1)


class MnistDCGAN(nn.Module):
    """Spatial sizes 1 -> 4 -> 7 -> 14 -> 28; keys layer_stack.{1,2,4,5,7,8,10}.*"""

    def __init__(self, z_dim: int = Z_DIM):
        super().__init__()

        def up(cin, cout, k, s, p):
            conv = nn.ConvTranspose2d(cin, cout, k, s, p, bias=False)
            return [conv, nn.BatchNorm2d(cout), nn.LeakyReLU(0.2)]

        self.layer_stack = nn.Sequential(
            ToMap(),
            *up(z_dim, 128, 4, 1, 0),
            *up(128, 64, 3, 2, 1),
            *up(64, 32, 4, 2, 1),
            nn.ConvTranspose2d(32, 1, 4, 2, 1, bias=False),
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.layer_stack(z)


def weights_path() -> Path:
    return Path(os.environ.get("LATENTCOMP_MNIST_DCGAN", DEFAULT_PATH)).expanduser()


def build(path: str | None = None, random_init: bool = False, seed: int = 0) -> CustomGenerator:
    """The MNIST DCGAN as a `CustomGenerator` (1x28x28, z 100 ~ N(0, I)).

    path: weights file (default: $LATENTCOMP_MNIST_DCGAN or ../shared/real/mnist-dcgan/generator.pth).
    random_init: skip the weights and keep a seeded random initialisation (a control for tests).
    """
    if random_init:
        with torch.random.fork_rng(devices=[]):  # seeded, without touching the global RNG
            torch.manual_seed(seed)
            net = MnistDCGAN()
    else:
        net = MnistDCGAN()
        p = Path(path).expanduser() if path else weights_path()
        if not p.is_file():
            raise LatentcompError(
                f"MNIST DCGAN weights not found: {p} (set LATENTCOMP_MNIST_DCGAN to generator.pth of "
                "github.com/dennisjooo/DCGAN-on-MNIST)"
            )
        state = torch.load(p, map_location="cpu", weights_only=True)
        try:
            net.load_state_dict(state)
        except RuntimeError as e:
            first = str(e).strip().splitlines()[:2]
            raise LatentcompError(f"{p}: not the MNIST DCGAN layout ({' '.join(first)})") from None
    return CustomGenerator(
        net, latent_shape=(Z_DIM,), resolution=28, channels=1, prior="normal", name="mnist-dcgan"
    )
