"""StyleGAN2 generator in the rosinality/stylegan2-pytorch state-dict layout, plus the `stylegan2:` kind.

`StyleGAN2Net` is a trainable nn.Module (used to train the bundled models and to load checkpoints);
`StyleGAN2Generator` is the frozen `Generator` wrapper that `load_generator("stylegan2:PATH")` returns.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from ..errors import LatentcompError
from .base import Generator
from .ops import Blur, EqualConv2d, EqualLinear, FusedLeakyReLU, ModulatedConv2d, Upsample
from .own_format import load_pair, save_pair
from .registry import register_kind


def default_channels(size: int, channel_multiplier: int = 2) -> dict[int, int]:
    """rosinality's per-resolution widths for resolutions 4..size."""
    cm = channel_multiplier
    table = {
        4: 512,
        8: 512,
        16: 512,
        32: 512,
        64: 256 * cm,
        128: 128 * cm,
        256: 64 * cm,
        512: 32 * cm,
        1024: 16 * cm,
    }
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
        self.conv = ModulatedConv2d(
            in_ch, out_ch, kernel_size, style_dim, upsample=upsample, blur_kernel=blur_kernel
        )
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_ch)

    def forward(self, x, style, noise=None):
        return self.activate(self.noise(self.conv(x, style), noise))


