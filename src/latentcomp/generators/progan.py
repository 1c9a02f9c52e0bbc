"""`progan:PATH`: Progressive GAN generators in two public layouts, depth and resolution read from weights.

(a) facebookresearch/pytorch_GAN_zoo PGAN files: `torch.save({"config": ..., "netG": sd, "netD": sd,
    "avgG": sd})`, where `config` is a `models.utils.config.BaseConfig` object (read as an inert stub, never
    imported) or a dict. The averaged generator `avgG` is preferred. Keys: `formatLayer.module.{weight,bias}`
    (a linear layer z -> 16 * depth0, reshaped to depth0 x 4 x 4), `groupScale0.0.module.*` (3x3 conv),
    `scaleLayers.i.{0,1}.module.*` (two 3x3 convs after a nearest 2x upsampling), `toRGBLayers.i.module.*`
    (1x1 convs; the last one makes the image). Keys may also lack the `.module` infix or carry a
    DataParallel `module.` prefix. Equalized learning rate the zoo way: the layer computes W x + b and then
    multiplies *the sum* by sqrt(2 / fan_in), so the bias is scaled too. z is pixel-normalised first, every
    activation is leaky ReLU (config `leakyReluLeak`, 0.2) followed by pixel norm, the output gets tanh when
    the config's loss criterion is MSE or DCGAN and is otherwise clamped to [-1, 1]; a config `alpha` > 0
    blends in the previous scale's toRGB output like the zoo does.
(b) GAN Dissect / ganseeing ProGAN (the layout the paper's authors used): `layer1.conv.weight` is a 4x4
    conv with padding 3 applied to z as a (N, 512, 1, 1) map, `layerN.conv.weight` / `layerN.wscale.b`
    for N >= 2 (even N: 3x3 conv; odd N >= 3: nearest 2x upsampling then 3x3 conv), and
    `output_RxR.conv.weight` / `.wscale.b` (1x1 conv to RGB). Each block is pixel norm -> (upsample) -> conv
    without bias -> x * gain / sqrt(fan_in) + b (bias *not* scaled; gain sqrt(2) / k, and 1 for the output)
    -> leaky ReLU 0.2; the output is clamped to [-1, 1]. The older `features.i.*` / `output.*` names are
    accepted too.
In both, z ~ N(0, I) with the dimension read from the first layer (512 for the released models).
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import LatentcompError
from ..safe_pickle import Stub, safe_load
from .base import Generator
from .registry import register_kind, require_file

ZOO_CONFIG_STUBS = ("models.utils.config.", "pytorch_GAN_zoo.models.utils.config.")


def pixel_norm(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + eps)


# ------------------------------------------------------------------------------------- (a) GAN zoo


class ZooEqualized(nn.Module):
    """pytorch_GAN_zoo's equalized layer: `module(x) * sqrt(2 / fan_in)` (scaled after the bias)."""

    def __init__(self, module: nn.Conv2d | nn.Linear, equalized: bool = True):
        super().__init__()
        self.module = module
        fan_in = math.prod(module.weight.shape[1:])
        self.scale = math.sqrt(2.0 / fan_in) if equalized else 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x) * self.scale


