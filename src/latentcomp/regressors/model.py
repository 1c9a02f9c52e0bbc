"""RGBM latent regressors: a backbone (ResNet-18/34 or a small conv net) and a z / w / w+ head.

Input: images (N, C, H, W) in [-1, 1] and masks (N, 1, H, W) in {0, 1} (1 = known); the regressor
builds `[x * m, m]` itself (C + 1 channels) unless it is an RGB-only variant, which sees `x * m`.
Inputs are resized (bilinear, antialiased) to the backbone's working size `input_size`.

Output: the generator's latent in the regressor's space:
  z  -> (N, *latent_shape)          (e.g. (N, 512) or (N, 512, 1, 1))
  w  -> (N, w_dim)
  w+ -> (N, num_ws, w_dim)          (a 1x1 conv after the last stage to num_ws * w_dim, global pool)
Generators whose w / w+ latents have another shape (a GANsformer's (k, w_dim), (k, num_ws, w_dim)) give
it as `out_shape` (`build_regressor` reads `generator.space_shape(space)`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from ..errors import LatentcompError
from ..masks import check_mask

BACKBONES = ("small", "resnet18", "resnet34")
SPACES = ("z", "w", "w+")
CONFIG_VERSION = 1
# sane bounds for config values, checked before any layer is allocated (a config file could ask for a
# head of 10^12 weights, or a negative width, which would fail deep inside torch or exhaust memory)
CONFIG_BOUNDS = {"resolution": (4, 8192), "channels": (1, 4), "num_ws": (0, 64), "w_dim": (0, 8192),
                 "input_size": (4, 2048)}  # fmt: skip
MAX_LATENT_VALUES = 1 << 20  # numbers per latent (the head's outputs), e.g. 18 x 512 for a 1024 px StyleGAN2


class SmallConvNet(nn.Module):
    """5 x (conv 3x3 stride 2, BatchNorm, LeakyReLU(0.1)), 32 -> 512 channels; for 28-64 px inputs."""

    widths = (32, 64, 128, 256, 512)

    def __init__(self, in_channels: int):
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        for width in self.widths:
            layers += [
                nn.Conv2d(c, width, kernel_size=3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.LeakyReLU(0.1, inplace=True),
            ]
            c = width
        self.body = nn.Sequential(*layers)
        self.out_channels = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class ResNetTrunk(nn.Module):
    """torchvision ResNet-18/34 from scratch (weights=None), first conv widened to `in_channels`."""

    def __init__(self, name: str, in_channels: int):
        super().__init__()
        net = getattr(torchvision.models, name)(weights=None)
        if in_channels != 3:
            net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
            nn.init.kaiming_normal_(net.conv1.weight, mode="fan_out", nonlinearity="relu")
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        self.out_channels = 512

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def trunk_forward(backbone: nn.Module, head: nn.Module, space: str, inp: torch.Tensor) -> torch.Tensor:
    """Backbone, head and global pool: the prepared input -> the flat latent (N, prod(out_shape)).
    A function of its own so that `quantize.py` traces the same computation."""
    feat = backbone(inp)
    # global average pool as a pooling op, not Tensor.mean: int8 tensors (quantize.py) support only the former
    if space == "w+":
        return F.adaptive_avg_pool2d(head(feat), 1).flatten(1)
    return head(F.adaptive_avg_pool2d(feat, 1).flatten(1))


def default_backbone(resolution: int) -> str:
    return "small" if resolution <= 64 else "resnet18" if resolution <= 256 else "resnet34"


def default_input_size(backbone: str, resolution: int) -> int:
    """Working size of the backbone: resnets see at most 256 px, the small net at most 64 px."""
    return min(resolution, 64 if backbone == "small" else 256)


def default_space(latent_spaces) -> str:
    return "w+" if "w+" in tuple(latent_spaces) else "z"


class Regressor(nn.Module):
    """Masked image -> latent of a fixed generator. Build with `build_regressor(G)` or from a config."""

    def __init__(
        self,
        *,
        generator_spec: str,
        space: str,
        backbone: str,
        resolution: int,
        channels: int,
        latent_shape: tuple[int, ...] | list[int],
        num_ws: int = 0,
        w_dim: int = 0,
        rgbm: bool = True,
        input_size: int | None = None,
        out_shape: tuple[int, ...] | list[int] | None = None,
    ):
        super().__init__()
        check_config_values(
            resolution=resolution, channels=channels, num_ws=num_ws, w_dim=w_dim, input_size=input_size,
            latent_shape=latent_shape, out_shape=out_shape,
        )  # fmt: skip
        if space not in SPACES:
            raise LatentcompError(f"unknown latent space {space!r}; accepted: {', '.join(SPACES)}")
        if backbone not in BACKBONES:
            raise LatentcompError(f"unknown backbone {backbone!r}; accepted: {', '.join(BACKBONES)}")
        if space in ("w", "w+") and (w_dim <= 0 or (space == "w+" and num_ws <= 0)):
            raise LatentcompError(
                f"space {space!r} needs the generator's w_dim and num_ws (got {w_dim}, {num_ws})"
            )
        self.generator_spec = str(generator_spec or "")
        self.space = space
        self.backbone_name = backbone
        self.resolution = int(resolution)
        self.channels = int(channels)
        self.latent_shape = tuple(int(s) for s in latent_shape)
        self.num_ws = int(num_ws)
        self.w_dim = int(w_dim)
        self.rgbm = bool(rgbm)
        self.input_size = int(input_size or default_input_size(backbone, self.resolution))

        in_ch = self.channels + 1 if self.rgbm else self.channels
        self.backbone = SmallConvNet(in_ch) if backbone == "small" else ResNetTrunk(backbone, in_ch)
        feat = self.backbone.out_channels
        default_shape = {"z": self.latent_shape, "w": (self.w_dim,), "w+": (self.num_ws, self.w_dim)}[space]
        self.out_shape: tuple[int, ...] = tuple(int(s) for s in (out_shape or default_shape))
        if space == "w+":
            self.head = nn.Conv2d(feat, math.prod(self.out_shape), kernel_size=1)
        else:
            self.head = nn.Linear(feat, math.prod(self.out_shape))

    # -- description -------------------------------------------------------------------------------
    @property
    def config(self) -> dict[str, Any]:
        return {
            "format": "latentcomp-regressor",
            "version": CONFIG_VERSION,
            "generator_spec": self.generator_spec,
            "space": self.space,
            "backbone": self.backbone_name,
            "resolution": self.resolution,
            "channels": self.channels,
            "latent_shape": list(self.latent_shape),
            "num_ws": self.num_ws,
            "w_dim": self.w_dim,
            "rgbm": self.rgbm,
            "input_size": self.input_size,
            "out_shape": list(self.out_shape),
        }

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Regressor:
        keys = (
            "generator_spec",
            "space",
            "backbone",
            "resolution",
            "channels",
            "latent_shape",
            "num_ws",
            "w_dim",
            "rgbm",
            "input_size",
            "out_shape",  # absent in files written before it was recorded: the space's usual shape
        )
        missing = [
            k for k in ("space", "backbone", "resolution", "channels", "latent_shape") if k not in config
        ]
        if missing:
            raise LatentcompError(f"regressor config lacks {', '.join(missing)}")
        return cls(**{k: config[k] for k in keys if k in config})

    def extra_repr(self) -> str:
        return (
            f"space={self.space}, backbone={self.backbone_name}, {self.channels}x{self.resolution}px "
            f"-> {self.input_size}px, rgbm={self.rgbm}, out={self.out_shape}, G={self.generator_spec!r}"
        )

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # -- forward -----------------------------------------------------------------------------------
    def prepare_input(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The backbone input: `[x * m, m]` (or `x * m` for RGB-only), resized to `input_size`."""
        if x.dim() == 3:
            x = x.unsqueeze(0)
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise LatentcompError(
                f"regressor expects images (N, {self.channels}, H, W); got {tuple(x.shape)}"
            )
        m = torch.ones_like(x[:, :1]) if mask is None else check_mask(mask, x)
        inp = torch.cat([x * m, m], dim=1) if self.rgbm else x * m
        if inp.shape[-1] != self.input_size or inp.shape[-2] != self.input_size:
            inp = F.interpolate(
                inp,
                size=(self.input_size, self.input_size),
                mode="bilinear",
                align_corners=False,
                antialias=inp.shape[-1] > self.input_size or inp.shape[-2] > self.input_size,
            )
        return inp

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        inp = self.prepare_input(x, mask)
        return trunk_forward(self.backbone, self.head, self.space, inp).view(inp.shape[0], *self.out_shape)

    def load_generator(self, device: str | torch.device | None = None, trust_code: bool = False):
        """The generator this regressor was trained for, loaded from the recorded spec.

        The spec comes from the model file, and a model file must not choose code to run: a `python:`
        spec (which imports and calls a module) is refused unless `trust_code=True`."""
        from ..generators import load_generator

        if not self.generator_spec:
            raise LatentcompError("this regressor records no generator spec; load the generator yourself")
        check_recorded_spec(self.generator_spec, trust_code, getattr(self, "source", "") or "this regressor")
        return load_generator(self.generator_spec, device=str(device) if device is not None else None)


