"""`gansformer:PATH`: GANsformer generators (Hudson & Zitnick 2021), natively in PyTorch.

A GANsformer is a StyleGAN2-like generator whose latent is a *set*: k - 1 local components plus one
global component (the last), each of z_dim entries. A mapping network turns them into w components;
the global w modulates every convolution (as in StyleGAN2) and the local ones reach the image features
through bipartite attention: at each attention layer every image position attends over the k - 1
latent components, and the attended latent values re-scale (`integration="mul"`) and/or shift ("add")
the normalised image features.

Two attention forms, as in the official PyTorch code:

- simplex: image queries vs latent keys (`kmeans=False`);
- duplex (`kmeans=True`): the latent side of the attention is a set of centroids in the space of
  image queries; with `kmeans_iters > 1` they are re-estimated from the image features the previous
  assignment gave them (image -> latents), then the image is updated from the latents (latents ->
  image). The latent vectors themselves are not rewritten, as in the official PyTorch version.

Latent spaces: z (N, k, z_dim); w (N, k, w_dim) (one w per component, global last); w+ (N, k, num_ws,
w_dim) (the official `ws` layout: a w per component and per layer). `latent_shape` is (k, z_dim).

Checkpoints:

- the official PyTorch pickles (github dorarad/gansformer, `pytorch_version`: `network-snapshot-*.pkl`,
  a dict with "G", "D", "Gs" of `torch_utils.persistence` objects) are read with the restricted
  unpickler: persistent objects become inert records (their `module_src` is never executed), plain
  `torch.nn.Dropout` members become inert stubs, any other global is refused. The EMA generator "Gs" is
  rebuilt here with the same module names (state-dict keys) and loaded with its tensors.
- latentcomp's format: `generator.safetensors` + `generator.json` (`save_gansformer`), written by
  `latentcomp gan train --arch gansformer`.
"""

from __future__ import annotations

import math
import zipfile
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import LatentcompError
from .base import Generator
from .own_format import load_pair, save_pair
from .registry import register_kind
from .stylegan2_ada import _ACTIVATIONS, _conv_up, bias_act, setup_filter, upsample2d

FORMAT_NAME = "latentcomp-gansformer"
FORMAT_VERSION = 1


# --------------------------------------------------------------------------------------------------
# small ops
def _normalize(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Scale each sample to unit mean square over all its non-batch entries (all components jointly)."""
    dims = list(range(1, x.ndim))
    return x * (x.square().mean(dim=dims, keepdim=True) + eps).rsqrt()


def sinusoidal_grid(res: int, dim: int, directions: int = 2) -> torch.Tensor:
    """(res, res, dim) sine/cosine position code of a res x res grid with coordinates in [-1, 1].

    directions == 2: [sin x, cos x, sin y, cos y] blocks of dim / 4 frequencies (x = column).
    Otherwise the code measures positions along `directions` evenly spaced angles in [0, pi), each with
    dim / (2 * directions) sine and as many cosine frequencies.
    """
    coord = torch.linspace(-1.0, 1.0, res)
    if directions == 2:
        if dim % 4:
            raise ValueError(f"sinusoidal position code needs pos_dim divisible by 4, got {dim}")
        freq = torch.pow(10000.0, 4 * torch.arange(dim // 4, dtype=torch.float32) / dim)
        a = coord[:, None] / freq  # (res, dim/4)
        along_x = torch.cat([a.sin(), a.cos()], -1)[None, :, :].expand(res, res, -1)
        along_y = torch.cat([a.sin(), a.cos()], -1)[:, None, :].expand(res, res, -1)
        return torch.cat([along_x, along_y], -1).contiguous()
    if dim % (2 * directions):
        raise ValueError(f"sinusoidal position code needs pos_dim divisible by {2 * directions}, got {dim}")
    angles = torch.tensor([math.pi * i / directions for i in range(directions)])
    dirs = torch.stack([angles.cos(), angles.sin()], -1)  # (D, 2)
    xy = torch.stack([coord[None, :].expand(res, res), coord[:, None].expand(res, res)], -1)
    lens = (xy[:, :, None, :] * dirs).sum(-1, keepdim=True)  # (res, res, D, 1)
    n = dim // (2 * directions)
    freq = torch.pow(10000.0, 2 * directions * torch.arange(n, dtype=torch.float32) / dim)
    return torch.cat([(lens / freq).sin(), (lens / freq).cos()], -1).reshape(res, res, dim)


class FC(nn.Module):
    """Equalized-lr linear layer on the last axis (keys `weight` (out, in), `bias`); act then gain."""

    def __init__(self, in_dim: int, out_dim: int, act: str = "linear", lrmul: float = 1.0, bias_init=0.0):
        super().__init__()
        if act not in _ACTIVATIONS:
            raise ValueError(f"activation {act!r} is not supported; accepted: {', '.join(_ACTIVATIONS)}")
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim) / lrmul)
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init)))
        self.w_gain = lrmul / math.sqrt(in_dim)
        self.b_gain = lrmul
        self.act = act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.linear(x, self.weight * self.w_gain, self.bias * self.b_gain)
        return x if self.act == "linear" else bias_act(x, None, act=self.act)


class BiasAct(nn.Module):
    """Per-channel bias (key `bias`), activation, output gain (the activation's own gain * `gain`)."""

    def __init__(self, channels: int, act: str = "linear", gain: float = 1.0):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))
        self.act = act
        self.gain = _ACTIVATIONS[act][1] * gain

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return bias_act(x, self.bias, act=self.act, gain=self.gain)


def _conv(x, weight, up, padding, f):
    return F.conv2d(x, weight, padding=padding) if up == 1 else _conv_up(x, weight, f, up, padding, groups=1)