class ZooPGANNet(nn.Module):
    """The zoo's GNet at its final scale. depths: [depthScale0, depth of scale 1, ...]."""

    def __init__(
        self,
        dim_latent: int,
        depths: list[int],
        channels: int = 3,
        leak: float = 0.2,
        normalization: bool = True,
        equalized: bool = True,
        tanh: bool = False,
        alpha: float = 0.0,
    ):
        super().__init__()
        self.dim_latent, self.depths, self.channels = dim_latent, list(depths), channels
        self.leak, self.normalization, self.tanh, self.alpha = leak, normalization, tanh, float(alpha)
        d0 = depths[0]
        self.formatLayer = ZooEqualized(nn.Linear(dim_latent, 16 * d0), equalized)
        self.groupScale0 = nn.ModuleList([ZooEqualized(nn.Conv2d(d0, d0, 3, padding=1), equalized)])
        self.scaleLayers = nn.ModuleList()
        self.toRGBLayers = nn.ModuleList([ZooEqualized(nn.Conv2d(d0, channels, 1), equalized)])
        for prev, d in zip(depths[:-1], depths[1:], strict=True):
            self.scaleLayers.append(
                nn.ModuleList(
                    [
                        ZooEqualized(nn.Conv2d(prev, d, 3, padding=1), equalized),
                        ZooEqualized(nn.Conv2d(d, d, 3, padding=1), equalized),
                    ]
                )
            )
            self.toRGBLayers.append(ZooEqualized(nn.Conv2d(d, channels, 1), equalized))
        # parameter-free taps for `features()`: scale0 (4x4), scale1 (8x8), ...
        self.taps = nn.ModuleDict({f"scale{i}": nn.Identity() for i in range(len(depths))})
        self.out_tap = nn.Identity()
        self.resolution = 4 * 2 ** (len(depths) - 1)

    def _act(self, x: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(x, self.leak)
        return pixel_norm(x) if self.normalization else x

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = pixel_norm(z) if self.normalization else z
        x = self._act(self.formatLayer(x.flatten(1)).view(z.shape[0], -1, 4, 4))
        x = self._act(self.groupScale0[0](x))
        x = self.taps["scale0"](x)
        n = len(self.scaleLayers)
        y = None
        if self.alpha > 0 and n == 1:
            y = F.interpolate(self.toRGBLayers[-2](x), scale_factor=2, mode="nearest")
        for i, group in enumerate(self.scaleLayers):
            x = F.interpolate(x, scale_factor=2, mode="nearest")
            for conv in group:
                x = self._act(conv(x))
            x = self.taps[f"scale{i + 1}"](x)
            if self.alpha > 0 and i == n - 2:
                y = F.interpolate(self.toRGBLayers[-2](x), scale_factor=2, mode="nearest")
        x = self.toRGBLayers[-1](x)
        if y is not None:
            x = self.alpha * y + (1 - self.alpha) * x
        x = torch.tanh(x) if self.tanh else x.clamp(-1, 1)
        return self.out_tap(x)


def _config_dict(cfg) -> dict:
    if cfg is None:
        return {}
    if isinstance(cfg, dict):
        return dict(cfg)
    if isinstance(cfg, Stub):
        out = dict(cfg.state) if isinstance(cfg.state, dict) else {}
        out.update({k: v for k, v in vars(cfg).items() if k not in ("args", "kwargs", "state", "items")})
        return out
    return {k: v for k, v in vars(cfg).items()} if hasattr(cfg, "__dict__") else {}


def _canonical_zoo_keys(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    out = {}
    for k, v in sd.items():
        if k.startswith("module."):
            k = k[len("module."):]
        m = re.fullmatch(r"(.+?)(\.module)?\.(weight|bias)", k)
        if m and not m.group(2):
            k = f"{m.group(1)}.module.{m.group(3)}"
        out[k] = v
    return out


def build_zoo_net(sd: dict[str, torch.Tensor], config: dict, path: Path) -> ZooPGANNet:
    fw = sd.get("formatLayer.module.weight")
    if fw is None or fw.dim() != 2 or fw.shape[0] % 16:
        raise LatentcompError(
            f"{path}: PGAN generator lacks a valid formatLayer weight (expected formatLayer.module.weight of "
            f"shape (16 * depthScale0, dimLatent)); got {None if fw is None else tuple(fw.shape)}"
        )
    depths = [fw.shape[0] // 16]
    i = 0
    while f"scaleLayers.{i}.0.module.weight" in sd:
        depths.append(int(sd[f"scaleLayers.{i}.0.module.weight"].shape[0]))
        i += 1
    rgb = sd.get("toRGBLayers.0.module.weight")
    if rgb is None:
        raise LatentcompError(f"{path}: PGAN generator lacks toRGBLayers.0.module.weight")
    loss = str(config.get("lossCriterion", "WGANGP"))
    net = ZooPGANNet(
        int(fw.shape[1]),
        depths,
        channels=int(rgb.shape[0]),
        leak=float(config.get("leakyReluLeak", 0.2)),
        normalization=bool(config.get("perChannelNormalization", True)),
        equalized=bool(config.get("equalizedlR", True)),
        tanh=loss in ("MSE", "DCGAN"),
        alpha=float(config.get("alpha", 0.0) or 0.0),
    )
    load_exact(net, sd, path, f"PGAN generator (dimLatent={fw.shape[1]}, depths={depths})")
    return net


# --------------------------------------------------------------------------------- (b) GAN Dissect


class WScale(nn.Module):
    """x * gain / sqrt(fan_in) + b, the bias added after the scaling (key `wscale.b`)."""

    def __init__(self, size: int, fan_in: int, gain: float):
        super().__init__()
        self.scale = gain / math.sqrt(fan_in)
        self.b = nn.Parameter(torch.zeros(size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.b.view(1, -1, 1, 1)


class DissectBlock(nn.Module):
    """pixel norm, (nearest 2x), conv without bias, wscale, leaky ReLU 0.2; keys conv.weight, wscale.b."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, padding: int, up: bool = False, output=False):
        super().__init__()
        self.up, self.output = up, output
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, 1, padding, bias=False)
        self.wscale = WScale(out_ch, in_ch, 1.0 if output else math.sqrt(2) / kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = pixel_norm(x)
        if self.up:
            x = F.interpolate(x, scale_factor=2, mode="nearest")
        x = self.wscale(self.conv(x))
        return x.clamp(-1, 1) if self.output else F.leaky_relu(x, 0.2)


class DissectProGANNet(nn.Sequential):
    """sizes: [z dim, 4x4 depth, 8x8 depth, ...]; children layer1 .. layer{2 (len-1)}, output_RxR."""

    def __init__(self, sizes: list[int], channels: int = 3):
        blocks: list[tuple[str, nn.Module]] = [
            ("layer1", DissectBlock(sizes[0], sizes[1], 4, 3)),
            ("layer2", DissectBlock(sizes[1], sizes[1], 3, 1)),
        ]
        for si, so in zip(sizes[1:-1], sizes[2:], strict=True):
            blocks.append((f"layer{len(blocks) + 1}", DissectBlock(si, so, 3, 1, up=True)))
            blocks.append((f"layer{len(blocks) + 1}", DissectBlock(so, so, 3, 1)))
        res = 4 * 2 ** (len(sizes) - 2)
        blocks.append((f"output_{res}x{res}", DissectBlock(sizes[-1], channels, 1, 0, output=True)))
        super().__init__(OrderedDict(blocks))
        self.sizes, self.channels, self.resolution = list(sizes), channels, res

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return super().forward(z.reshape(z.shape[0], -1, 1, 1))


def _canonical_dissect_keys(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    if "features.0.conv.weight" not in sd:
        return sd
    out: dict[str, torch.Tensor] = {}
    n = 0
    for k, v in sd.items():
        m = re.fullmatch(r"features\.(\d+)\.(.+)", k)
        if m:
            out[f"layer{int(m.group(1)) + 1}.{m.group(2)}"] = v
            n = max(n, int(m.group(1)) + 1)
    res = 4 * 2 ** ((n - 1) // 2)
    for k, v in sd.items():
        if k.startswith("output."):
            out[f"output_{res}x{res}." + k[len("output."):]] = v
    return out


def build_dissect_net(sd: dict[str, torch.Tensor], path: Path) -> DissectProGANNet:
    sizes: list[int] = []
    i = 0
    while f"layer{i + 1}.conv.weight" in sd:
        w = sd[f"layer{i + 1}.conv.weight"]
        if i == 0:
            sizes.append(int(w.shape[1]))
        if i % 2 == 0:
            sizes.append(int(w.shape[0]))
        i += 1
    outs = [k for k in sd if re.fullmatch(r"output_\d+x\d+\.conv\.weight", k)]
    if i < 2 or i % 2 or len(outs) != 1:
        raise LatentcompError(
            f"{path}: incomplete GAN Dissect ProGAN state dict (expected layer1..layerK with even K and one "
            f"output_RxR.conv.weight; found {i} layers and outputs {outs})"
        )
    net = DissectProGANNet(sizes, channels=int(sd[outs[0]].shape[0]))
    load_exact(net, sd, path, f"GAN Dissect ProGAN (sizes={sizes})")
    return net


# ------------------------------------------------------------------------------------------ common


def load_exact(net: nn.Module, sd: dict[str, torch.Tensor], path: Path, what: str) -> None:
    """Load with exact keys and shapes; one-line errors naming the file, the tensor and the expected shape."""
    expected = net.state_dict()
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    if missing:
        raise LatentcompError(
            f"{path}: {what} is missing tensors {missing[:3]} (expected keys {list(expected)[:3]}...)"
        )
    if unexpected:
        raise LatentcompError(f"{path}: unexpected tensors {unexpected[:3]} for a {what}")
    for k, v in expected.items():
        if tuple(sd[k].shape) != tuple(v.shape):
            raise LatentcompError(
                f"{path}: tensor {k} has shape {tuple(sd[k].shape)}; expected {tuple(v.shape)} for a {what}"
            )
    net.load_state_dict({k: sd[k].float() for k in expected})


class ProGANGenerator(Generator):
    """Frozen `Generator` around a zoo or GAN Dissect ProGAN net: z ~ N(0, I), images in [-1, 1]."""

    latent_spaces = ("z",)
    prior = "normal"

    def __init__(self, net: ZooPGANNet | DissectProGANNet, layout: str):
        super().__init__()
        self.net, self.layout = net, layout
        self.latent_shape = (net.dim_latent,) if isinstance(net, ZooPGANNet) else (net.sizes[0],)
        self.resolution = net.resolution
        self.channels = net.channels
        self.freeze()

    def synthesize(self, latent: torch.Tensor, space: str) -> torch.Tensor:
        return self.net(latent.to(self.device, torch.float32))

    def feature_layers(self) -> dict[str, str]:
        """zoo: scale0 (4x4) .. scaleK, output; GAN Dissect: layer1 .. layerK, output."""
        if isinstance(self.net, ZooPGANNet):
            names = {k: f"net.taps.{k}" for k in self.net.taps}
            names["output"] = "net.out_tap"
            return names
        names = {}
        for name, _ in self.net.named_children():
            names["output" if name.startswith("output_") else name] = f"net.{name}"
        return names


def _is_tensor_dict(obj) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


@register_kind("progan")
def load_progan(location: str, use_avg: bool = True, **options) -> ProGANGenerator:
    if options:
        raise LatentcompError(f"progan:{location}: unknown options {sorted(options)}; accepted: use_avg")
    path = require_file(location, "ProGAN checkpoint")
    obj = safe_load(path, stub=ZOO_CONFIG_STUBS, what="ProGAN checkpoint")
    if isinstance(obj, dict) and ("netG" in obj or "avgG" in obj):
        key = "avgG" if use_avg and _is_tensor_dict(obj.get("avgG")) else "netG"
        sd = obj.get(key)
        if not _is_tensor_dict(sd):
            raise LatentcompError(f"{path}: PGAN file has no generator state dict under 'avgG' or 'netG'")
        net = build_zoo_net(_canonical_zoo_keys(sd), _config_dict(obj.get("config")), path)
        return ProGANGenerator(net, "pytorch_GAN_zoo")
    if isinstance(obj, dict) and _is_tensor_dict(obj.get("state_dict")):
        obj = obj["state_dict"]
    if _is_tensor_dict(obj):
        keys = set(obj)
        if any(re.search(r"(^|\.)formatLayer\.", k) for k in keys):
            return ProGANGenerator(build_zoo_net(_canonical_zoo_keys(obj), {}, path), "pytorch_GAN_zoo")
        sd = _canonical_dissect_keys(obj)
        if "layer1.conv.weight" in sd:
            return ProGANGenerator(build_dissect_net(sd, path), "gan_dissect")
    shown = sorted(obj)[:4] if isinstance(obj, dict) else type(obj).__name__
    raise LatentcompError(
        f"{path}: not a ProGAN checkpoint (expected a pytorch_GAN_zoo dict with 'config'/'netG'/'avgG', or a "
        f"GAN Dissect state dict with layer1.conv.weight, layerN.wscale.b; found {shown})"
    )
