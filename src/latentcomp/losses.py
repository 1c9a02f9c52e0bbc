"""Perceptual loss (LPIPS) without downloads.

The `lpips` package ships its own linear-layer weights; its backbone (torchvision AlexNet or VGG16)
needs ImageNet weights, which torchvision would download. Here nothing downloads: the backbone is
built with random weights and its ImageNet state dict is loaded from
  1. the path given (`weights=...`, the CLI's `--lpips-weights PATH`), or
  2. torchvision's file in the torch hub cache, `torch.hub.get_dir()/checkpoints/`
     (alexnet-owt-7be5be79.pth, vgg16-397923af.pth).
If neither exists, `load_lpips` raises a LatentcompError naming the missing file and the way out
(`--lpips none`).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .errors import LatentcompError
from .safe_pickle import load_reason

LPIPS_NETS = ("alex", "vgg")
#: torchvision's file names for the ImageNet weights of the LPIPS backbones
BACKBONE_FILES = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth"}
_GLOBS = {"alex": "alexnet-*.pth", "vgg": "vgg16-*.pth"}


def hub_checkpoint_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def find_lpips_backbone(net: str = "alex", weights: str | Path | None = None) -> Path:
    """The ImageNet backbone weights for LPIPS-`net`: the given path, else the torch hub cache."""
    if net not in LPIPS_NETS:
        raise LatentcompError(f"unknown LPIPS network {net!r}; accepted: {', '.join(LPIPS_NETS)} (or 'none')")
    if weights is not None:
        p = Path(weights).expanduser()
        if not p.is_file():
            raise LatentcompError(f"LPIPS backbone weights file not found: {p}")
        return p
    folder = hub_checkpoint_dir()
    exact = folder / BACKBONE_FILES[net]
    if exact.is_file():
        return exact
    others = sorted(p for p in folder.glob(_GLOBS[net]) if "_bn" not in p.name) if folder.is_dir() else []
    if others:
        return others[0]
    raise LatentcompError(
        f"LPIPS-{net} needs torchvision's ImageNet weights and nothing is downloaded: "
        f"file not found: {exact}. "
        f"Copy {BACKBONE_FILES[net]} there, pass --lpips-weights PATH, or train without it: --lpips none"
    )


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path))
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is a user-facing error
        raise LatentcompError(f"cannot read LPIPS backbone weights {path}: {load_reason(e)}") from None
    if isinstance(sd, dict) and "state_dict" in sd and isinstance(sd["state_dict"], dict):
        sd = sd["state_dict"]
    if not isinstance(sd, dict):
        raise LatentcompError(f"LPIPS backbone weights {path} hold no state dict")
    return sd


def _backbone_state(model: nn.Module, sd: dict[str, torch.Tensor], path: Path, net: str) -> dict:
    """Map torchvision keys `features.N.*` (or LPIPS keys `net.sliceK.N.*`) onto the LPIPS trunk."""
    mapped: dict[str, torch.Tensor] = {}
    for slice_name, block in model.net.named_children():
        for idx, layer in block.named_children():
            for pname in dict(layer.named_parameters(recurse=False)):
                for key in (f"features.{idx}.{pname}", f"net.{slice_name}.{idx}.{pname}"):
                    if key in sd:
                        mapped[f"{slice_name}.{idx}.{pname}"] = sd[key]
                        break
    expected = {k for k, _ in model.net.named_parameters()}
    if set(mapped) != expected:
        missing = sorted(expected - set(mapped))
        raise LatentcompError(
            f"{path} is not an ImageNet {'AlexNet' if net == 'alex' else 'VGG16'} state dict for LPIPS-{net} "
            f"(missing e.g. {missing[0]}; expected torchvision keys like features.0.weight)"
        )
    own = model.net.state_dict()
    for k, v in mapped.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise LatentcompError(
                f"{path}: tensor for {k} has shape {tuple(v.shape)}, expected {tuple(own[k].shape)}"
            )
    return mapped


class PerceptualLoss(nn.Module):
    """LPIPS distance per image, (N,), for images in [-1, 1] with 1 or 3 channels.

    Grey images are repeated to RGB; images are resized (bilinear) to at least `min_size` (AlexNet
    needs about 64 px) and at most `max_size` (the paper computes LPIPS at 256 px). Frozen.
    """

    def __init__(self, net: str = "alex", weights: str | Path | None = None, min_size: int = 64,
                 max_size: int = 256):  # fmt: skip
        super().__init__()
        import lpips

        path = find_lpips_backbone(net, weights)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torchvision's deprecation notice for pretrained=False
            model = lpips.LPIPS(net=net, pretrained=False, pnet_rand=True, verbose=False)
        lin_path = Path(lpips.__file__).parent / "weights" / "v0.1" / f"{net}.pth"
        if not lin_path.is_file():
            raise LatentcompError(f"the lpips package lacks its linear-layer weights: {lin_path}")
        lin = torch.load(lin_path, map_location="cpu", weights_only=True)
        model.load_state_dict(lin, strict=False)
        model.net.load_state_dict(_backbone_state(model, _read_state_dict(path), path, net))
        model.eval()
        for p in model.parameters():
            p.requires_grad_(False)
        self.model = model
        self.net = net
        self.weights_path = str(path)
        self.min_size = min_size
        self.max_size = max_size

    def train(self, mode: bool = True) -> PerceptualLoss:  # stays in eval mode (no dropout)
        return super().train(False)

    def _prep(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        elif x.shape[1] != 3:
            raise LatentcompError(
                f"LPIPS takes 1- or 3-channel images; got {x.shape[1]} channels (use --lpips none)"
            )
        h, w = x.shape[-2:]
        s = (
            max(self.min_size / min(h, w), 1.0)
            if min(h, w) < self.min_size
            else min(self.max_size / max(h, w), 1.0)
        )
        if s != 1.0:
            size = (max(1, round(h * s)), max(1, round(w * s)))
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=s < 1.0)
        return x

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.model(self._prep(a), self._prep(b)).flatten()


def load_lpips(
    net: str = "alex", weights: str | Path | None = None, device: str | torch.device | None = None
) -> PerceptualLoss:
    """LPIPS-`net` ("alex" or "vgg") with no download (see module doc); raises LatentcompError if missing."""
    loss = PerceptualLoss(net, weights)
    return loss.to(device) if device is not None else loss