def _modulated_conv(x, weight, styles, up, padding, f, demodulate=True):
    """Style-modulated conv with a shared weight (O, I, k, k): x * s, conv, * demod (fast on CPU)."""
    out = _conv(x * styles[:, :, None, None], weight, up, padding, f)
    if demodulate:
        demod = torch.rsqrt(styles.square() @ weight.square().sum([2, 3]).t() + 1e-8)  # (N, O)
        out = out * demod[:, :, None, None]
    return out


# --------------------------------------------------------------------------------------------------
# attention
class AttentionGate(nn.Module):
    """Optional sigmoid gate per element and head (keys `gate`, `gate_pos`), `ltnt_gate` / `img_gate`."""

    def __init__(self, active: bool, dim: int, pos_dim: int, num_heads: int, bias: float = 0.0):
        super().__init__()
        self.active, self.bias = active, bias
        if active:
            self.gate = FC(dim, num_heads)
            self.gate_pos = FC(pos_dim, num_heads)

    def forward(self, x: torch.Tensor, pos: torch.Tensor | None) -> torch.Tensor | None:
        """x (B, L, dim) -> gate (B, heads, L) or None."""
        if not self.active:
            return None
        g = self.gate(x)
        if pos is not None:
            g = g + self.gate_pos(pos)
        return torch.sigmoid(g + self.bias).transpose(1, 2)


class BipartiteAttention(nn.Module):
    """`from` elements (image positions or latents) attend over `to` elements and are modulated by them.

    Keys: to_queries, to_keys, to_values, from_pos_map, to_pos_map, modulation, the gates, and for
    k-means (duplex) attention `att_weight` (heads, 1, 2 * head_dim) and `centroids` (1, heads, to_len,
    2 * head_dim).
    """

    def __init__(
        self,
        dim: int,
        pos_dim: int,
        from_len: int,
        to_len: int,
        from_dim: int,
        to_dim: int,
        from_gate: bool = False,
        to_gate: bool = False,
        num_heads: int = 1,
        attention_dropout: float = 0.12,
        integration: str = "add",
        norm: str | None = None,
        kmeans: bool = False,
        kmeans_iters: int = 1,
    ):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"attention width {dim} is not divisible by num_heads {num_heads}")
        self.dim, self.from_len, self.to_len, self.num_heads = dim, from_len, to_len, num_heads
        self.head_dim = dim // num_heads
        self.dropout = float(attention_dropout) / 2  # applied twice: to cells and to whole columns
        self.integration, self.norm = integration, norm
        self.kmeans, self.kmeans_iters = kmeans, int(kmeans_iters)
        self.to_queries = FC(from_dim, dim)
        self.to_keys = FC(to_dim, dim)
        self.to_values = FC(to_dim, dim)
        self.from_pos_map = FC(pos_dim, dim)
        self.to_pos_map = FC(pos_dim, dim)
        self.to_gate_attention = AttentionGate(to_gate, dim, pos_dim, num_heads)
        self.from_gate_attention = AttentionGate(from_gate, dim, pos_dim, num_heads, bias=1.0)
        self.modulation = FC(dim, 2 * dim if integration == "both" else dim)
        if kmeans:
            self.att_weight = nn.Parameter(torch.ones(num_heads, 1, 2 * self.head_dim))
            self.centroids = nn.Parameter(torch.randn(1, num_heads, to_len, 2 * self.head_dim))

    def _heads(self, t: torch.Tensor) -> torch.Tensor:  # (B, L, h * d) -> (B, h, L, d)
        return t.reshape(t.shape[0], t.shape[1], self.num_heads, -1).transpose(1, 2)

    def _drop(self, probs: torch.Tensor) -> torch.Tensor:
        if not self.training or self.dropout == 0:
            return probs
        probs = probs * F.dropout(torch.ones_like(probs), self.dropout)
        cols = torch.ones_like(probs[:, :, :1, :])
        return probs * F.dropout(cols, self.dropout)

    def forward(self, x, y, x_pos=None, y_pos=None):
        """x (B, F, from_dim), y (B, T, to_dim), positions (F | T, pos_dim) -> (new x, probs (B, h, F, T))."""
        queries = plain_queries = self.to_queries(x)
        keys, values = self.to_keys(y), self.to_values(y)
        if x_pos is not None:
            queries = queries + self.from_pos_map(x_pos)
        if y_pos is not None:
            keys = keys + self.to_pos_map(y_pos)
        scores = self._heads(queries) @ self._heads(keys).transpose(2, 3)  # (B, h, F, T)
        if self.kmeans:
            # image elements = [query without position, position part], split into heads as one vector
            elements = self._heads(torch.cat([plain_queries, queries - plain_queries], -1))
            centroids = self.centroids.expand(x.shape[0], -1, -1, -1)
        probs = None
        for i in range(self.kmeans_iters):
            if self.kmeans:
                if i > 0:  # assignment step: centroids = assignment-weighted mean of the image elements
                    assign = probs / (probs.sum(dim=-2, keepdim=True) + 1e-8)
                    centroids = assign.transpose(2, 3) @ elements
                scores = (elements * self.att_weight) @ centroids.transpose(2, 3)
            scores = scores / math.sqrt(self.head_dim)
            probs = self._drop(torch.softmax(scores, dim=-1))
        gate = self.to_gate_attention(y, y_pos)
        if gate is not None:
            probs = probs * gate[:, :, None, :]
        gate = self.from_gate_attention(x, x_pos)
        if gate is not None:
            probs = probs * gate[:, :, :, None]
        control = (probs @ self._heads(values)).transpose(1, 2).reshape(x.shape[0], x.shape[1], self.dim)
        return self._integrate(x, self.modulation(control)), probs

    def _integrate(self, x: torch.Tensor, control: torch.Tensor) -> torch.Tensor:
        if self.norm is not None:
            axis = 1 if self.norm == "instance" else 2  # instance: over positions; else over channels
            if self.integration in ("add", "both"):
                x = x - x.mean(dim=axis, keepdim=True)
            if self.integration in ("mul", "both"):
                x = x * torch.rsqrt(x.square().mean(dim=axis, keepdim=True) + 1e-8)
        gain = bias = control
        if self.integration == "both":
            gain, bias = control.chunk(2, dim=-1)
        if self.integration != "add":
            x = x * (gain + 1)
        if self.integration != "mul":
            x = x + bias
        return x


