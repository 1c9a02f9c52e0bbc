"""StyleGAN2 generator in the rosinality/stylegan2-pytorch state-dict layout, plus the `stylegan2:` kind.

`StyleGAN2Net` is a trainable nn.Module (used to train the bundled models and to load checkpoints);
`StyleGAN2Generator` is the frozen `Generator` wrapper that `load_generator("stylegan2:PATH")` returns.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from .ops import EqualLinear, FusedLeakyReLU, ModulatedConv2d, Upsample


def default_channels(size: int, channel_multiplier: int = 2) -> dict[int, int]:
    """rosinality's per-resolution widths for resolutions 4..size."""
    cm = channel_multiplier
    table = {4: 512, 8: 512, 16: 512, 32: 512, 64: 256 * cm, 128: 128 * cm, 256: 64 * cm, 512: 32 * cm,
             1024: 16 * cm}
    return {r: table[r] for r in table if r <= size}


class PixelNorm(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(torch.mean(x**2, dim=1, keepdim=True) + 1e-8)


class ConstantInput(nn.Module):
    def __init__(self, channels: int, size: int = 4):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size))

    def forward(self, batch: int) -> torch.Tensor:
        return self.input.repeat(batch, 1, 1, 1)


class NoiseInjection(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        if noise is None:
            noise = torch.zeros(x.shape[0], 1, x.shape[2], x.shape[3], device=x.device, dtype=x.dtype)
        return x + self.weight * noise


class StyledConv(nn.Module):
    """ModulatedConv2d -> noise -> bias + lrelu. Keys: conv.*, noise.weight, activate.bias."""

    def __init__(self, in_ch, out_ch, kernel_size, style_dim, upsample=False, blur_kernel=(1, 3, 3, 1)):
        super().__init__()
        self.conv = ModulatedConv2d(in_ch, out_ch, kernel_size, style_dim, upsample=upsample,
                                    blur_kernel=blur_kernel)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_ch)

    def forward(self, x, style, noise=None):
        return self.activate(self.noise(self.conv(x, style), noise))


class ToRGB(nn.Module):
    """1x1 modulated conv (no demodulation) + bias, plus the upsampled skip. Keys: conv.*, bias, upsample.kernel."""

    def __init__(self, in_ch, style_dim, img_channels=3, upsample=True, blur_kernel=(1, 3, 3, 1)):
        super().__init__()
        if upsample:
            self.upsample = Upsample(blur_kernel)
        self.conv = ModulatedConv2d(in_ch, img_channels, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, img_channels, 1, 1))

    def forward(self, x, style, skip=None):
        out = self.conv(x, style) + self.bias
        if skip is not None:
            out = out + self.upsample(skip)
        return out


