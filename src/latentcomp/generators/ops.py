"""StyleGAN2 building blocks as plain PyTorch ops (CPU and CUDA, no compiled extensions).

- `upfirdn2d`: upsample by zero insertion, pad (negative = crop), FIR-filter, downsample.
- `fused_leaky_relu`: bias + leaky ReLU(0.2) + gain sqrt(2), written with ordinary autograd ops (double
  backward works, as R1 / path-length regularisation need).
- `EqualLinear`, `EqualConv2d`: equalized learning rate (weights stored at unit variance, scaled at run
  time by 1/sqrt(fan_in) * lr_mul).
- `ModulatedConv2d`: style modulation, optional demodulation, optional 2x upsampling (transposed conv +
  [1,3,3,1] blur) or 2x downsampling (blur + strided conv).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def make_kernel(k: Sequence[float] | torch.Tensor) -> torch.Tensor:
    """1D taps -> normalised 2D separable kernel (outer product, sums to 1); 2D input is only normalised."""
    k = torch.as_tensor(k, dtype=torch.float32)
    if k.ndim == 1:
        k = k[None, :] * k[:, None]
    return k / k.sum()


def _pad4(pad: Sequence[int]) -> tuple[int, int, int, int]:
    pad = tuple(int(p) for p in pad)
    if len(pad) == 2:  # (before, after) for both axes
        return pad[0], pad[1], pad[0], pad[1]
    if len(pad) == 4:  # (x0, x1, y0, y1)
        return pad  # type: ignore[return-value]
    raise ValueError(f"pad must have 2 or 4 entries, got {pad}")


def upfirdn2d(
    x: torch.Tensor,
    kernel: torch.Tensor,
    up: int | tuple[int, int] = 1,
    down: int | tuple[int, int] = 1,
    pad: Sequence[int] = (0, 0),
) -> torch.Tensor:
    """Upsample (zero insertion), pad, convolve with `kernel` (true convolution), downsample.

    x: (N, C, H, W); kernel: (kh, kw); up/down: int or (x, y); pad: (p0, p1) for both axes or
    (x0, x1, y0, y1); negative pads crop. Output height: (H*up_y + y0 + y1 - kh) // down_y + 1.

    The filter is one depthwise conv (groups=C) whose stride does the downsampling: a single convolution
    kernel rather than one shifted slice per filter tap, so the blur costs little next to the modulated
    convolutions on a CPU, and computes only the output pixels that downsampling keeps.
    """
    upx, upy = (up, up) if isinstance(up, int) else up
    downx, downy = (down, down) if isinstance(down, int) else down
    x0, x1, y0, y1 = _pad4(pad)
    n, c, h, w = x.shape
    out = x
    if upx > 1 or upy > 1:
        out = out.reshape(n, c, h, 1, w, 1)
        out = F.pad(out, [0, upx - 1, 0, 0, 0, upy - 1])
        out = out.reshape(n, c, h * upy, w * upx)
    # positive pads grow, negative pads crop
    out = F.pad(out, [max(x0, 0), max(x1, 0), max(y0, 0), max(y1, 0)])
    out = out[
        :,
        :,
        max(-y0, 0) : out.shape[2] - max(-y1, 0),
        max(-x0, 0) : out.shape[3] - max(-x1, 0),
    ]
    weight = torch.flip(kernel, [0, 1]).to(dtype=out.dtype, device=out.device)
    weight = weight[None, None].expand(c, 1, *weight.shape)
    return F.conv2d(out, weight, stride=(downy, downx), groups=c)


def fused_leaky_relu(
    x: torch.Tensor, bias: torch.Tensor | None = None, negative_slope: float = 0.2, scale: float = 2**0.5
) -> torch.Tensor:
    """leaky_relu(x + bias, slope) * scale, bias broadcast along dim 1."""
    if bias is not None:
        shape = [1, -1] + [1] * (x.ndim - 2)
        x = x + bias.view(shape)
    return F.leaky_relu(x, negative_slope) * scale


class FusedLeakyReLU(nn.Module):
    """Per-channel bias + scaled leaky ReLU (state-dict key: `bias`)."""

    def __init__(self, channels: int, negative_slope: float = 0.2, scale: float = 2**0.5):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))
        self.negative_slope = negative_slope
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fused_leaky_relu(x, self.bias, self.negative_slope, self.scale)


class EqualLinear(nn.Module):
    """Linear layer with equalized lr: y = x @ (W * lr_mul / sqrt(in)).T + b * lr_mul.

    `activation="fused_lrelu"` applies the bias inside `fused_leaky_relu` instead.
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        bias: bool = True,
        bias_init: float = 0.0,
        lr_mul: float = 1.0,
        activation: str | None = None,
    ):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim).div_(lr_mul))
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init))) if bias else None
        self.scale = (1 / math.sqrt(in_dim)) * lr_mul
        self.lr_mul = lr_mul
        self.activation = activation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = self.bias * self.lr_mul if self.bias is not None else None
        if self.activation:
            return fused_leaky_relu(F.linear(x, self.weight * self.scale), bias)
        return F.linear(x, self.weight * self.scale, bias=bias)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[1]}, {self.weight.shape[0]}, lr_mul={self.lr_mul}, act={self.activation}"