# --------------------------------------------------------------------------------------------------
# mapping
class ResnetFC(nn.Module):
    """fc0 (act) -> fc1 (linear) -> leaky_relu(. + input, 0.2)."""

    def __init__(self, dim: int, act: str, lrmul: float):
        super().__init__()
        self.fc0 = FC(dim, dim, act=act, lrmul=lrmul)
        self.fc1 = FC(dim, dim, lrmul=lrmul)

    def forward(self, x, skip):
        return F.leaky_relu(self.fc1(self.fc0(x)) + skip, 0.2)


class LatentMLP(nn.Module):
    """Layers `l{i}` (FC or ResnetFC), optional self-attention `sa{i}` over components, `out_layer`."""

    def __init__(self, channels, act, lrmul, resnet=False, sa=False, sa_kwargs=None):
        super().__init__()
        self.num = len(channels) // 2 if resnet else len(channels) - 1
        self.resnet, self.sa = resnet, sa
        for i in range(self.num):
            d_in, d_out = channels[i], channels[i + 1]
            if sa:
                kw = dict(sa_kwargs or {})
                setattr(
                    self,
                    f"sa{i}",
                    BipartiteAttention(dim=d_in, pos_dim=d_in, from_dim=d_in, to_dim=d_in, **kw),
                )
            if resnet:
                if d_in != d_out:
                    raise ValueError(f"resnet mapping needs equal widths, got {d_in} -> {d_out}")
                setattr(self, f"l{i}", ResnetFC(d_in, act, lrmul))
            else:
                setattr(self, f"l{i}", FC(d_in, d_out, act=act, lrmul=lrmul))
        self.out_layer = FC(channels[-1], channels[-1], act=act, lrmul=lrmul)

    def forward(self, x, pos=None):  # x (N, L, D)
        for i in range(self.num):
            skip = x
            if self.sa:
                x = getattr(self, f"sa{i}")(x, x, pos, pos)[0]
            layer = getattr(self, f"l{i}")
            x = layer(x, skip) if self.resnet else layer(x)
        return self.out_layer(x)


class MappingNetwork(nn.Module):
    """z (N, k, z_dim) -> w (N, k, w_dim): local components through `mlp`, the global one (last) through
    `global_mlp` (with the label embedding `embed` when c_dim > 0); `w_avg` tracked while training."""

    def __init__(
        self,
        z_dim,
        c_dim,
        w_dim,
        k,
        num_layers,
        embed_dim,
        layer_dim,
        act,
        lrmul,
        w_avg_beta,
        transformer,
        resnet,
        ltnt2ltnt,
        ltnt_gate,
        normalize_global,
        use_pos,
        sa_kwargs,
    ):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.k = z_dim, c_dim, w_dim, k
        self.transformer, self.normalize_global, self.use_pos = transformer, normalize_global, use_pos
        self.w_avg_beta = w_avg_beta
        layer_dim = layer_dim or w_dim
        embed_dim = (embed_dim or z_dim) if c_dim > 0 else 0
        if c_dim > 0:
            self.embed = FC(c_dim, embed_dim)
        layers = [layer_dim] * (num_layers - 1) + [w_dim]
        self.global_mlp = LatentMLP([z_dim + embed_dim] + layers, act, lrmul, resnet=resnet)
        if transformer:
            kw = dict(sa_kwargs, from_len=k - 1, to_len=k - 1, from_gate=ltnt_gate, to_gate=ltnt_gate)
            self.mlp = LatentMLP([z_dim] + layers, act, lrmul, resnet=resnet, sa=ltnt2ltnt, sa_kwargs=kw)
        if w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None, pos: torch.Tensor | None = None):
        if self.transformer:
            z, g = z[:, :-1], z[:, -1:]
            if self.normalize_global:
                g = _normalize(g)
        z = _normalize(z)  # all local components jointly
        x = g if self.transformer else z
        if self.c_dim > 0:
            y = _normalize(self.embed(c.float()))
            x = torch.cat([x, y[:, None, :].expand(-1, x.shape[1], -1)], -1)
        x = self.global_mlp(x)
        if self.transformer:
            x = torch.cat([self.mlp(z, pos if self.use_pos else None), x], dim=1)
        if self.training and self.w_avg_beta is not None:
            with torch.no_grad():
                self.w_avg.copy_(x.detach().mean(dim=(0, 1)).lerp(self.w_avg, self.w_avg_beta))
        return x