class StyleGAN2Net(nn.Module):
    """Trainable StyleGAN2 generator with rosinality's state-dict keys.

    size: output resolution (power of two >= 4); channels: {resolution: width} overriding the defaults
    from `channel_multiplier`; img_channels: 1 or 3. The w+ latent has `num_ws = 2*log2(size) - 2` rows.
    Output images are NOT clamped (StyleGAN2 has no tanh); values are roughly in [-1, 1] once trained.
    """

    def __init__(
        self,
        size: int,
        style_dim: int = 512,
        n_mlp: int = 8,
        channels: dict[int, int] | None = None,
        channel_multiplier: int = 2,
        img_channels: int = 3,
        lr_mlp: float = 0.01,
        blur_kernel: Sequence[float] = (1, 3, 3, 1),
    ):
        super().__init__()
        log_size = int(round(math.log2(size)))
        if size < 4 or 2**log_size != size:
            raise ValueError(f"StyleGAN2 size must be a power of two >= 4, got {size}")
        chans = default_channels(size, channel_multiplier) if channels is None else {}
        if channels is not None:
            chans = {int(k): int(v) for k, v in channels.items()}
            missing = [2**i for i in range(2, log_size + 1) if 2**i not in chans]
            if missing:
                raise ValueError(f"channels must give a width for every resolution 4..{size}; missing {missing}")
        self.size = size
        self.log_size = log_size
        self.style_dim = style_dim
        self.n_mlp = n_mlp
        self.img_channels = img_channels
        self.lr_mlp = lr_mlp
        self.blur_kernel = tuple(float(k) for k in blur_kernel)
        self.channels = {2**i: chans[2**i] for i in range(2, log_size + 1)}
        self.num_layers = (log_size - 2) * 2 + 1
        self.num_ws = self.n_latent = log_size * 2 - 2

        self.style = nn.Sequential(
            PixelNorm(),
            *[EqualLinear(style_dim, style_dim, lr_mul=lr_mlp, activation="fused_lrelu") for _ in range(n_mlp)],
        )
        c4 = self.channels[4]
        self.input = ConstantInput(c4)
        self.conv1 = StyledConv(c4, c4, 3, style_dim, blur_kernel=blur_kernel)
        self.to_rgb1 = ToRGB(c4, style_dim, img_channels, upsample=False)

        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        self.noises = nn.Module()
        for layer_idx in range(self.num_layers):
            res = (layer_idx + 5) // 2
            self.noises.register_buffer(f"noise_{layer_idx}", torch.randn(1, 1, 2**res, 2**res))
        in_ch = c4
        for i in range(3, log_size + 1):
            out_ch = self.channels[2**i]
            self.convs.append(StyledConv(in_ch, out_ch, 3, style_dim, upsample=True, blur_kernel=blur_kernel))
            self.convs.append(StyledConv(out_ch, out_ch, 3, style_dim, blur_kernel=blur_kernel))
            self.to_rgbs.append(ToRGB(out_ch, style_dim, img_channels, blur_kernel=blur_kernel))
            in_ch = out_ch

    def config(self) -> dict:
        """Constructor arguments (JSON-serialisable) that rebuild this architecture."""
        return {
            "size": self.size,
            "style_dim": self.style_dim,
            "n_mlp": self.n_mlp,
            "channels": {str(k): v for k, v in self.channels.items()},
            "img_channels": self.img_channels,
            "lr_mlp": self.lr_mlp,
            "blur_kernel": list(self.blur_kernel),
        }

    # ----------------------------------------------------------------------------------------------
    def mapping(self, z: torch.Tensor) -> torch.Tensor:
        """z (N, style_dim) -> w (N, style_dim)."""
        return self.style(z)

    @torch.no_grad()
    def mean_latent(self, n: int = 4096, generator: torch.Generator | None = None) -> torch.Tensor:
        """Average w of n random z (1, style_dim), the usual truncation centre."""
        dev = self.input.input.device
        z = torch.randn(n, self.style_dim, generator=generator).to(dev)
        return self.style(z).mean(0, keepdim=True)

    def make_noise(self, batch: int = 1, generator: torch.Generator | None = None) -> list[torch.Tensor]:
        dev = self.input.input.device
        return [torch.randn(batch, 1, *getattr(self.noises, f"noise_{i}").shape[2:], generator=generator).to(dev)
                for i in range(self.num_layers)]

    def _noise(self, noise_mode: str, batch: int, ref: torch.Tensor) -> list[torch.Tensor | None]:
        if noise_mode == "const":
            return [getattr(self.noises, f"noise_{i}").to(ref.dtype) for i in range(self.num_layers)]
        if noise_mode == "random":
            return [torch.randn(batch, 1, *getattr(self.noises, f"noise_{i}").shape[2:], device=ref.device,
                                dtype=ref.dtype) for i in range(self.num_layers)]
        if noise_mode == "none":
            return [None] * self.num_layers
        raise ValueError(f"noise_mode must be 'const', 'random' or 'none', got {noise_mode!r}")

    def synthesis(
        self,
        wplus: torch.Tensor,
        noise_mode: str = "const",
        noise: Sequence[torch.Tensor | None] | None = None,
        return_features: bool = False,
    ):
        """w+ (N, num_ws, style_dim) -> image (N, img_channels, size, size), unclamped.

        noise_mode: "const" (the stored `noises.noise_i` buffers), "random" (fresh N(0,1)) or "none";
        an explicit `noise` list (one tensor per layer, `num_layers` entries) overrides it.
        With return_features, also returns {layer name: activation} for "conv4x4", "convs.0", ...
        """
        if wplus.ndim != 3 or wplus.shape[1] != self.num_ws or wplus.shape[2] != self.style_dim:
            raise ValueError(
                f"wplus must have shape (N, {self.num_ws}, {self.style_dim}), got {tuple(wplus.shape)}"
            )
        batch = wplus.shape[0]
        if noise is None:
            noise = self._noise(noise_mode, batch, wplus)
        feats: dict[str, torch.Tensor] = {}
        out = self.input(batch).to(wplus.dtype)
        out = self.conv1(out, wplus[:, 0], noise=noise[0])
        feats["conv4x4"] = out
        skip = self.to_rgb1(out, wplus[:, 1])
        i = 1
        for j, to_rgb in enumerate(self.to_rgbs):
            out = self.convs[2 * j](out, wplus[:, i], noise=noise[2 * j + 1])
            feats[f"convs.{2 * j}"] = out
            out = self.convs[2 * j + 1](out, wplus[:, i + 1], noise=noise[2 * j + 2])
            feats[f"convs.{2 * j + 1}"] = out
            skip = to_rgb(out, wplus[:, i + 2], skip)
            i += 2
        return (skip, feats) if return_features else skip

    def truncate(self, w: torch.Tensor, truncation: float, truncation_latent: torch.Tensor | None) -> torch.Tensor:
        if truncation == 1:
            return w
        if truncation_latent is None:
            raise ValueError("truncation != 1 needs truncation_latent (e.g. net.mean_latent(4096))")
        center = truncation_latent.reshape(1, *([1] * (w.ndim - 2)), -1).to(w)
        return center + truncation * (w - center)

    def to_wplus(self, latent: torch.Tensor, space: str = "z") -> torch.Tensor:
        if space == "z":
            latent = self.mapping(latent)
            space = "w"
        if space == "w":
            return latent.unsqueeze(1).repeat(1, self.num_ws, 1)
        if space == "w+":
            return latent
        raise ValueError(f"space must be 'z', 'w' or 'w+', got {space!r}")

    def forward(
        self,
        latent: torch.Tensor,
        space: str = "z",
        truncation: float = 1.0,
        truncation_latent: torch.Tensor | None = None,
        noise_mode: str | None = None,
    ) -> torch.Tensor:
        """z (N, style_dim) | w (N, style_dim) | w+ (N, num_ws, style_dim) -> image.

        noise_mode None means "random" in training mode and "const" in eval mode.
        """
        wplus = self.to_wplus(latent, space)
        wplus = self.truncate(wplus, truncation, truncation_latent)
        if noise_mode is None:
            noise_mode = "random" if self.training else "const"
        return self.synthesis(wplus, noise_mode=noise_mode)


