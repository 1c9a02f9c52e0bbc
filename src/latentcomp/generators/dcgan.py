"""`dcgan:PATH`: DCGAN generators in the pytorch/examples layout.

The pytorch/examples DCGAN `netG` is one `nn.Sequential` called `main`: a 4x4 ConvTranspose2d from the
(nz, 1, 1) latent, then (BatchNorm2d, ReLU, ConvTranspose2d 4/2/1) blocks that halve the channels and
double the size, and a final Tanh. Its state dict keys are therefore `main.0.weight`, `main.1.*`,
`main.3.weight`, ..., with the last ConvTranspose2d at `main.{3 (L-1)}` for L transposed convolutions.
nz, ngf, nc and the resolution (4 * 2**(L-1): 32, 64, 128, ...) are read from the weight shapes.

`DCGANNet(nz, ngf, nc, resolution)` builds a trainable network with exactly that key layout;
`save_dcgan(net, path)` / `load_dcgan_net(path)` store it as safetensors plus a JSON config (our format).
`dcgan:PATH` accepts both a `torch.save`d state dict (`.pth`/`.pt`) and our `.safetensors` file.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import torch
from torch import nn

from ..errors import LatentcompError
from ..io import atomic_write, write_text
from ..safe_pickle import safe_load
from .base import Generator
from .registry import register_kind, require_file

FORMAT = "latentcomp-dcgan"


class DCGANNet(nn.Module):
    """Trainable DCGAN generator with the pytorch/examples key layout (`main.N.*`).

    Maps z of shape (N, nz) or (N, nz, 1, 1) to images (N, nc, resolution, resolution) in [-1, 1].
    resolution must be 4 * 2**k with k >= 1 (8, 16, 32, 64, 128, ...); the channels are
    ngf * 2**(L-2), ..., ngf * 2, ngf, nc for the L transposed convolutions (64x64: ngf*8 ... ngf).
    """

    def __init__(self, nz: int = 100, ngf: int = 64, nc: int = 3, resolution: int = 64):
        super().__init__()
        n_convs = _n_convs_for(resolution)
        self.nz, self.ngf, self.nc, self.resolution = int(nz), int(ngf), int(nc), int(resolution)
        layers: list[nn.Module] = []
        in_ch = self.nz
        for i in range(n_convs - 1):
            out_ch = self.ngf * 2 ** (n_convs - 2 - i)
            stride, pad = (1, 0) if i == 0 else (2, 1)
            layers += [
                nn.ConvTranspose2d(in_ch, out_ch, 4, stride, pad, bias=False),
                nn.BatchNorm2d(out_ch),
                nn.ReLU(True),
            ]
            in_ch = out_ch
        layers += [nn.ConvTranspose2d(in_ch, self.nc, 4, 2, 1, bias=False), nn.Tanh()]
        self.main = nn.Sequential(*layers)

    @property
    def config(self) -> dict:
        return {
            "format": FORMAT, "nz": self.nz, "ngf": self.ngf, "nc": self.nc, "resolution": self.resolution
        }

    def reset_parameters_dcgan(self, generator: torch.Generator | None = None) -> DCGANNet:
        """The DCGAN paper's init: conv weights N(0, 0.02), BN weights N(1, 0.02), BN bias 0."""
        with torch.no_grad():
            for m in self.modules():
                if isinstance(m, nn.ConvTranspose2d):
                    m.weight.copy_(torch.randn(m.weight.shape, generator=generator) * 0.02)
                elif isinstance(m, nn.BatchNorm2d):
                    m.weight.copy_(1 + torch.randn(m.weight.shape, generator=generator) * 0.02)
                    m.bias.zero_()
        return self

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.dim() == 2:
            z = z[:, :, None, None]
        return self.main(z)


def _n_convs_for(resolution: int) -> int:
    k = math.log2(resolution / 4) if resolution > 0 else -1
    if resolution < 8 or k != int(k):
        raise LatentcompError(
            f"DCGAN resolution {resolution} is not supported; "
            "accepted: 4 * 2**k with k >= 1 (8, 16, 32, 64, ...)"
        )
    return int(k) + 1


# ---------------------------------------------------------------------------------------------- reading