class EqualConv2d(nn.Module):
    """Conv2d with equalized lr (weight scaled by 1/sqrt(in*k*k) at run time)."""

    def __init__(
        self, in_ch: int, out_ch: int, kernel_size: int, stride: int = 1, padding: int = 0, bias=True
    ):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel_size, kernel_size))
        self.scale = 1 / math.sqrt(in_ch * kernel_size**2)
        self.stride = stride
        self.padding = padding
        self.bias = nn.Parameter(torch.zeros(out_ch)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, bias=self.bias, stride=self.stride, padding=self.padding)


class Blur(nn.Module):
    """FIR filter with padding (buffer `kernel`, times upsample_factor**2 when used after upsampling)."""

    def __init__(self, kernel: Sequence[float], pad: tuple[int, int], upsample_factor: int = 1):
        super().__init__()
        k = make_kernel(kernel)
        if upsample_factor > 1:
            k = k * (upsample_factor**2)
        self.register_buffer("kernel", k)
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, pad=self.pad)


class Upsample(nn.Module):
    """2x FIR upsampling (buffer `kernel`)."""

    def __init__(self, kernel: Sequence[float], factor: int = 2):
        super().__init__()
        self.factor = factor
        self.register_buffer("kernel", make_kernel(kernel) * (factor**2))
        p = self.kernel.shape[0] - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, up=self.factor, down=1, pad=self.pad)


class ModulatedConv2d(nn.Module):
    """Modulated (and optionally demodulated) conv; keys `weight` (1, out, in, k, k), `modulation.*`,
    and `blur.kernel` when resampling."""

    def __init__(
        self,
        in_ch: int,
        out_ch: int,
        kernel_size: int,
        style_dim: int,
        demodulate: bool = True,
        upsample: bool = False,
        downsample: bool = False,
        blur_kernel: Sequence[float] = (1, 3, 3, 1),
    ):
        super().__init__()
        self.eps = 1e-8
        self.kernel_size = kernel_size
        self.in_channel = in_ch
        self.out_channel = out_ch
        self.upsample = upsample
        self.downsample = downsample
        self.demodulate = demodulate
        if upsample:
            factor = 2
            p = (len(blur_kernel) - factor) - (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2 + factor - 1, p // 2 + 1), upsample_factor=factor)
        if downsample:
            factor = 2
            p = (len(blur_kernel) - factor) + (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2, p // 2))
        self.scale = 1 / math.sqrt(in_ch * kernel_size**2)
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.randn(1, out_ch, in_ch, kernel_size, kernel_size))
        self.modulation = EqualLinear(style_dim, in_ch, bias_init=1.0)

    #: fused = per-sample weights in one grouped conv (the reference formulation). The unfused path
    #: scales activations instead (x * s, shared-weight conv, * demod): the same maths, and several
    #: times faster on CPU because grouped-conv backward is slow there, so it is the default.
    fused = False

    def _forward_unfused(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        batch, in_ch = x.shape[:2]
        s = self.modulation(style)  # (N, in)
        weight = self.scale * self.weight[0]  # (out, in, k, k)
        x = x * s.view(batch, in_ch, 1, 1)
        if self.upsample:
            out = self.blur(F.conv_transpose2d(x, weight.transpose(0, 1), padding=0, stride=2))
        elif self.downsample:
            out = F.conv2d(self.blur(x), weight, padding=0, stride=2)
        else:
            out = F.conv2d(x, weight, padding=self.padding)
        if self.demodulate:
            # sum over in, k, k of (w * s)^2 = (w^2 summed over k, k) @ s^2
            demod = torch.rsqrt(s.pow(2) @ weight.pow(2).sum([2, 3]).t() + self.eps)  # (N, out)
            out = out * demod.view(batch, self.out_channel, 1, 1)
        return out

    def extra_repr(self) -> str:
        return (
            f"{self.in_channel}, {self.out_channel}, k={self.kernel_size}, up={self.upsample}, "
            f"down={self.downsample}, demod={self.demodulate}"
        )

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        if not self.fused:
            return self._forward_unfused(x, style)
        batch, in_ch, height, width = x.shape
        s = self.modulation(style).view(batch, 1, in_ch, 1, 1)
        weight = self.scale * self.weight * s  # (N, out, in, k, k)
        if self.demodulate:
            demod = torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + self.eps)
            weight = weight * demod.view(batch, self.out_channel, 1, 1, 1)
        k = self.kernel_size
        if self.upsample:
            x = x.reshape(1, batch * in_ch, height, width)
            weight = weight.transpose(1, 2).reshape(batch * in_ch, self.out_channel, k, k)
            out = F.conv_transpose2d(x, weight, padding=0, stride=2, groups=batch)
            out = out.view(batch, self.out_channel, out.shape[2], out.shape[3])
            return self.blur(out)
        weight = weight.reshape(batch * self.out_channel, in_ch, k, k)
        if self.downsample:
            x = self.blur(x)
            _, _, height, width = x.shape
            x = x.reshape(1, batch * in_ch, height, width)
            out = F.conv2d(x, weight, padding=0, stride=2, groups=batch)
        else:
            x = x.reshape(1, batch * in_ch, height, width)
            out = F.conv2d(x, weight, padding=self.padding, groups=batch)
        return out.view(batch, self.out_channel, out.shape[2], out.shape[3])