# --------------------------------------------------------------------------------------------------
# synthesis
class SynthesisLayer(nn.Module):
    """Conv modulated by the global w (`affine`, `weight`), then (optional) attention to the local ws
    (`transformer`, image positions `grid_pos`), noise (`noise_const`, `noise_strength`), bias + act."""

    def __init__(
        self,
        in_ch,
        out_ch,
        w_dim,
        k,
        res,
        up=1,
        kernel_size=3,
        local_noise=True,
        bias=True,
        act="lrelu",
        resample_kernel=(1, 3, 3, 1),
        gain=1.0,
        style=True,
        transformer=False,
        use_pos=False,
        ltnt_gate=False,
        img_gate=False,
        pos_dim=None,
        pos_type="sinus",
        pos_directions_num=2,
        attn_kwargs=None,
    ):
        super().__init__()
        self.res, self.up, self.style, self.use_pos = res, up, style, use_pos
        self.padding = kernel_size // 2
        self.affine = FC(w_dim, in_ch, bias_init=1)
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, kernel_size, kernel_size))
        self.w_gain = 1 / math.sqrt(in_ch * kernel_size**2)
        self.biasAct = BiasAct(out_ch, act=act, gain=gain) if bias else None  # noqa: N815 - official key
        self.register_buffer("resample_kernel", setup_filter(resample_kernel))
        self.local_noise = local_noise
        if local_noise:
            self.register_buffer("noise_const", torch.randn(res, res))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.transformer = None
        if transformer:
            pos_dim = pos_dim or w_dim
            # sinus: computed; linear / trainable2d: filled from the checkpoint
            grid = sinusoidal_grid(res, pos_dim, pos_directions_num) if pos_type == "sinus" else None
            self.register_buffer("grid_pos", grid if grid is not None else torch.zeros(res, res, pos_dim))
            self.transformer = BipartiteAttention(
                dim=out_ch,
                pos_dim=pos_dim,
                from_len=res * res,
                to_len=k - 1,
                from_dim=out_ch,
                to_dim=w_dim,
                from_gate=img_gate,
                to_gate=ltnt_gate,
                **dict(attn_kwargs or {}),
            )

    def forward(self, x, ws, pos=None, noise_mode="const"):
        """x (N, in, H, W), ws (N, k, w_dim) -> (N, out, res, res)."""
        weight = self.weight * self.w_gain
        if self.style:
            x = _modulated_conv(
                x, weight, self.affine(ws[:, -1]), self.up, self.padding, self.resample_kernel
            )
        else:
            x = _conv(x, weight, self.up, self.padding, self.resample_kernel)
        if self.transformer is not None:
            n, c, h, w = x.shape
            feats = x.flatten(2).transpose(1, 2)  # (N, H*W, C)
            feats, _ = self.transformer(
                feats, ws[:, :-1], self.grid_pos.reshape(h * w, -1), pos if self.use_pos else None
            )
            x = feats.transpose(1, 2).reshape(n, c, h, w)
        if self.local_noise and noise_mode != "none":
            if noise_mode == "random":
                noise = torch.randn(x.shape[0], 1, self.res, self.res, device=x.device)
            else:
                noise = self.noise_const
            x = x + noise * self.noise_strength
        return self.biasAct(x) if self.biasAct is not None else x


class ToRGBLayer(nn.Module):
    def __init__(self, in_ch, out_ch, w_dim, style=True):
        super().__init__()
        self.affine = FC(w_dim, in_ch, bias_init=1)
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, 1, 1))
        self.biasAct = BiasAct(out_ch)  # noqa: N815 - official key
        self.w_gain = 1 / math.sqrt(in_ch)
        self.style = style

    def forward(self, x, ws):
        if self.style:
            x = _modulated_conv(
                x, self.weight, self.affine(ws[:, -1]) * self.w_gain, 1, 0, None, demodulate=False
            )
        else:
            x = F.conv2d(x, self.weight * self.w_gain)
        return self.biasAct(x)


class SkipUp(nn.Module):
    """The resnet skip: 1x1 conv with 2x FIR upsampling, no bias, gain sqrt(1/2) (keys weight,
    resample_kernel)."""

    def __init__(self, in_ch, out_ch, resample_kernel):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, 1, 1))
        self.register_buffer("resample_kernel", setup_filter(resample_kernel))
        self.w_gain = 1 / math.sqrt(in_ch)

    def forward(self, x):
        return _conv_up(x, self.weight * self.w_gain, self.resample_kernel, 2, 0, groups=1) * math.sqrt(0.5)


class SynthesisBlock(nn.Module):
    """One resolution: const (4x4) or conv0 (up), conv1, conv_last (last block only: no bias, noise or
    attention), torgb, skip (resnet)."""

    def __init__(
        self,
        in_ch,
        out_ch,
        w_dim,
        k,
        res,
        img_channels,
        is_last,
        architecture="skip",
        resample_kernel=(1, 3, 3, 1),
        style=True,
        **layer_kwargs,
    ):
        super().__init__()
        self.in_ch, self.res, self.is_last, self.architecture = in_ch, res, is_last, architecture
        self.register_buffer("resample_kernel", setup_filter(resample_kernel))
        common = dict(w_dim=w_dim, k=k, res=res, resample_kernel=resample_kernel, style=style)
        self.num_conv = self.num_torgb = 0
        if in_ch == 0:
            self.const = nn.Parameter(torch.randn(out_ch, res, res))
        else:
            self.conv0 = SynthesisLayer(in_ch, out_ch, up=2, **common, **layer_kwargs)
            self.num_conv += 1
        gain = math.sqrt(0.5) if (in_ch and architecture == "resnet") else 1.0
        self.conv1 = SynthesisLayer(out_ch, out_ch, gain=gain, **common, **layer_kwargs)
        self.num_conv += 1
        if is_last or architecture == "skip":
            self.torgb = ToRGBLayer(out_ch, img_channels, w_dim, style=style)
            self.num_torgb += 1
        if in_ch and architecture == "resnet":
            self.skip = SkipUp(in_ch, out_ch, resample_kernel)
        if is_last:
            plain = dict(layer_kwargs, transformer=False, bias=False, local_noise=False)
            self.conv_last = SynthesisLayer(out_ch, out_ch, **common, **plain)
            self.num_conv += 1

    def forward(self, x, img, ws, pos=None, noise_mode="const"):
        w = iter(ws.unbind(dim=2))
        if self.in_ch == 0:
            x = self.const.unsqueeze(0).expand(ws.shape[0], -1, -1, -1)
            x = self.conv1(x, next(w), pos, noise_mode)
        elif self.architecture == "resnet":
            y = self.skip(x)
            x = self.conv0(x, next(w), pos, noise_mode)
            x = y + self.conv1(x, next(w), pos, noise_mode)
        else:
            x = self.conv0(x, next(w), pos, noise_mode)
            x = self.conv1(x, next(w), pos, noise_mode)
        if img is not None:
            img = upsample2d(img, self.resample_kernel)
        if self.is_last:
            x = self.conv_last(x, next(w), pos, noise_mode)
        if self.is_last or self.architecture == "skip":
            y = self.torgb(x, next(w))
            img = img + y if img is not None else y
        return x, img


