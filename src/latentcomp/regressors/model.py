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

Two options change the shape of the network (both recorded in the config, so a file loads as it was trained):
- `head="pyramid"` (w+ only): a feature pyramid over the backbone's last three stages (fine / medium /
  coarse maps, a top-down pathway with 1x1 lateral convs) whose maps feed one small "map-to-style" head per
  w+ layer: coarse maps -> the first layers, medium -> the middle ones, fine -> the last ones (pSp's
  encoder, written from its paper's description; `pyramid_levels` gives the split), added to the pooled
  head of the plain regressor as a base (see PyramidHead).
- `iterative=True`: iterative regression (ReStyle's idea, from its paper). A second network, the refiner,
  sees `[x * m, m, G(w_t) * m]` and predicts a residual, `w_{t+1} = w_t + refiner(...)`, starting from the
  plain pass of this regressor (`iter_start="plain"`) or from the generator's mean latent ("mean");
  `iterations` passes in all (the plain pass counts as the first); the refiner's output is scaled by
  `residual_scale` (0.1, see RESIDUAL_SCALE). G is needed at every pass: bind it with
  `bind_generator(G)` (Pipeline and the trainer do) or pass `generator=` to the call. The refiner's last
  layer starts at zero, so a fresh iterative regressor warm-started from a plain one returns exactly the
  plain regressor's latents until training moves it.
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
HEADS = ("pool", "pyramid")  # pool: global pool + linear / 1x1 conv; pyramid: feature pyramid + map-to-style
ITER_STARTS = ("plain", "mean")
MAX_ITERATIONS = 10
# the refiner's output is multiplied by this: Adam moves every weight of a freshly zeroed last layer by about
# lr per step whatever its gradient, which at scale 1 made the first residuals noise as large as the latents
# (tiny StyleGAN2, 30 steps at lr 3e-4-1e-3 after a trained plain regressor: 3 passes 14-35% worse than 1);
# at 0.1 the extra passes were within 2% of the first after 50 steps and 10% better after 150
RESIDUAL_SCALE = 0.1
CONFIG_VERSION = 1  # plain pool-head regressors: the files every earlier version wrote and reads
CONFIG_VERSION_EXTENDED = 2  # files of pyramid or iterative regressors (older versions cannot build them)
# sane bounds for config values, checked before any layer is allocated (a config file could ask for a
# head of 10^12 weights, or a negative width, which would fail deep inside torch or exhaust memory)
CONFIG_BOUNDS = {"resolution": (4, 8192), "channels": (1, 4), "num_ws": (0, 64), "w_dim": (0, 8192),
                 "input_size": (4, 2048), "pyramid_width": (8, 2048)}  # fmt: skip
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
        self.stage_channels = self.widths
        self.stage_strides = (2, 4, 8, 16, 32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The output of every stage (strides 2 .. 32), the last one equal to forward(x)."""
        out = []
        for i in range(0, len(self.body), 3):
            x = self.body[i + 2](self.body[i + 1](self.body[i](x)))
            out.append(x)
        return out


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
        self.stage_channels = (64, 128, 256, 512)
        self.stage_strides = (4, 8, 16, 32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        x = self.stem(x)
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            out.append(x)
        return out


def pyramid_levels(num_ws: int) -> list[int]:
    """Pyramid level feeding each w+ layer: 0 = coarse, 1 = medium, 2 = fine.

    pSp's split for an 18-layer (1024 px) StyleGAN (layers 0-2 coarse, 3-6 medium, 7-17 fine) scaled to
    num_ws: the first round(3/18 num_ws) layers coarse, up to round(7/18 num_ws) medium, the rest fine, each
    level at least one layer where there are three or more (10 layers of a 64 px StyleGAN2: 2 / 2 / 6)."""
    if num_ws <= 0:
        return []
    if num_ws < 3:
        return [0, 2][:num_ws] if num_ws == 2 else [0]
    coarse = max(1, round(num_ws * 3 / 18))
    medium = max(coarse + 1, round(num_ws * 7 / 18))
    medium = min(medium, num_ws - 1)
    return [0 if i < coarse else 1 if i < medium else 2 for i in range(num_ws)]


class PyramidHead(nn.Module):
    """Feature pyramid + one map-to-style head per w+ layer, on top of a global base.

    Inputs: the backbone's last three stage maps (fine = stride 8, medium = 16, coarse = 32). Lateral 1x1
    convs bring each to `width` channels; the top-down pathway adds the upsampled coarser map (coarse ->
    medium -> fine). Layer i's head takes the map of its level (`pyramid_levels`), halves it with 3x3
    stride-2 convs + LeakyReLU(0.2) until it is at most 1x1 (then a global pool), and a linear layer gives
    that layer's latent. These per-layer outputs are added to a base: the pooled head of the plain
    regressor (a 1x1 conv of the last stage to every layer, global pool), where pSp adds the generator's
    mean latent. The per-layer linears start at zero, so the head starts as that base and a plain
    regressor's weights warm-start it exactly (`--init`). Output: (N, prod(out_shape)), the layer axis at
    out_shape[-2]."""

    def __init__(self, in_channels: tuple[int, int, int], map_sizes: tuple[int, int, int], width: int,
                 out_shape: tuple[int, ...], base_channels: int):  # fmt: skip
        super().__init__()
        if len(out_shape) < 2:
            raise LatentcompError(f"the pyramid head needs a w+ output (.., num_ws, w_dim); got {out_shape}")
        self.out_shape = tuple(out_shape)
        self.num_ws, self.w_dim = int(out_shape[-2]), int(out_shape[-1])
        self.lead = math.prod(out_shape[:-2])  # components before the layer axis (a GANsformer's k), else 1
        self.levels = pyramid_levels(self.num_ws)
        self.base = nn.Conv2d(base_channels, math.prod(out_shape), kernel_size=1)
        self.lateral = nn.ModuleList(nn.Conv2d(c, width, kernel_size=1) for c in in_channels)
        self.styles = nn.ModuleList()
        for level in self.levels:
            size, convs = int(map_sizes[2 - level]), []  # map_sizes: (fine, medium, coarse)
            while size > 1:
                convs += [nn.Conv2d(width, width, 3, stride=2, padding=1), nn.LeakyReLU(0.2)]
                size = (size + 1) // 2
            linear = nn.Linear(width, self.lead * self.w_dim)
            nn.init.zeros_(linear.weight)
            nn.init.zeros_(linear.bias)
            self.styles.append(nn.ModuleDict({"convs": nn.Sequential(*convs), "linear": linear}))

    def maps(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        """[coarse, medium, fine] pyramid maps (width channels) from the [fine, medium, coarse] stage maps."""
        fine, medium, coarse = (lat(f) for lat, f in zip(self.lateral, feats, strict=True))
        p_coarse = coarse
        p_medium = medium + F.interpolate(p_coarse, size=medium.shape[-2:], mode="nearest")
        p_fine = fine + F.interpolate(p_medium, size=fine.shape[-2:], mode="nearest")
        return [p_coarse, p_medium, p_fine]

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        base = F.adaptive_avg_pool2d(self.base(feats[-1]), 1).flatten(1)
        return base + self.layer_outputs(feats)

    def layer_outputs(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """The map-to-style part alone: (N, prod(out_shape))."""
        maps = self.maps(feats)
        outs = []
        for level, style in zip(self.levels, self.styles, strict=True):
            h = F.adaptive_avg_pool2d(style["convs"](maps[level]), 1).flatten(1)
            outs.append(style["linear"](h).view(-1, self.lead, self.w_dim))
        return torch.stack(outs, dim=2).flatten(1)  # (N, lead, num_ws, w_dim) flattened

    def zero_output(self) -> None:
        nn.init.zeros_(self.base.weight)
        nn.init.zeros_(self.base.bias)
        for style in self.styles:
            nn.init.zeros_(style["linear"].weight)
            nn.init.zeros_(style["linear"].bias)


def trunk_forward(backbone: nn.Module, head: nn.Module, space: str, inp: torch.Tensor) -> torch.Tensor:
    """Backbone, head and global pool: the prepared input -> the flat latent (N, prod(out_shape)).
    A function of its own so that `quantize.py` traces the same computation."""
    if isinstance(head, PyramidHead):
        return head(backbone.stages(inp)[-3:])
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


def default_pyramid_width(backbone: str) -> int:
    """Channels of the pyramid maps and map-to-style convs: 128 over the small net, 256 over resnets."""
    return 128 if backbone == "small" else 256


def default_space(latent_spaces) -> str:
    return "w+" if "w+" in tuple(latent_spaces) else "z"


def _make_backbone(name: str, in_channels: int) -> nn.Module:
    return SmallConvNet(in_channels) if name == "small" else ResNetTrunk(name, in_channels)


def _make_head(kind: str, backbone: nn.Module, space: str, out_shape: tuple[int, ...], input_size: int,
               pyramid_width: int) -> nn.Module:  # fmt: skip
    feat = backbone.out_channels
    if kind == "pyramid":
        strides = backbone.stage_strides[-3:]
        sizes = tuple(max(1, math.ceil(input_size / s)) for s in strides)
        return PyramidHead(tuple(backbone.stage_channels[-3:]), sizes, pyramid_width, out_shape, feat)
    if space == "w+":
        return nn.Conv2d(feat, math.prod(out_shape), kernel_size=1)
    return nn.Linear(feat, math.prod(out_shape))


def first_conv(backbone: nn.Module) -> nn.Conv2d:
    return backbone.body[0] if isinstance(backbone, SmallConvNet) else backbone.stem[0]


def difference_init(weight: torch.Tensor, image_channels: int) -> None:
    """In place: the first conv's weights on the last `image_channels` input channels (the current output
    G(w_t) * m) := minus those on the first ones (x * m). The refiner's first layer then starts by reading
    the error on the known pixels, (x - G(w_t)) * m, through the filters it has for images; the passes are
    to drive that error to zero. On the tiny StyleGAN2 (3 seeds, 50 steps from a trained plain regressor),
    this made 2 passes 1-23% better than 1, where zero weights there gave -1% to +13%."""
    c = int(image_channels)
    weight[:, -c:] = -weight[:, :c]


class Refiner(nn.Module):
    """The residual network of an iterative regressor: [x * m, m, G(w_t) * m] -> delta w (a backbone + head
    of the regressor's kinds, with C more input channels). Its last layer starts at zero (delta w = 0) and
    its first conv reads the known-pixel error (`difference_init`)."""

    def __init__(self, backbone: str, head: str, in_channels: int, space: str, out_shape: tuple[int, ...],
                 input_size: int, pyramid_width: int, image_channels: int):  # fmt: skip
        super().__init__()
        self.space = space
        self.backbone = _make_backbone(backbone, in_channels)
        self.head = _make_head(head, self.backbone, space, out_shape, input_size, pyramid_width)
        with torch.no_grad():  # see difference_init
            difference_init(first_conv(self.backbone).weight, image_channels)
        if isinstance(self.head, PyramidHead):
            self.head.zero_output()
        else:
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        return trunk_forward(self.backbone, self.head, self.space, inp)


class _GeneratorRef:
    """Holds the generator an iterative regressor calls, outside the module tree: not in the state dict,
    not moved by `.to()`, and shared (not copied) by `copy.deepcopy`: a copy of E belongs to the same G."""

    def __init__(self, generator):
        self.generator = generator

    def __deepcopy__(self, memo):
        return self


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
        head: str = "pool",
        pyramid_width: int | None = None,
        iterative: bool = False,
        iter_start: str = "plain",
        iterations: int = 1,
        residual_scale: float = RESIDUAL_SCALE,
    ):
        super().__init__()
        check_config_values(
            resolution=resolution, channels=channels, num_ws=num_ws, w_dim=w_dim, input_size=input_size,
            latent_shape=latent_shape, out_shape=out_shape, pyramid_width=pyramid_width,
        )  # fmt: skip
        if space not in SPACES:
            raise LatentcompError(f"unknown latent space {space!r}; accepted: {', '.join(SPACES)}")
        if backbone not in BACKBONES:
            raise LatentcompError(f"unknown backbone {backbone!r}; accepted: {', '.join(BACKBONES)}")
        if head not in HEADS:
            raise LatentcompError(f"unknown head {head!r}; accepted: {', '.join(HEADS)}")
        if head == "pyramid" and space != "w+":
            raise LatentcompError(
                f"the pyramid head feeds w+ layers; it needs space w+, not {space!r} (use head 'pool')"
            )
        if not isinstance(iterative, bool):
            raise LatentcompError(f"iterative must be true or false; got {iterative!r}")
        if iter_start not in ITER_STARTS:
            raise LatentcompError(
                f"unknown iteration start {iter_start!r}; accepted: {', '.join(ITER_STARTS)}"
            )
        if not _is_int(iterations) or not 1 <= iterations <= MAX_ITERATIONS:
            raise LatentcompError(
                f"iterations {iterations!r} is out of range; accepted: a whole number, 1 to {MAX_ITERATIONS}"
            )
        if isinstance(residual_scale, bool) or not isinstance(residual_scale, int | float) \
                or not 0 < residual_scale <= 10:  # fmt: skip
            raise LatentcompError(f"residual_scale {residual_scale!r} is out of range; accepted: (0, 10]")
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
        self.head_kind = head
        self.pyramid_width = int(pyramid_width or default_pyramid_width(backbone)) if head == "pyramid" else 0
        self.iterative = iterative
        self.iter_start = iter_start if iterative else "plain"
        self.iterations = int(iterations) if iterative else 1
        self.residual_scale = float(residual_scale)
        self._generator_ref = _GeneratorRef(None)

        in_ch = self.channels + 1 if self.rgbm else self.channels
        default_shape = {"z": self.latent_shape, "w": (self.w_dim,), "w+": (self.num_ws, self.w_dim)}[space]
        self.out_shape: tuple[int, ...] = tuple(int(s) for s in (out_shape or default_shape))
        if not (iterative and self.iter_start == "mean"):  # the plain pass (state keys backbone.*, head.*)
            self.backbone = _make_backbone(backbone, in_ch)
            self.head = _make_head(
                head, self.backbone, space, self.out_shape, self.input_size, self.pyramid_width
            )
        if iterative:
            refiner_in = in_ch + self.channels  # [x * m, m, G(w_t) * m]
            self.refiner = Refiner(
                backbone, head, refiner_in, space, self.out_shape, self.input_size, self.pyramid_width,
                self.channels,
            )  # fmt: skip
            if self.iter_start == "mean":
                self.register_buffer("mean_latent", torch.zeros(self.out_shape))

    # -- description -------------------------------------------------------------------------------
    @property
    def config(self) -> dict[str, Any]:
        cfg = {
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
        # the options below are written only where they are used, so a plain regressor's file is what
        # earlier versions wrote; a file that uses them says version 2, which earlier versions cannot build
        if self.head_kind != "pool":
            cfg.update(version=CONFIG_VERSION_EXTENDED, head=self.head_kind, pyramid_width=self.pyramid_width)
        if self.iterative:
            cfg.update(version=CONFIG_VERSION_EXTENDED, iterative=True, iter_start=self.iter_start,
                       iterations=self.iterations, residual_scale=self.residual_scale)  # fmt: skip
        return cfg

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
            "head",  # absent: "pool" (files before the pyramid head)
            "pyramid_width",
            "iterative",  # absent: a plain one-pass regressor (files before iterative regression)
            "iter_start",
            "iterations",
            "residual_scale",
        )
        missing = [
            k for k in ("space", "backbone", "resolution", "channels", "latent_shape") if k not in config
        ]
        if missing:
            raise LatentcompError(f"regressor config lacks {', '.join(missing)}")
        version = config.get("version", CONFIG_VERSION)
        if _is_int(version) and version > CONFIG_VERSION_EXTENDED:
            raise LatentcompError(
                f"regressor config version {version} was written by a newer latentcomp (this one reads up to "
                f"{CONFIG_VERSION_EXTENDED}); upgrade latentcomp"
            )
        return cls(**{k: config[k] for k in keys if k in config})

    def extra_repr(self) -> str:
        extra = f", head={self.head_kind}" if self.head_kind != "pool" else ""
        if self.iterative:
            extra += f", iterative (start {self.iter_start}, {self.iterations} passes)"
        return (
            f"space={self.space}, backbone={self.backbone_name}{extra}, {self.channels}x{self.resolution}px "
            f"-> {self.input_size}px, rgbm={self.rgbm}, out={self.out_shape}, G={self.generator_spec!r}"
        )

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    # -- the generator of an iterative regressor ------------------------------------------------------
    def bind_generator(self, generator) -> Regressor:
        """Remember G for the passes of an iterative regressor (not saved, not moved by `.to()`); returns
        self. Harmless for a plain regressor, which never calls it."""
        self._generator_ref.generator = generator
        return self

    @property
    def bound_generator(self):
        return self._generator_ref.generator

    def check_iterations(self, iterations: int | None) -> int:
        """The number of passes a call makes: `iterations`, or the recorded default when None."""
        if iterations is None:
            return self.iterations
        if not _is_int(iterations) or not 1 <= iterations <= MAX_ITERATIONS:
            raise LatentcompError(
                f"iterations must be a whole number from 1 to {MAX_ITERATIONS}; got {iterations!r}"
            )
        if iterations > 1 and not self.iterative:
            raise LatentcompError(
                f"iterations {iterations}: this regressor is a plain one-pass regressor; iterations above 1 "
                "need an iterative one (`latentcomp regressor train --iterative`)"
            )
        return int(iterations)

    # -- forward -----------------------------------------------------------------------------------
    def prepare_input(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The backbone input: `[x * m, m]` (or `x * m` for RGB-only), resized to `input_size`."""
        return self._prepare(x, mask)[0]

    def _prepare(self, x: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(backbone input, the mask at input size)."""
        if x.dim() == 3:
            x = x.unsqueeze(0)
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise LatentcompError(
                f"regressor expects images (N, {self.channels}, H, W); got {tuple(x.shape)}"
            )
        m = torch.ones_like(x[:, :1]) if mask is None else check_mask(mask, x)
        if m.shape[0] != x.shape[0]:
            m = m.expand(x.shape[0], -1, -1, -1)
        inp = self._resize(torch.cat([x * m, m], dim=1) if self.rgbm else x * m)
        m_in = inp[:, self.channels : self.channels + 1] if self.rgbm else self._resize(m)
        return inp, m_in

    def _resize(self, inp: torch.Tensor) -> torch.Tensor:
        if inp.shape[-1] != self.input_size or inp.shape[-2] != self.input_size:
            inp = F.interpolate(
                inp,
                size=(self.input_size, self.input_size),
                mode="bilinear",
                align_corners=False,
                antialias=inp.shape[-1] > self.input_size or inp.shape[-2] > self.input_size,
            )
        return inp

    def forward(
        self,
        x: torch.Tensor,
        mask: torch.Tensor | None = None,
        iterations: int | None = None,
        generator=None,
        trace: bool = False,
    ):
        """The latent (N, *out_shape). An iterative regressor makes `iterations` passes (default: the
        recorded number), calling G (`generator`, else the bound one) between them.

        `trace=True` (training) returns (latents, images): the latent after every pass and G's image of it
        (with gradients to that latent). Each pass sees the previous image detached and adds its residual to
        the detached previous latent, so gradients do not run across passes (ReStyle's training)."""
        inp, m_in = self._prepare(x, mask)
        n = inp.shape[0]
        if not self.iterative:
            self.check_iterations(iterations)
            latent = trunk_forward(self.backbone, self.head, self.space, inp).view(n, *self.out_shape)
            if not trace:
                return latent
            return [latent], [self._generate(generator or self._need_generator(), latent)]
        G = generator or self._need_generator()
        passes = self.check_iterations(iterations)
        latents, images = [], []
        image = None
        if self.iter_start == "plain":
            latent = trunk_forward(self.backbone, self.head, self.space, inp).view(n, *self.out_shape)
            passes -= 1
            if trace:
                image = self._generate(G, latent)
                latents.append(latent)
                images.append(image)
        else:
            latent = self.mean_latent.expand(n, *self.out_shape)
            image = self._generate(G, latent[:1]).expand(n, -1, -1, -1)  # the same image for every row
        for i in range(passes):
            if image is None or (i > 0 and not trace):
                image = self._generate(G, latent)
            # a pass sees [x * m, m, G(w_t) * m]: the current output on the known pixels only, so that E stays
            # a function of the known pixels. Training (trace) detaches what the pass sees; a plain call
            # keeps the whole graph, so that gradients with respect to x (refinement's latent term) are
            # those of the function E(x, m)
            seen, prev = (image.detach(), latent.detach()) if trace else (image, latent)
            step_in = torch.cat([inp, self._resize(seen.clamp(-1, 1)) * m_in], dim=1)
            latent = prev + self.residual_scale * self.refiner(step_in).view(n, *self.out_shape)
            if trace:
                image = self._generate(G, latent)
                latents.append(latent)
                images.append(image)
        return (latents, images) if trace else latent

    def _need_generator(self):
        G = self.bound_generator
        if G is None and not self.iterative:
            raise LatentcompError("trace=True generates the images: pass generator=G or bind_generator(G)")
        if G is None:
            raise LatentcompError(
                "this regressor is iterative: every pass after the first looks at G's image of the current "
                "latent, so it needs its generator. Pass generator=G, or call reg.bind_generator(G) once "
                "(Pipeline does this)"
            )
        return G

    def _generate(self, G, latent: torch.Tensor) -> torch.Tensor:
        """G's image of a latent in fp32 (also under an autocast region: only E runs in lower precision)."""
        with torch.autocast(latent.device.type, enabled=False):
            return G(latent.float(), space=self.space)

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
        if v is None and name in ("input_size", "pyramid_width"):
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
    head: str = "pool",
    pyramid_width: int | None = None,
    iterative: bool = False,
    iter_start: str = "plain",
    iterations: int = 3,
) -> Regressor:
    """A fresh (random-init) regressor for `generator` (a Generator; its spec, shapes and spaces).

    `iterative=True` builds an iterative regressor making `iterations` passes by default, bound to
    `generator`; its `iter_start="mean"` variant records the generator's mean latent."""
    if space == "auto":
        space = default_space(generator.latent_spaces)
    if space not in generator.latent_spaces:
        raise LatentcompError(
            f"latent space {space!r} is not offered by {type(generator).__name__}; "
            f"accepted: {', '.join(generator.latent_spaces)}"
        )
    if backbone == "auto":
        backbone = default_backbone(int(generator.resolution))
    reg = Regressor(
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
        head=head,
        pyramid_width=pyramid_width,
        iterative=iterative,
        iter_start=iter_start,
        iterations=iterations if iterative else 1,
    )
    reg.bind_generator(generator)
    if iterative:
        if reg.iter_start == "mean":
            from ..generators.base import mean_latent

            with torch.no_grad():
                reg.mean_latent.copy_(mean_latent(generator, space).reshape(reg.out_shape).cpu())
    return reg