def _is_int(v) -> bool:
    return isinstance(v, int | np.integer) and not isinstance(v, bool)


def check_config_values(latent_shape, out_shape=None, **values) -> None:
    """Refuse config values outside CONFIG_BOUNDS and latent shapes that are not 1 to MAX_LATENT_VALUES
    positive whole numbers, with one line naming the value and what is accepted."""
    for name, v in values.items():
        if v is None and name == "input_size":
            continue
        lo, hi = CONFIG_BOUNDS[name]
        if not _is_int(v) or not lo <= v <= hi:
            raise LatentcompError(f"{name} {v!r} is out of range; accepted: a whole number from {lo} to {hi}")
    for name, shape in (("latent_shape", latent_shape), ("out_shape", out_shape)):
        if shape is None and name == "out_shape":
            continue
        dims = list(shape) if isinstance(shape, list | tuple | torch.Size) else None
        if not dims or not all(_is_int(d) and d >= 1 for d in dims) or math.prod(dims) > MAX_LATENT_VALUES:
            raise LatentcompError(
                f"{name} {shape!r} is not a latent shape; accepted: a list of positive whole numbers with at "
                f"most {MAX_LATENT_VALUES:,} values in all"
            )


CODE_RUNNING_KINDS = ("python",)  # generator kinds whose loader imports and runs user code


