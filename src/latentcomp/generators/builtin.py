"""`builtin:NAME`: the bundled embedded-default generators and tiny random ones for tests.

Bundled weights live in `latentcomp/weights/` as safetensors + JSON, in the same format that
`latentcomp gan train` exports, and load through the kind's own loader (so the code path is shared).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..errors import LatentcompError
from .base import Generator
from .registry import load_generator, register_kind

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"

# bundled generator name -> (kind, file inside weights/)
BUNDLED = {
    "toyfaces-dcgan": ("dcgan", "toyfaces-dcgan.safetensors"),
    "toyfaces-stylegan2": ("stylegan2", "toyfaces-stylegan2.safetensors"),
    "toyfaces-gansformer": ("gansformer", "toyfaces-gansformer.safetensors"),
}
TINY = ("tiny-random", "tiny-random-stylegan2")


class TinyRandomGenerator(Generator):
    """A small DCGAN-like generator with fixed random weights (3x32x32, z of 64): for tests and benchmarks."""

    latent_shape = (64,)
    resolution = 32
    channels = 3
    latent_spaces = ("z",)

    def __init__(self, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.net = nn.Sequential(
            nn.ConvTranspose2d(64, 128, 4, 1, 0),
            nn.ReLU(),  # 4x4
            nn.ConvTranspose2d(128, 64, 4, 2, 1),
            nn.ReLU(),  # 8x8
            nn.ConvTranspose2d(64, 32, 4, 2, 1),
            nn.ReLU(),  # 16x16
            nn.ConvTranspose2d(32, 3, 4, 2, 1),
            nn.Tanh(),  # 32x32
        )
        # torch's default init makes transposed convs nearly constant in z; scale up so samples differ
        with torch.no_grad():
            for m in self.net:
                if isinstance(m, nn.ConvTranspose2d):
                    m.weight.mul_(4)

    def synthesize(self, latent: torch.Tensor, space: str) -> torch.Tensor:
        return self.net(latent.view(-1, 64, 1, 1))

    def feature_layers(self) -> dict[str, str]:
        return {"4x4": "net.1", "8x8": "net.3", "16x16": "net.5"}


def builtin_names() -> list[str]:
    return sorted([*BUNDLED, *TINY])


@register_kind("builtin")
def load_builtin(name: str, **options) -> Generator:
    if name == "tiny-random":
        return TinyRandomGenerator(seed=int(options.get("seed", 0)))
    if name == "tiny-random-stylegan2":
        from .stylegan2 import StyleGAN2Generator, StyleGAN2Net

        torch.manual_seed(int(options.get("seed", 0)))
        net = StyleGAN2Net(32, style_dim=64, n_mlp=2, channels={4: 64, 8: 64, 16: 32, 32: 16})
        return StyleGAN2Generator(net, **{k: v for k, v in options.items() if k != "seed"})
    if name not in BUNDLED:
        raise LatentcompError(f"unknown builtin generator {name!r}; available: {', '.join(builtin_names())}")
    kind, filename = BUNDLED[name]
    path = WEIGHTS_DIR / filename
    if not path.is_file():
        raise LatentcompError(
            f"bundled generator {name!r} is missing its weights file {path}; reinstall latentcomp or "
            f"train it with `latentcomp gan train` (see its model card)"
        )
    return load_generator(f"{kind}:{path}", **options)