class SynthesisNetwork(nn.Module):
    def __init__(
        self,
        w_dim,
        k,
        img_resolution,
        img_channels,
        channel_base=32768,
        channel_max=512,
        transformer=False,
        start_res=0,
        end_res=20,
        **block_kwargs,
    ):
        super().__init__()
        log2 = int(round(math.log2(img_resolution)))
        if img_resolution < 4 or 2**log2 != img_resolution:
            raise ValueError(f"img_resolution must be a power of two >= 4, got {img_resolution}")
        self.w_dim, self.k, self.img_resolution = w_dim, k, img_resolution
        self.block_resolutions = [2**i for i in range(2, log2 + 1)]
        width = lambda res: int(min(channel_base // res, channel_max))  # noqa: E731
        self.num_ws = 0
        for res in self.block_resolutions:
            use_att = transformer and start_res <= math.log2(res) < end_res
            block = SynthesisBlock(
                width(res // 2) if res > 4 else 0,
                width(res),
                w_dim,
                k,
                res,
                img_channels,
                is_last=res == img_resolution,
                transformer=use_att,
                **block_kwargs,
            )
            self.num_ws += block.num_conv + (block.num_torgb if res == img_resolution else 0)
            setattr(self, f"b{res}", block)

    def forward(self, ws, pos=None, noise_mode="const"):
        """ws (N, k, num_ws, w_dim) -> image (N, C, H, W)."""
        x = img = None
        idx = 0
        for res in self.block_resolutions:
            block = getattr(self, f"b{res}")
            x, img = block(x, img, ws.narrow(2, idx, block.num_conv + block.num_torgb), pos, noise_mode)
            idx += block.num_conv
        return img


# --------------------------------------------------------------------------------------------------
# the whole network and its configuration
_MAPPING_DEFAULTS = dict(
    num_layers=8,
    embed_dim=None,
    layer_dim=None,
    act="lrelu",
    lrmul=0.01,
    w_avg_beta=0.995,
    transformer=False,
    resnet=False,
    shared=False,
    ltnt2ltnt=False,
    ltnt_gate=False,
    normalize_global=True,
    use_pos=False,
)
_SYNTHESIS_DEFAULTS = dict(
    channel_base=32768,
    channel_max=512,
    transformer=False,
    start_res=0,
    end_res=20,
    architecture="skip",
    resample_kernel=[1, 3, 3, 1],
    latent_stem=False,
    style=True,
    kernel_size=3,
    local_noise=True,
    act="lrelu",
    use_pos=False,
    ltnt_gate=False,
    img_gate=False,
    pos_dim=None,
    pos_type="sinus",
    pos_init="uniform",
    pos_directions_num=2,
    crop_ratio=None,
)
_ATTENTION_DEFAULTS = dict(
    num_heads=1,
    attention_dropout=0.12,
    integration="add",
    norm=None,
    kmeans=False,
    kmeans_iters=1,
    iterative=False,
)


def resolve_arch(arch: dict, where: str = "gansformer") -> dict:
    """Official Generator kwargs -> a complete, validated architecture dict (JSON-able).

    Options the official code ignores are dropped (listed under "ignored"); options it reads but this
    implementation cannot reproduce are refused with a LatentcompError naming them.
    """
    try:
        top = {k: int(arch[k]) for k in ("z_dim", "c_dim", "w_dim", "k", "img_resolution", "img_channels")}
    except KeyError as e:
        raise LatentcompError(
            f"{where}: generator kwargs lack {e.args[0]!r}; not a GANsformer Generator"
        ) from None
    except (TypeError, ValueError) as e:
        raise LatentcompError(f"{where}: generator kwargs are not integers ({e})") from None
    ignored = []
    mapping, synthesis = {}, {}
    for name, given, defaults in (
        ("mapping", arch.get("mapping_kwargs") or {}, {**_MAPPING_DEFAULTS, **_ATTENTION_DEFAULTS}),
        ("synthesis", arch.get("synthesis_kwargs") or {}, {**_SYNTHESIS_DEFAULTS, **_ATTENTION_DEFAULTS}),
    ):
        out = mapping if name == "mapping" else synthesis
        for key, default in defaults.items():
            out[key] = given.get(key, default)
        ignored += [f"{name}.{key}" for key in given if key not in defaults]
    if isinstance(synthesis["resample_kernel"], (tuple, list)):
        synthesis["resample_kernel"] = [float(v) for v in synthesis["resample_kernel"]]
    problems = []
    if top["k"] < 1:
        problems.append(f"k={top['k']} (needs >= 1)")
    if (mapping["transformer"] or synthesis["transformer"]) and top["k"] < 2:
        problems.append("transformer with k < 2 (no local components)")
    if mapping["shared"]:
        problems.append("mapping shared=True")
    for part, kw in (("mapping", mapping), ("synthesis", synthesis)):
        if kw["iterative"]:
            problems.append(f"{part} iterative=True")
        if kw["integration"] not in ("add", "mul", "both"):
            problems.append(f"{part} integration={kw['integration']!r}")
        if kw["norm"] not in (None, "instance", "layer", "batch"):
            problems.append(f"{part} norm={kw['norm']!r}")
        if kw["act"] not in _ACTIVATIONS:
            problems.append(f"{part} act={kw['act']!r}")
    if synthesis["latent_stem"]:
        problems.append("latent_stem=True")
    if synthesis["crop_ratio"] not in (None, 1, 1.0):
        problems.append(f"crop_ratio={synthesis['crop_ratio']} (non-square images)")
    if synthesis["pos_type"] not in ("sinus", "linear", "trainable2d"):
        problems.append(f"pos_type={synthesis['pos_type']!r}")
    if synthesis["architecture"] not in ("orig", "skip", "resnet"):
        problems.append(f"architecture={synthesis['architecture']!r}")
    if problems:
        raise LatentcompError(
            f"{where}: unsupported GANsformer options: {'; '.join(problems)} (supported: simplex/k-means "
            "attention, add/mul/both integration, sinus/linear/trainable2d positions, square outputs)"
        )
    return {**top, "mapping_kwargs": mapping, "synthesis_kwargs": synthesis, "ignored": ignored}


#: options of the bipartite attention, given separately to the synthesis and the mapping network
_ATTENTION_KEYS = ("num_heads", "attention_dropout", "integration", "norm", "kmeans", "kmeans_iters")


class GANsformerNet(nn.Module):
    """The official `Generator` rebuilt natively: `pos` (k-1, w_dim), `mapping`, `synthesis` (same
    state-dict keys). Takes the official constructor kwargs; see `resolve_arch`."""

    def __init__(
        self,
        z_dim,
        c_dim,
        w_dim,
        k,
        img_resolution,
        img_channels,
        mapping_kwargs=None,
        synthesis_kwargs=None,
        **_ignored,
    ):
        super().__init__()
        arch = resolve_arch(
            dict(
                z_dim=z_dim,
                c_dim=c_dim,
                w_dim=w_dim,
                k=k,
                img_resolution=img_resolution,
                img_channels=img_channels,
                mapping_kwargs=mapping_kwargs,
                synthesis_kwargs=synthesis_kwargs,
            )
        )
        self.arch = arch
        m, s = arch["mapping_kwargs"], arch["synthesis_kwargs"]
        self.z_dim, self.c_dim, self.w_dim, self.k = z_dim, c_dim, w_dim, k
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.pos = nn.Parameter(torch.rand(k - 1, w_dim)) if k > 1 else None
        attn = {key: s[key] for key in _ATTENTION_KEYS}
        self.synthesis = SynthesisNetwork(
            w_dim,
            k,
            img_resolution,
            img_channels,
            channel_base=s["channel_base"],
            channel_max=s["channel_max"],
            transformer=s["transformer"],
            start_res=s["start_res"],
            end_res=s["end_res"],
            architecture=s["architecture"],
            resample_kernel=s["resample_kernel"],
            style=s["style"],
            kernel_size=s["kernel_size"],
            local_noise=s["local_noise"],
            act=s["act"],
            use_pos=s["use_pos"],
            ltnt_gate=s["ltnt_gate"],
            img_gate=s["img_gate"],
            pos_dim=s["pos_dim"],
            pos_type=s["pos_type"],
            pos_directions_num=s["pos_directions_num"],
            attn_kwargs=attn,
        )
        self.num_ws = self.synthesis.num_ws
        sa = {key: m[key] for key in _ATTENTION_KEYS}
        self.mapping = MappingNetwork(
            z_dim,
            c_dim,
            w_dim,
            k,
            m["num_layers"],
            m["embed_dim"],
            m["layer_dim"],
            m["act"],
            m["lrmul"],
            m["w_avg_beta"],
            m["transformer"],
            m["resnet"],
            m["ltnt2ltnt"],
            m["ltnt_gate"],
            m["normalize_global"],
            m["use_pos"],
            sa,
        )

    def config(self) -> dict:
        return {key: v for key, v in self.arch.items() if key != "ignored"}

    def forward(self, z: torch.Tensor, c: torch.Tensor | None = None, noise_mode: str = "const"):
        """z (N, k, z_dim) -> image; used by training (no truncation)."""
        ws = self.mapping(z, c, pos=self.pos)
        ws = ws.unsqueeze(2).expand(-1, -1, self.num_ws, -1)
        return self.synthesis(ws, pos=self.pos, noise_mode=noise_mode)


def build_gansformer(
    resolution: int,
    z_dim: int,
    width: int = 32,
    channels: int = 3,
    mapping_layers: int = 4,
    num_heads: int = 1,
    kmeans: bool = True,
) -> GANsformerNet:
    """A small GANsformer for training here, from a total latent size `z_dim`.

    8 latent components (7 local + 1 global; 4 when z_dim / 8 is not a multiple of 4) of z_dim / k entries,
    w_dim = z_dim / k; skip architecture; layer norm + multiplicative integration; k-means (duplex)
    attention at every resolution; sinusoidal image positions and learned latent positions; widths 8w at
    4 and 8 px, then halving per resolution (min(64w / res, 8w)).
    """
    k = 8 if z_dim % 32 == 0 else 4
    if z_dim % (4 * k):
        raise LatentcompError(
            f"gansformer needs --z-dim divisible by 16 (k components of a multiple of 4); got {z_dim}"
        )
    d = z_dim // k
    syn = dict(
        channel_base=64 * width,
        channel_max=8 * width,
        architecture="skip",
        transformer=True,
        use_pos=True,
        num_heads=num_heads,
        integration="mul",
        norm="layer",
        kmeans=kmeans,
    )
    mapping = dict(num_layers=mapping_layers, transformer=True, use_pos=True, num_heads=num_heads)
    return GANsformerNet(d, 0, d, k, resolution, channels, mapping, syn)


# --------------------------------------------------------------------------------------------------
# the latentcomp Generator
class GANsformerGenerator(Generator):
    """Frozen GANsformer: spaces z (N, k, z_dim), w (N, k, w_dim), w+ (N, k, num_ws, w_dim); the global
    component is the last one. Fixed noise (`noise_const`) by default; output clamped to [-1, 1].

    truncation: psi towards the network's `w_avg` (or the mean w of 4096 z drawn with seed 0 when it has
    none), applied to every component. class_idx: the label for conditional networks.
    """

    latent_spaces = ("z", "w", "w+")
    prior = "normal"

    def __init__(
        self, net: GANsformerNet, truncation=1.0, noise_mode="const", clamp=True, class_idx=None, config=None
    ):
        super().__init__()
        if noise_mode not in ("const", "random", "none"):
            raise LatentcompError(f"noise_mode {noise_mode!r} not accepted; expected const, random or none")
        self.net = net.eval()
        self.components = net.k
        self.latent_shape = (net.k, net.z_dim)
        self.resolution, self.channels = net.img_resolution, net.img_channels
        self.num_ws, self.w_dim = net.num_ws, net.w_dim
        self.truncation, self.noise_mode, self.clamp = float(truncation), noise_mode, clamp
        self.config = dict(config or {})
        label = torch.zeros(1, net.c_dim)
        if net.c_dim > 0:
            idx = 0 if class_idx is None else int(class_idx)
            if not 0 <= idx < net.c_dim:
                raise LatentcompError(
                    f"class_idx {idx} out of range for a generator with {net.c_dim} classes"
                )
            label[0, idx] = 1
        elif class_idx is not None:
            raise LatentcompError("class_idx given, but this generator is unconditional (c_dim 0)")
        self.register_buffer("label", label)
        w_avg = getattr(net.mapping, "w_avg", None)
        if self.truncation != 1 and (w_avg is None or not bool(w_avg.any())):  # untracked: estimate it
            with torch.no_grad():
                z = torch.randn(4096, net.k, net.z_dim, generator=torch.Generator().manual_seed(0))
                w_avg = net.mapping(z, label.expand(4096, -1), pos=net.pos).mean(dim=(0, 1))
        if w_avg is None:
            w_avg = torch.zeros(net.w_dim)
        self.register_buffer("w_avg", w_avg.detach().float().reshape(1, 1, -1).clone())
        self.freeze()

    def space_shape(self, space: str) -> tuple[int, ...]:
        """Shape of one latent of `space` (without the batch axis)."""
        return {
            "z": tuple(self.latent_shape),
            "w": (self.components, self.w_dim),
            "w+": (self.components, self.num_ws, self.w_dim),
        }[space]

    @property
    def shape_hint(self) -> str:
        return f" ({self.components} components, the last one global)"

    def map_z(self, z: torch.Tensor) -> torch.Tensor:
        w = self.net.mapping(z, self.label.expand(z.shape[0], -1), pos=self.net.pos)
        if self.truncation != 1:
            w = self.w_avg + self.truncation * (w - self.w_avg)
        return w

    def to_wplus(self, latent: torch.Tensor, space: str) -> torch.Tensor:
        if space == "z":
            latent, space = self.mapping(latent), "w"
        if space == "w":
            return latent.unsqueeze(2).expand(-1, -1, self.num_ws, -1)
        return latent

    def synthesize(self, latent: torch.Tensor, space: str) -> torch.Tensor:
        img = self.net.synthesis(self.to_wplus(latent, space), pos=self.net.pos, noise_mode=self.noise_mode)
        return img.clamp(-1, 1) if self.clamp else img

    def feature_layers(self) -> dict[str, str]:
        """mapping (w), then per block b{res}: conv0 (upsampling), conv1, conv_last (last block), torgb."""
        names = {"mapping": "net.mapping"}
        for res in self.net.synthesis.block_resolutions:
            block = getattr(self.net.synthesis, f"b{res}")
            for part in ("conv0", "conv1", "conv_last", "torgb"):
                if hasattr(block, part):
                    names[f"b{res}.{part}"] = f"net.synthesis.b{res}.{part}"
        return names

    def attention_maps(self, latent: torch.Tensor, space: str = "z") -> dict[str, torch.Tensor]:
        """Attention of image positions over the local components, per attention layer:
        {"b{res}.conv{i}": (N, heads, k - 1, res, res)} (each position's weights sum to 1 before gates)."""
        maps: dict[str, torch.Tensor] = {}
        handles = []
        for name, module in self.net.synthesis.named_modules():
            if isinstance(module, SynthesisLayer) and module.transformer is not None:
                res = module.res

                def hook(_m, _i, out, name=name, res=res):
                    probs = out[1]
                    maps[name] = probs.transpose(2, 3).reshape(probs.shape[0], probs.shape[1], -1, res, res)

                handles.append(module.transformer.register_forward_hook(hook))
        try:
            self(latent, space=space)
        finally:
            for h in handles:
                h.remove()
        return maps


# --------------------------------------------------------------------------------------------------
# latentcomp's own format
def save_gansformer(net: GANsformerNet, path, extra_config: dict | None = None) -> Path:
    """Save `net` as safetensors (official state-dict keys) + JSON config; returns the .safetensors path.

    path: a folder (folder/generator.safetensors + folder/generator.json) or X.safetensors (X.json beside
    it). Each file is written atomically. Load with `load_generator("gansformer:PATH")`.
    """
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in net.state_dict().items()}
    return save_pair(path, tensors, FORMAT_NAME, FORMAT_VERSION, net.config(), extra_config)


def _load_own_format(p: Path) -> tuple[GANsformerNet, dict]:
    tensors, config, weights_path, config_path = load_pair(p, FORMAT_NAME, "GANsformer")
    arch = config["architecture"]
    net = _build(arch, str(config_path))
    _load_tensors(net, tensors, str(weights_path))
    return net, config


def _build(arch: dict, where: str) -> GANsformerNet:
    resolved = resolve_arch(arch, where)
    try:
        return GANsformerNet(**{k: v for k, v in resolved.items() if k != "ignored"})
    except (TypeError, ValueError) as e:
        raise LatentcompError(f"{where}: cannot build the GANsformer from its kwargs ({e})") from None


def _load_tensors(net: GANsformerNet, tensors: dict, where: str) -> None:
    own = net.state_dict()
    desc = f"a {net.img_resolution}px GANsformer (k {net.k}, z {net.z_dim}, w {net.w_dim})"
    missing = [k for k in own if k not in tensors]
    unexpected = [k for k in tensors if k not in own]
    if missing or unexpected:
        raise LatentcompError(
            f"{where}: tensors do not match {desc}: "
            f"missing {missing[:4]}{'...' if len(missing) > 4 else ''}, "
            f"unexpected {unexpected[:4]}{'...' if len(unexpected) > 4 else ''}"
        )
    for k, v in tensors.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise LatentcompError(
                f"{where}: {k} has shape {tuple(v.shape)}; expected {tuple(own[k].shape)} for {desc}"
            )
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise LatentcompError(f"{where}: {k} contains NaN or Inf values")
    net.load_state_dict({k: v.float() for k, v in tensors.items()})


# --------------------------------------------------------------------------------------------------
# official pickles
class _TensorFlowNetwork:
    """Refuses TF GANsformer pickles (dnnlib.tflib.network.Network) with a pointer to the converter."""

    def __new__(cls, *args, **kwargs):
        raise LatentcompError(
            "this is a TensorFlow GANsformer pickle; convert it to a PyTorch one with the official "
            "pytorch_version/loader.py (--source=tf.pkl --dest=torch.pkl) and load that"
        )


def read_gansformer_pickle(path) -> dict:
    """Unpickle an official GANsformer network pickle into plain data and inert records; runs no code."""
    from ..safe_pickle import restricted_unpickler_module, safe_load
    from .stylegan2_ada import _unpickle_globals

    p = Path(path).expanduser()
    if not p.is_file():
        raise LatentcompError(f"GANsformer checkpoint not found: {p}")
    allow = _unpickle_globals(p)
    allow[("dnnlib.tflib.network", "Network")] = _TensorFlowNetwork
    stub = ("torch.nn.modules.dropout.Dropout",)  # TransformerLayer.att_dp: a plain torch module
    data = None
    if not zipfile.is_zipfile(p):
        module = restricted_unpickler_module(p, stub, allow)
        try:
            with open(p, "rb") as f:
                data = module.Unpickler(f).load()
        except LatentcompError as e:
            raise LatentcompError(f"{p}: {e}" if str(p) not in str(e) else str(e)) from None
        except Exception as e:  # noqa: BLE001 - any parse failure is a bad file
            raise LatentcompError(
                f"{p}: cannot read GANsformer network pickle ({type(e).__name__}: {e})"
            ) from None
    if not isinstance(data, dict):
        data = safe_load(p, stub=stub, allow=allow, what="GANsformer network pickle")
    if not isinstance(data, dict):
        raise LatentcompError(
            f"{p}: expected a dict with 'Gs' (GANsformer network pickle); got {type(data).__name__}"
        )
    return data


def _drop_duplicate_positions(prefix: str, tensors: dict) -> None:
    """trainable2d positions: `grid_pos` is the same parameter as `pos0`; keep one copy (grid_pos)."""
    for key in [k for k in tensors if k.startswith(prefix) and k.rsplit(".", 1)[-1] in ("pos0", "pos1")]:
        layer = key.rsplit(".", 1)[0]
        if f"{layer}.grid_pos" in tensors:
            del tensors[key]


def load_gansformer_pickle(path) -> tuple[GANsformerNet, dict]:
    """Read "Gs" (the EMA generator) of an official GANsformer pickle -> (native net, config)."""
    from .stylegan2_ada import PersistentRecord

    p = Path(path).expanduser()
    data = read_gansformer_pickle(p)
    G = next((data[k] for k in ("Gs", "G_ema", "G") if isinstance(data.get(k), PersistentRecord)), None)
    if G is None:
        keys = ", ".join(map(str, list(data)[:8]))
        raise LatentcompError(f"{p}: no 'Gs' generator network in this pickle (keys: {keys})")
    kwargs = G.init_kwargs
    names = ("z_dim", "c_dim", "w_dim", "k", "img_resolution", "img_channels")
    for name, value in zip(names, G.init_args, strict=False):
        kwargs.setdefault(name, value)
    if G.class_name != "Generator" or "k" not in kwargs:
        hint = " (a StyleGAN2-ADA pickle? use stylegan2-ada:PATH)" if "k" not in kwargs else ""
        raise LatentcompError(f"{p}: the generator is a {G.class_name!r} without GANsformer kwargs{hint}")
    arch = resolve_arch(kwargs, str(p))
    net = _build(arch, str(p))
    tensors = G.named_tensors()
    if arch["synthesis_kwargs"]["pos_type"] == "trainable2d":
        _drop_duplicate_positions("synthesis.", tensors)
    _load_tensors(net, tensors, f"{p}: Gs")
    config = {"format": "gansformer-pytorch", "architecture": net.config()}
    if arch["ignored"]:
        config["ignored_options"] = arch["ignored"]
    dsa = data.get("dataset_args")
    if isinstance(dsa, dict):
        config["dataset_args"] = {
            k: v for k, v in dsa.items() if isinstance(v, (int, float, str, bool, type(None)))
        }
    return net, config


def load_gansformer_net(path) -> tuple[GANsformerNet, dict]:
    """A latentcomp folder / X.safetensors / X.json, or an official PyTorch network pickle."""
    p = Path(path).expanduser()
    if p.is_dir() or p.suffix in (".safetensors", ".json"):
        return _load_own_format(p)
    return load_gansformer_pickle(p)


@register_kind("gansformer")
def load_gansformer(
    location: str,
    truncation: float = 1.0,
    noise_mode: str = "const",
    clamp: bool = True,
    class_idx: int | None = None,
    **unused,
) -> GANsformerGenerator:
    """`gansformer:PATH` (official PyTorch network pickle, or latentcomp's safetensors format)."""
    if unused:
        raise LatentcompError(
            f"gansformer: unknown option(s) {', '.join(unused)}; "
            "accepted: truncation, noise_mode, clamp, class_idx"
        )
    p = Path(location).expanduser()
    if not p.exists() and p.suffix not in (".safetensors", ".json"):
        raise LatentcompError(f"GANsformer checkpoint not found: {p}")
    net, config = load_gansformer_net(p)
    return GANsformerGenerator(
        net, truncation=truncation, noise_mode=noise_mode, clamp=clamp, class_idx=class_idx, config=config
    )