def check_recorded_spec(spec: str, trust_code: bool, source: str) -> None:
    """Refuse a code-running generator spec that a model file (not the user) names."""
    kind = str(spec).split(":", 1)[0]
    if kind in CODE_RUNNING_KINDS and not trust_code:
        raise LatentcompError(
            f"{source} records the generator spec {spec!r}, which would import and run Python code named "
            "by the model file; a model file may not choose code to run. If you trust that code, name the "
            f"generator yourself: --generator {spec} on the command line, or "
            "Pipeline.from_pretrained(..., generator=SPEC) / trust_code=True in Python"
        )


def build_regressor(
    generator,
    space: str = "auto",
    backbone: str = "auto",
    rgbm: bool = True,
    input_size: int | None = None,
) -> Regressor:
    """A fresh (random-init) regressor for `generator` (a Generator; its spec, shapes and spaces)."""
    if space == "auto":
        space = default_space(generator.latent_spaces)
    if space not in generator.latent_spaces:
        raise LatentcompError(
            f"latent space {space!r} is not offered by {type(generator).__name__}; "
            f"accepted: {', '.join(generator.latent_spaces)}"
        )
    if backbone == "auto":
        backbone = default_backbone(int(generator.resolution))
    return Regressor(
        generator_spec=getattr(generator, "spec", "") or "",
        space=space,
        backbone=backbone,
        resolution=int(generator.resolution),
        channels=int(generator.channels),
        latent_shape=tuple(generator.latent_shape),
        num_ws=int(getattr(generator, "num_ws", 0) or 0),
        w_dim=int(getattr(generator, "w_dim", 0) or 0),
        rgbm=rgbm,
        input_size=input_size,
        out_shape=generator.space_shape(space) if hasattr(generator, "space_shape") else None,
    )