# --------------------------------------------------------------------------------------------------
# our own on-disk format: safetensors weights + JSON config
FORMAT_NAME = "latentcomp-stylegan2"
FORMAT_VERSION = 1


def _format_paths(path) -> tuple[Path, Path]:
    """A folder -> (folder/generator.safetensors, folder/generator.json); X.safetensors -> (X.safetensors, X.json)."""
    p = Path(path).expanduser()
    if p.suffix == ".safetensors":
        return p, p.with_suffix(".json")
    if p.suffix == ".json":
        return p.with_suffix(".safetensors"), p
    return p / "generator.safetensors", p / "generator.json"


def save_stylegan2(
    net: StyleGAN2Net,
    path,
    extra_config: dict | None = None,
    latent_avg: torch.Tensor | None = None,
) -> Path:
    """Save `net` in latentcomp's StyleGAN2 format; returns the .safetensors path.

    path: a folder (written as folder/generator.safetensors + folder/generator.json) or a file name
    ending in .safetensors (config written beside it as .json). The safetensors file holds the
    rosinality-layout state dict plus `latent_avg` (1, style_dim) (computed from 4096 z when not
    given); the JSON holds {"format", "version", "architecture": net.config(), **extra_config}.
    Load it back with `load_stylegan2_net(path)` or `load_generator("stylegan2:PATH")`.
    """
    from safetensors.torch import save_file

    weights_path, config_path = _format_paths(path)
    weights_path.parent.mkdir(parents=True, exist_ok=True)
    if latent_avg is None:
        latent_avg = net.mean_latent(4096, generator=torch.Generator().manual_seed(0))
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in net.state_dict().items()}
    tensors["latent_avg"] = latent_avg.detach().to("cpu", torch.float32).reshape(1, -1).contiguous()
    config = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "architecture": net.config()}
    for k, v in (extra_config or {}).items():
        if k in config:
            raise ValueError(f"extra_config may not override {k!r}")
        config[k] = v
    save_file(tensors, str(weights_path), metadata={"format": FORMAT_NAME})
    config_path.write_text(json.dumps(config, indent=2) + "\n")
    return weights_path