def _unwrap_state_dict(obj, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(obj, nn.Module):  # pragma: no cover - safe_load never builds modules
        obj = obj.state_dict()
    if isinstance(obj, dict) and not isinstance(obj.get("main.0.weight"), torch.Tensor):
        for key in ("netG", "generator", "state_dict", "model"):
            if key in obj and isinstance(obj[key], dict):
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not any(isinstance(v, torch.Tensor) for v in obj.values()):
        raise LatentcompError(
            f"{path}: not a DCGAN state dict (expected a dict of tensors with keys main.N.*)"
        )
    sd = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if all(k.startswith("module.") for k in sd):
        sd = {k[len("module."):]: v for k, v in sd.items()}
    return sd


def infer_dcgan_config(sd: dict[str, torch.Tensor], path: str | Path = "checkpoint") -> dict:
    """nz, ngf, nc, resolution from the ConvTranspose2d weight shapes of a `main.N.*` state dict."""
    conv_idx = sorted(
        int(m.group(1))
        for k, v in sd.items()
        if (m := re.fullmatch(r"main\.(\d+)\.weight", k)) and v.dim() == 4
    )
    if len(conv_idx) < 2:
        raise LatentcompError(
            f"{path}: no DCGAN generator weights found (expected pytorch/examples keys main.0.weight, "
            f"main.3.weight, ... with 4-D ConvTranspose2d weights; got keys like {sorted(sd)[:4]})"
        )
    first, last = sd[f"main.{conv_idx[0]}.weight"], sd[f"main.{conv_idx[-1]}.weight"]
    return {
        "format": FORMAT,
        "nz": int(first.shape[0]),
        "ngf": int(last.shape[0]),
        "nc": int(last.shape[1]),
        "resolution": 4 * 2 ** (len(conv_idx) - 1),
    }


def _check_and_load(net: nn.Module, sd: dict[str, torch.Tensor], path: Path) -> None:
    expected = net.state_dict()
    missing = [k for k in expected if k not in sd and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in sd if k not in expected]
    if missing or unexpected:
        what = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise LatentcompError(
            f"{path}: keys do not match a DCGAN generator {_cfg_str(net)} ({what}; expected keys: "
            f"{', '.join(list(expected)[:4])}, ...)"
        )
    for k, v in expected.items():
        if k in sd and tuple(sd[k].shape) != tuple(v.shape):
            raise LatentcompError(
                f"{path}: tensor {k} has shape {tuple(sd[k].shape)}; expected {tuple(v.shape)} for a DCGAN "
                f"generator {_cfg_str(net)}"
            )
    net.load_state_dict({k: sd[k].to(v.dtype) for k, v in expected.items() if k in sd}, strict=False)


def _cfg_str(net) -> str:
    return f"(nz={net.nz}, ngf={net.ngf}, nc={net.nc}, resolution={net.resolution})"


def _read_json_config(path: Path) -> dict | None:
    side = path.with_suffix(".json")
    if side.is_file():
        try:
            return json.loads(side.read_text())
        except json.JSONDecodeError as e:
            raise LatentcompError(f"{side}: invalid JSON config ({e})") from None
    return None


def load_dcgan_net(path: str | Path) -> DCGANNet:
    """A trainable `DCGANNet` (train mode, gradients on) from a `.safetensors` (+ JSON) or a `.pth` file."""
    path = require_file(path, "DCGAN checkpoint")
    if path.suffix == ".safetensors":
        from safetensors import safe_open
        from safetensors.torch import load_file

        try:
            sd = load_file(str(path))
            with safe_open(str(path), framework="pt") as f:
                meta = f.metadata() or {}
        except Exception as e:
            raise LatentcompError(f"{path}: cannot read safetensors file ({type(e).__name__}: {e})") from None
        cfg = _read_json_config(path)
        if cfg is None and "config" in meta:
            cfg = json.loads(meta["config"])
        if cfg is None:
            cfg = infer_dcgan_config(sd, path)
    else:
        sd = _unwrap_state_dict(safe_load(path, what="DCGAN checkpoint"), path)
        cfg = infer_dcgan_config(sd, path)
    try:
        net = DCGANNet(cfg["nz"], cfg["ngf"], cfg["nc"], cfg["resolution"])
    except KeyError as e:
        raise LatentcompError(f"{path}: DCGAN config lacks {e}; expected nz, ngf, nc, resolution") from None
    _check_and_load(net, sd, path)
    return net


def save_dcgan(net: DCGANNet, path: str | Path, extra: dict | None = None) -> Path:
    """Write `path` (.safetensors, config also in its metadata) and `path.with_suffix('.json')` atomically."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        path = path.with_suffix(".safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    cfg = {**net.config, **(extra or {})}
    sd = {k: v.detach().contiguous().cpu() for k, v in net.state_dict().items()}
    atomic_write(path, lambda tmp: save_file(sd, str(tmp), metadata={"config": json.dumps(cfg, default=str)}))
    write_text(path.with_suffix(".json"), json.dumps(cfg, indent=2, default=str) + "\n")
    return path


# ---------------------------------------------------------------------------------------------- wrapper


class DCGANGenerator(Generator):
    """Frozen `Generator` around a `DCGANNet`: z ~ N(0, I) of shape (nz,), images in [-1, 1]."""

    latent_spaces = ("z",)
    prior = "normal"

    def __init__(self, net: DCGANNet):
        super().__init__()
        self.net = net
        self.latent_shape = (net.nz,)
        self.resolution = net.resolution
        self.channels = net.nc
        self.freeze()

    def synthesize(self, latent: torch.Tensor, space: str) -> torch.Tensor:
        return self.net(latent.to(self.device, torch.float32))

    def feature_layers(self) -> dict[str, str]:
        """`layer1` .. `layerK`: the ReLU output of each upsampling block; `output`: the image."""
        names: dict[str, str] = {}
        n = 0
        for i, m in enumerate(self.net.main):
            if isinstance(m, nn.ReLU):
                n += 1
                names[f"layer{n}"] = f"net.main.{i}"
            elif isinstance(m, nn.Tanh):
                names["output"] = f"net.main.{i}"
        return names


@register_kind("dcgan")
def load_dcgan(location: str, **options) -> DCGANGenerator:
    if options:
        raise LatentcompError(f"dcgan:{location}: unknown options {sorted(options)}; dcgan takes none")
    return DCGANGenerator(load_dcgan_net(location))