class ToRGB(nn.Module):
    """1x1 modulated conv (no demodulation) + bias + upsampled skip. Keys: conv.*, bias, upsample.kernel."""

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
                raise ValueError(
                    f"channels must give a width for every resolution 4..{size}; missing {missing}"
                )
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
            *[
                EqualLinear(style_dim, style_dim, lr_mul=lr_mlp, activation="fused_lrelu")
                for _ in range(n_mlp)
            ],
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
        return [
            torch.randn(batch, 1, *getattr(self.noises, f"noise_{i}").shape[2:], generator=generator).to(dev)
            for i in range(self.num_layers)
        ]

    def _noise(self, noise_mode: str, batch: int, ref: torch.Tensor) -> list[torch.Tensor | None]:
        if noise_mode == "const":
            return [getattr(self.noises, f"noise_{i}").to(ref.dtype) for i in range(self.num_layers)]
        if noise_mode == "random":
            return [
                torch.randn(
                    batch,
                    1,
                    *getattr(self.noises, f"noise_{i}").shape[2:],
                    device=ref.device,
                    dtype=ref.dtype,
                )
                for i in range(self.num_layers)
            ]
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

    def truncate(
        self, w: torch.Tensor, truncation: float, truncation_latent: torch.Tensor | None
    ) -> torch.Tensor:
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
# discriminator (rosinality layout), for training the bundled models
class ConvLayer(nn.Sequential):
    """[Blur] -> EqualConv2d -> [FusedLeakyReLU]; keys `0.*`, `1.*`, `2.*` as in rosinality."""

    def __init__(
        self, in_ch, out_ch, kernel_size, downsample=False, blur_kernel=(1, 3, 3, 1), bias=True, activate=True
    ):
        layers: list[nn.Module] = []
        if downsample:
            p = (len(blur_kernel) - 2) + (kernel_size - 1)
            layers.append(Blur(blur_kernel, pad=((p + 1) // 2, p // 2)))
            stride, padding = 2, 0
        else:
            stride, padding = 1, kernel_size // 2
        layers.append(
            EqualConv2d(
                in_ch, out_ch, kernel_size, stride=stride, padding=padding, bias=bias and not activate
            )
        )
        if activate:
            layers.append(FusedLeakyReLU(out_ch))
        super().__init__(*layers)


class ResBlock(nn.Module):
    def __init__(self, in_ch, out_ch, blur_kernel=(1, 3, 3, 1)):
        super().__init__()
        self.conv1 = ConvLayer(in_ch, in_ch, 3)
        self.conv2 = ConvLayer(in_ch, out_ch, 3, downsample=True, blur_kernel=blur_kernel)
        self.skip = ConvLayer(
            in_ch, out_ch, 1, downsample=True, blur_kernel=blur_kernel, activate=False, bias=False
        )

    def forward(self, x):
        return (self.conv2(self.conv1(x)) + self.skip(x)) / math.sqrt(2)


class StyleGAN2Discriminator(nn.Module):
    """Residual StyleGAN2 discriminator (rosinality keys: convs.*, final_conv.*, final_linear.*).

    x (N, img_channels, size, size) -> logits (N, 1). `channels` as in StyleGAN2Net.
    Minibatch-stddev groups of up to 4 (the largest divisor of N that is <= 4).
    """

    def __init__(
        self,
        size: int,
        channels: dict[int, int] | None = None,
        channel_multiplier: int = 2,
        img_channels: int = 3,
        blur_kernel: Sequence[float] = (1, 3, 3, 1),
    ):
        super().__init__()
        log_size = int(round(math.log2(size)))
        if size < 4 or 2**log_size != size:
            raise ValueError(f"size must be a power of two >= 4, got {size}")
        chans = (
            default_channels(size, channel_multiplier)
            if channels is None
            else {int(k): int(v) for k, v in channels.items()}
        )
        convs: list[nn.Module] = [ConvLayer(img_channels, chans[size], 1)]
        in_ch = chans[size]
        for i in range(log_size, 2, -1):
            out_ch = chans[2 ** (i - 1)]
            convs.append(ResBlock(in_ch, out_ch, blur_kernel))
            in_ch = out_ch
        self.convs = nn.Sequential(*convs)
        self.stddev_group = 4
        self.stddev_feat = 1
        self.final_conv = ConvLayer(in_ch + 1, chans[4], 3)
        self.final_linear = nn.Sequential(
            EqualLinear(chans[4] * 4 * 4, chans[4], activation="fused_lrelu"), EqualLinear(chans[4], 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.convs(x)
        batch, c, h, w = out.shape
        group = max(g for g in range(1, min(batch, self.stddev_group) + 1) if batch % g == 0)
        s = out.view(group, -1, self.stddev_feat, c // self.stddev_feat, h, w)
        s = torch.sqrt(s.var(0, unbiased=False) + 1e-8).mean([2, 3, 4], keepdim=True).squeeze(2)
        s = s.repeat(group, 1, h, w)
        out = self.final_conv(torch.cat([out, s], 1))
        return self.final_linear(out.view(batch, -1))


# --------------------------------------------------------------------------------------------------
# our own on-disk format: safetensors weights + JSON config
FORMAT_NAME = "latentcomp-stylegan2"
FORMAT_VERSION = 1


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
    if latent_avg is None:
        latent_avg = net.mean_latent(4096, generator=torch.Generator().manual_seed(0))
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in net.state_dict().items()}
    tensors["latent_avg"] = latent_avg.detach().to("cpu", torch.float32).reshape(1, -1).contiguous()
    return save_pair(path, tensors, FORMAT_NAME, FORMAT_VERSION, net.config(), extra_config)


# --------------------------------------------------------------------------------------------------
# reading checkpoints (rosinality .pt and our safetensors format)
def _strip_prefix(sd: dict, prefix: str) -> dict:
    if sd and all(k.startswith(prefix) for k in sd):
        return {k[len(prefix) :]: v for k, v in sd.items()}
    return sd


def infer_stylegan2_config(sd: dict, where: str) -> dict:
    """Architecture (size, style_dim, n_mlp, channels, img_channels) from rosinality-layout key shapes."""
    try:
        mlp = sorted(int(k.split(".")[1]) for k in sd if k.startswith("style.") and k.endswith(".weight"))
        n_rgb = len({k.split(".")[1] for k in sd if k.startswith("to_rgbs.") and k.endswith(".conv.weight")})
        style_dim = int(sd["style.1.weight"].shape[1])
        channels = {4: int(sd["input.input"].shape[1])}
        for j in range(n_rgb):
            channels[2 ** (j + 3)] = int(sd[f"convs.{2 * j}.conv.weight"].shape[1])
        img_channels = int(sd["to_rgb1.conv.weight"].shape[1])
    except (KeyError, IndexError, ValueError, AttributeError) as e:
        raise LatentcompError(
            f"{where}: not a StyleGAN2 (rosinality layout) generator state dict (problem with key {e}); "
            "expected keys style.N.weight, input.input, conv1.*, to_rgb1.*, convs.i.*, to_rgbs.i.*"
        ) from None
    if mlp != list(range(1, len(mlp) + 1)):
        raise LatentcompError(f"{where}: mapping layers style.N must be numbered 1..n_mlp, found {mlp}")
    return {
        "size": 2 ** (n_rgb + 2),
        "style_dim": style_dim,
        "n_mlp": len(mlp),
        "channels": channels,
        "img_channels": img_channels,
    }


def build_and_load(arch: dict, sd: dict, where: str) -> StyleGAN2Net:
    """Build a StyleGAN2Net from `arch` and load `sd`, with one-line errors naming the file on mismatch."""
    try:
        net = StyleGAN2Net(
            int(arch["size"]),
            style_dim=int(arch["style_dim"]),
            n_mlp=int(arch["n_mlp"]),
            channels={int(k): int(v) for k, v in arch["channels"].items()},
            img_channels=int(arch.get("img_channels", 3)),
            lr_mlp=float(arch.get("lr_mlp", 0.01)),
            blur_kernel=arch.get("blur_kernel", (1, 3, 3, 1)),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise LatentcompError(f"{where}: invalid StyleGAN2 architecture config {arch} ({e})") from None
    own = net.state_dict()
    missing = [k for k in own if k not in sd and not k.startswith("noises.")]
    unexpected = [k for k in sd if k not in own]
    desc = f"a {net.size}px StyleGAN2 (style_dim {net.style_dim}, n_mlp {net.n_mlp}, channels {net.channels})"
    if missing or unexpected:
        raise LatentcompError(
            f"{where}: keys do not match {desc}: missing {missing[:4]}{'...' if len(missing) > 4 else ''}, "
            f"unexpected {unexpected[:4]}{'...' if len(unexpected) > 4 else ''}"
        )
    for k, v in sd.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise LatentcompError(
                f"{where}: {k} has shape {tuple(v.shape)}; expected {tuple(own[k].shape)} for {desc}"
            )
    # checkpoints without stored noise get fixed noise from seed 0 (reproducible)
    g = torch.Generator().manual_seed(0)
    for k in own:
        if k.startswith("noises.") and k not in sd:
            own[k] = torch.randn(own[k].shape, generator=g)
    own.update({k: v.to(own[k].dtype) for k, v in sd.items()})
    net.load_state_dict(own)
    return net


def _is_own_format(p: Path) -> bool:
    return p.is_dir() or p.suffix in (".safetensors", ".json")


def load_stylegan2_net(path) -> tuple[StyleGAN2Net, torch.Tensor | None, dict]:
    """Read a StyleGAN2 checkpoint -> (net, latent_avg (1, style_dim) or None, config dict).

    Accepts a rosinality `.pt` ({"g_ema": sd, "latent_avg", "g", "d", "args", ...}, or a bare g_ema state
    dict) and latentcomp's format (folder with generator.safetensors + generator.json, or X.safetensors
    with X.json beside it). No code from the file is executed.
    """
    p = Path(path).expanduser()
    if _is_own_format(p):
        tensors, config, weights_path, _ = load_pair(p, FORMAT_NAME, "StyleGAN2")
        arch = config["architecture"]
        latent_avg = tensors.pop("latent_avg", None)
        net = build_and_load(arch, tensors, str(weights_path))
        return net, latent_avg, config

    from ..safe_pickle import safe_load

    ckpt = safe_load(p, stub=("argparse.Namespace",), what="StyleGAN2 checkpoint")
    if not isinstance(ckpt, dict):
        raise LatentcompError(
            f"{p}: expected a rosinality checkpoint dict with 'g_ema'; got {type(ckpt).__name__}"
        )
    if "g_ema" in ckpt:
        sd, which = ckpt["g_ema"], "g_ema"
    elif "g" in ckpt:
        sd, which = ckpt["g"], "g"
    elif "style.1.weight" in ckpt or any(k.endswith("style.1.weight") for k in ckpt if isinstance(k, str)):
        sd, which = ckpt, "state_dict"
    else:
        keys = ", ".join(map(str, list(ckpt)[:8]))
        raise LatentcompError(f"{p}: no 'g_ema' or 'g' generator in this checkpoint (keys: {keys})")
    if not isinstance(sd, dict):
        raise LatentcompError(f"{p}: '{which}' is a {type(sd).__name__}; expected a state dict")
    sd = {
        k: v
        for k, v in _strip_prefix(_strip_prefix(dict(sd), "module."), "generator.").items()
        if isinstance(v, torch.Tensor)
    }
    arch = infer_stylegan2_config(sd, str(p))
    net = build_and_load(arch, sd, str(p))
    latent_avg = ckpt.get("latent_avg") if which != "state_dict" else None
    if latent_avg is not None:
        if not isinstance(latent_avg, torch.Tensor) or latent_avg.numel() != net.style_dim:
            shape = (
                tuple(latent_avg.shape) if isinstance(latent_avg, torch.Tensor) else type(latent_avg).__name__
            )
            raise LatentcompError(f"{p}: latent_avg has shape {shape}; expected ({net.style_dim},)")
        latent_avg = latent_avg.float().reshape(1, -1)
    args = ckpt.get("args")
    config = {"format": "rosinality", "state_dict": which, "architecture": net.config()}
    state = getattr(args, "state", None) or getattr(args, "kwargs", None)
    if isinstance(state, dict):
        config["args"] = {
            k: v for k, v in state.items() if isinstance(v, (int, float, str, bool, type(None)))
        }
    return net, latent_avg, config


class StyleGAN2Generator(Generator):
    """Frozen StyleGAN2 (`stylegan2:PATH`): spaces z, w, w+; fixed noise; output clamped to [-1, 1].

    truncation: psi applied in the mapping (z -> w), towards `latent_avg` (stored in the checkpoint, or
    the mean w of 4096 z drawn with seed 0). Latents given in w or w+ are used as they are.
    noise_mode: "const" (default, the stored noise buffers), "random" or "none".
    """

    latent_spaces = ("z", "w", "w+")
    prior = "normal"

    def __init__(
        self,
        net: StyleGAN2Net,
        latent_avg: torch.Tensor | None = None,
        truncation: float = 1.0,
        noise_mode: str = "const",
        clamp: bool = True,
        config: dict | None = None,
    ):
        super().__init__()
        if noise_mode not in ("const", "random", "none"):
            raise LatentcompError(f"noise_mode {noise_mode!r} not accepted; expected const, random or none")
        self.net = net
        self.latent_shape = (net.style_dim,)
        self.resolution = net.size
        self.channels = net.img_channels
        self.num_ws = net.num_ws
        self.w_dim = net.style_dim
        self.truncation = float(truncation)
        self.noise_mode = noise_mode
        self.clamp = clamp
        self.config = dict(config or {})
        if latent_avg is None:
            latent_avg = net.mean_latent(4096, generator=torch.Generator().manual_seed(0))
        self.register_buffer("latent_avg", latent_avg.detach().float().reshape(1, -1).clone())
        self.freeze()

    def map_z(self, z: torch.Tensor) -> torch.Tensor:
        w = self.net.mapping(z)
        if self.truncation != 1:
            w = self.latent_avg + self.truncation * (w - self.latent_avg)
        return w

    def synthesize(self, latent: torch.Tensor, space: str) -> torch.Tensor:
        img = self.net.synthesis(self.to_wplus(latent, space), noise_mode=self.noise_mode)
        return img.clamp(-1, 1) if self.clamp else img

    def feature_layers(self) -> dict[str, str]:
        """conv4x4, convs.0 .. convs.K (two per resolution 8..size: the upsampling conv, then the
        plain one), rgb4x4 .. rgb{size} (the accumulated RGB skip image at each resolution), mapping (w)."""
        names = {"mapping": "net.style", "conv4x4": "net.conv1", "rgb4x4": "net.to_rgb1"}
        for i in range(len(self.net.convs)):
            names[f"convs.{i}"] = f"net.convs.{i}"
        for j in range(len(self.net.to_rgbs)):
            r = 2 ** (j + 3)
            names[f"rgb{r}x{r}"] = f"net.to_rgbs.{j}"
        return names

    def layer_resolutions(self) -> dict[str, int]:
        """Feature layer name -> spatial size of its output."""
        out = {"conv4x4": 4, "rgb4x4": 4}
        for i in range(len(self.net.convs)):
            out[f"convs.{i}"] = 2 ** (i // 2 + 3)
        for j in range(len(self.net.to_rgbs)):
            out[f"rgb{2 ** (j + 3)}x{2 ** (j + 3)}"] = 2 ** (j + 3)
        return out


@register_kind("stylegan2")
def load_stylegan2(
    location: str,
    truncation: float = 1.0,
    noise_mode: str = "const",
    clamp: bool = True,
    **unused,
) -> StyleGAN2Generator:
    """`stylegan2:PATH` (rosinality .pt, a latentcomp folder, or X.safetensors + X.json)."""
    if unused:
        raise LatentcompError(
            f"stylegan2: unknown option(s) {', '.join(unused)}; accepted: truncation, noise_mode, clamp"
        )
    p = Path(location).expanduser()
    if not p.exists() and p.suffix not in (".safetensors", ".json"):
        raise LatentcompError(f"StyleGAN2 checkpoint not found: {p}")
    net, latent_avg, config = load_stylegan2_net(p)
    return StyleGAN2Generator(
        net, latent_avg, truncation=truncation, noise_mode=noise_mode, clamp=clamp, config=config
    )
