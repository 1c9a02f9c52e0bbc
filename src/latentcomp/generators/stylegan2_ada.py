"""`stylegan2-ada:PATH`: NVlabs stylegan2-ada-pytorch network pickles, read without running their code.

An NVlabs `.pkl` is a plain pickle of {"G", "D", "G_ema", "augment_pipe", "training_set_kwargs"} whose
networks are `torch_utils.persistence` objects: each one pickles as a call
`_reconstruct_persistent_obj(meta)` where meta = {"type": "class", "version", "module_src" (the Python
source of training/networks.py), "class_name", "state" (the module's __dict__)}. The original loader
exec()s `module_src`. Here that call is mapped to `_persistent_record`, which only keeps the class name
and the state (init kwargs, `_parameters`, `_buffers`, `_modules`); the source text is never executed.
Every other global in the file is refused (see `latentcomp.safe_pickle`).

The generator is then rebuilt natively (`StyleGAN2AdaNet`, same module names and state-dict keys as
NVlabs' `training/networks.py`) from G_ema's init kwargs and loaded with its tensors. Inference runs in
float32 (the pickle's `num_fp16_res` is ignored, as NVlabs' `force_fp32=True`).
"""

from __future__ import annotations

import io
import math
import zipfile
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import LatentcompError
from .base import Generator
from .ops import upfirdn2d
from .registry import register_kind

# --------------------------------------------------------------------------------------------------
# native ops with NVlabs conventions
_ACTIVATIONS = {"linear": (None, 1.0), "lrelu": (0.2, math.sqrt(2)), "relu": (0.0, math.sqrt(2))}


def _check_activation(act: str) -> None:
    if act not in _ACTIVATIONS:
        raise ValueError(f"activation {act!r} is not supported; accepted: {', '.join(_ACTIVATIONS)}")


def bias_act(x, b=None, act="linear", gain=None, clamp=None):
    """NVlabs bias_act: x + b (dim 1) -> activation -> * gain (default: the activation's own) -> clamp."""
    if b is not None:
        x = x + b.reshape([1, -1] + [1] * (x.ndim - 2))
    slope, def_gain = _ACTIVATIONS[act]
    if slope is not None:
        x = F.leaky_relu(x, slope) if slope > 0 else F.relu(x)
    gain = def_gain if gain is None else gain
    if gain != 1:
        x = x * gain
    if clamp is not None and clamp >= 0:
        x = x.clamp(-clamp, clamp)
    return x


def setup_filter(taps: Sequence[float]) -> torch.Tensor:
    """As NVlabs upfirdn2d.setup_filter: 1D taps -> normalised 2D outer product (kept 1D when >= 8 taps)."""
    f = torch.as_tensor(taps, dtype=torch.float32)
    if f.ndim == 1 and f.numel() < 8:
        f = torch.outer(f, f)
    return f / f.sum()


def _filter2d(f: torch.Tensor) -> torch.Tensor:
    return torch.outer(f, f) if f.ndim == 1 else f


def upsample2d(x: torch.Tensor, f: torch.Tensor, up: int = 2) -> torch.Tensor:
    fw = f.shape[-1]
    p0, p1 = (fw + up - 1) // 2, (fw - up) // 2
    return upfirdn2d(x, _filter2d(f) * up**2, up=up, pad=(p0, p1, p0, p1))


def _conv_up(x, w, f, up, padding, groups):
    """NVlabs conv2d_resample for up > 1: transposed conv, then FIR filter; w (O, I/groups, k, k)."""
    out_ch, in_per_group, kh, kw = w.shape
    fw = f.shape[-1]
    p0 = padding + (fw + up - 1) // 2
    p1 = padding + (fw - up) // 2
    if kw == 1 and kh == 1:  # 1x1: upsample first, then convolve
        x = upfirdn2d(x, _filter2d(f) * up**2, up=up, pad=(p0, p1, p0, p1))
        return F.conv2d(x, w, groups=groups)
    w = w.reshape(groups, out_ch // groups, in_per_group, kh, kw).transpose(1, 2)
    w = w.reshape(groups * in_per_group, out_ch // groups, kh, kw)
    p0 -= kw - 1
    p1 -= kw - up
    pt = max(min(-p0, -p1), 0)
    x = F.conv_transpose2d(x, w, stride=up, padding=pt, groups=groups)
    return upfirdn2d(x, _filter2d(f) * up**2, pad=(p0 + pt, p1 - pt, p0 + pt, p1 - pt))


def modulated_conv2d(x, weight, styles, up=1, padding=0, resample_filter=None, demodulate=True):
    """Per-sample modulated (and demodulated) conv as one grouped conv. weight (O, I, k, k), styles (N, I)."""
    n = x.shape[0]
    out_ch, in_ch, kh, kw = weight.shape
    w = weight.unsqueeze(0) * styles.reshape(n, 1, -1, 1, 1)
    if demodulate:
        w = w * (w.square().sum(dim=[2, 3, 4]) + 1e-8).rsqrt().reshape(n, -1, 1, 1, 1)
    x = x.reshape(1, -1, *x.shape[2:])
    w = w.reshape(-1, in_ch, kh, kw)
    if up > 1:
        x = _conv_up(x, w, resample_filter, up, padding, groups=n)
    else:
        x = F.conv2d(x, w, padding=padding, groups=n)
    return x.reshape(n, -1, *x.shape[2:])


def normalize_2nd_moment(x, dim=1, eps=1e-8):
    return x * (x.square().mean(dim=dim, keepdim=True) + eps).rsqrt()


# --------------------------------------------------------------------------------------------------
# the network, with NVlabs module names (state-dict keys match training/networks.py)
class FullyConnectedLayer(nn.Module):
    def __init__(
        self, in_features, out_features, bias=True, activation="linear", lr_multiplier=1.0, bias_init=0.0
    ):
        super().__init__()
        _check_activation(activation)
        self.activation = activation
        self.weight = nn.Parameter(torch.randn([out_features, in_features]) / lr_multiplier)
        self.bias = nn.Parameter(torch.full([out_features], float(bias_init))) if bias else None
        self.weight_gain = lr_multiplier / math.sqrt(in_features)
        self.bias_gain = lr_multiplier

    def forward(self, x):
        w = self.weight * self.weight_gain
        b = self.bias * self.bias_gain if self.bias is not None else None
        if self.activation == "linear" and b is not None:
            return torch.addmm(b.unsqueeze(0), x, w.t())
        return bias_act(x.matmul(w.t()), b, act=self.activation)


class MappingNetwork(nn.Module):
    """z (and label c) -> one w (N, w_dim); broadcasting and truncation are done by the wrapper."""

    def __init__(
        self,
        z_dim,
        c_dim,
        w_dim,
        num_ws,
        num_layers=8,
        embed_features=None,
        layer_features=None,
        activation="lrelu",
        lr_multiplier=0.01,
        w_avg_beta=0.995,
    ):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim, self.num_ws, self.num_layers = (
            z_dim,
            c_dim,
            w_dim,
            num_ws,
            num_layers,
        )
        if embed_features is None:
            embed_features = w_dim
        if c_dim == 0:
            embed_features = 0
        if layer_features is None:
            layer_features = w_dim
        features = [z_dim + embed_features] + [layer_features] * (num_layers - 1) + [w_dim]
        if c_dim > 0:
            self.embed = FullyConnectedLayer(c_dim, embed_features)
        for idx in range(num_layers):
            layer = FullyConnectedLayer(
                features[idx], features[idx + 1], activation=activation, lr_multiplier=lr_multiplier
            )
            setattr(self, f"fc{idx}", layer)
        if num_ws is not None and w_avg_beta is not None:
            self.register_buffer("w_avg", torch.zeros([w_dim]))

    def forward(self, z, c=None):
        x = normalize_2nd_moment(z.float()) if self.z_dim > 0 else None
        if self.c_dim > 0:
            y = normalize_2nd_moment(self.embed(c.float()))
            x = torch.cat([x, y], dim=1) if x is not None else y
        for idx in range(self.num_layers):
            x = getattr(self, f"fc{idx}")(x)
        return x


class SynthesisLayer(nn.Module):
    def __init__(
        self,
        in_channels,
        out_channels,
        w_dim,
        resolution,
        kernel_size=3,
        up=1,
        use_noise=True,
        activation="lrelu",
        resample_filter=(1, 3, 3, 1),
        conv_clamp=None,
        channels_last=False,
    ):
        super().__init__()
        _check_activation(activation)
        self.resolution, self.up, self.use_noise, self.activation = resolution, up, use_noise, activation
        self.conv_clamp = conv_clamp
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.padding = kernel_size // 2
        self.act_gain = _ACTIVATIONS[activation][1]
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        if use_noise:
            self.register_buffer("noise_const", torch.randn([resolution, resolution]))
            self.noise_strength = nn.Parameter(torch.zeros([]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))

    def forward(self, x, w, noise_mode="const", gain=1.0):
        styles = self.affine(w)
        x = modulated_conv2d(
            x, self.weight, styles, up=self.up, padding=self.padding, resample_filter=self.resample_filter
        )
        if self.use_noise and noise_mode == "random":
            x = (
                x
                + torch.randn([x.shape[0], 1, self.resolution, self.resolution], device=x.device)
                * self.noise_strength
            )
        elif self.use_noise and noise_mode == "const":
            x = x + self.noise_const * self.noise_strength
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, self.bias, act=self.activation, gain=self.act_gain * gain, clamp=clamp)


class ToRGBLayer(nn.Module):
    def __init__(self, in_channels, out_channels, w_dim, kernel_size=1, conv_clamp=None, channels_last=False):
        super().__init__()
        self.conv_clamp = conv_clamp
        self.affine = FullyConnectedLayer(w_dim, in_channels, bias_init=1)
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels]))
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)
        self.padding = 0

    def forward(self, x, w):
        styles = self.affine(w) * self.weight_gain
        x = modulated_conv2d(x, self.weight, styles, demodulate=False, padding=self.padding)
        return bias_act(x, self.bias, clamp=self.conv_clamp)


class Conv2dLayer(nn.Module):
    """Only the 1x1 upsampling skip of the 'resnet' synthesis architecture needs this."""

    def __init__(
        self,
        in_channels,
        out_channels,
        kernel_size,
        bias=True,
        activation="linear",
        up=1,
        resample_filter=(1, 3, 3, 1),
        conv_clamp=None,
        channels_last=False,
    ):
        super().__init__()
        _check_activation(activation)
        self.activation, self.up, self.conv_clamp = activation, up, conv_clamp
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.padding = kernel_size // 2
        self.weight_gain = 1 / math.sqrt(in_channels * kernel_size**2)
        self.act_gain = _ACTIVATIONS[activation][1]
        self.weight = nn.Parameter(torch.randn([out_channels, in_channels, kernel_size, kernel_size]))
        self.bias = nn.Parameter(torch.zeros([out_channels])) if bias else None

    def forward(self, x, gain=1.0):
        w = self.weight * self.weight_gain
        if self.up > 1:
            x = _conv_up(x, w, self.resample_filter, self.up, self.padding, groups=1)
        else:
            x = F.conv2d(x, w, padding=self.padding)
        clamp = self.conv_clamp * gain if self.conv_clamp is not None else None
        return bias_act(x, self.bias, act=self.activation, gain=self.act_gain * gain, clamp=clamp)


class SynthesisBlock(nn.Module):
    def __init__(
        self,
        in_channels,
        out_channels,
        w_dim,
        resolution,
        img_channels,
        is_last,
        architecture="skip",
        resample_filter=(1, 3, 3, 1),
        conv_clamp=None,
        use_fp16=False,
        fp16_channels_last=False,
        **layer_kwargs,
    ):
        super().__init__()
        if architecture not in ("orig", "skip", "resnet"):
            raise ValueError(f"synthesis architecture {architecture!r} unknown; accepted: orig, skip, resnet")
        self.in_channels, self.resolution, self.is_last = in_channels, resolution, is_last
        self.architecture = architecture
        self.register_buffer("resample_filter", setup_filter(resample_filter))
        self.num_conv = 0
        self.num_torgb = 0
        if in_channels == 0:
            self.const = nn.Parameter(torch.randn([out_channels, resolution, resolution]))
        else:
            self.conv0 = SynthesisLayer(
                in_channels,
                out_channels,
                w_dim=w_dim,
                resolution=resolution,
                up=2,
                resample_filter=resample_filter,
                conv_clamp=conv_clamp,
                **layer_kwargs,
            )
            self.num_conv += 1
        self.conv1 = SynthesisLayer(
            out_channels,
            out_channels,
            w_dim=w_dim,
            resolution=resolution,
            conv_clamp=conv_clamp,
            **layer_kwargs,
        )
        self.num_conv += 1
        if is_last or architecture == "skip":
            self.torgb = ToRGBLayer(out_channels, img_channels, w_dim=w_dim, conv_clamp=conv_clamp)
            self.num_torgb += 1
        if in_channels != 0 and architecture == "resnet":
            self.skip = Conv2dLayer(
                in_channels, out_channels, kernel_size=1, bias=False, up=2, resample_filter=resample_filter
            )

    def forward(self, x, img, ws, noise_mode="const"):
        w_iter = iter(ws.unbind(dim=1))
        if self.in_channels == 0:
            x = self.const.unsqueeze(0).repeat([ws.shape[0], 1, 1, 1])
            x = self.conv1(x, next(w_iter), noise_mode=noise_mode)
        elif self.architecture == "resnet":
            y = self.skip(x, gain=math.sqrt(0.5))
            x = self.conv0(x, next(w_iter), noise_mode=noise_mode)
            x = self.conv1(x, next(w_iter), noise_mode=noise_mode, gain=math.sqrt(0.5))
            x = y + x
        else:
            x = self.conv0(x, next(w_iter), noise_mode=noise_mode)
            x = self.conv1(x, next(w_iter), noise_mode=noise_mode)
        if img is not None:
            img = upsample2d(img, self.resample_filter)
        if self.is_last or self.architecture == "skip":
            y = self.torgb(x, next(w_iter))
            img = img + y if img is not None else y
        return x, img


class SynthesisNetwork(nn.Module):
    def __init__(
        self,
        w_dim,
        img_resolution,
        img_channels,
        channel_base=32768,
        channel_max=512,
        num_fp16_res=0,
        **block_kwargs,
    ):
        super().__init__()
        log2 = int(round(math.log2(img_resolution)))
        if img_resolution < 4 or 2**log2 != img_resolution:
            raise ValueError(f"img_resolution must be a power of two >= 4, got {img_resolution}")
        self.w_dim, self.img_resolution, self.img_channels = w_dim, img_resolution, img_channels
        self.block_resolutions = [2**i for i in range(2, log2 + 1)]
        self.channels_dict = {res: min(channel_base // res, channel_max) for res in self.block_resolutions}
        self.num_ws = 0
        for res in self.block_resolutions:
            in_channels = self.channels_dict[res // 2] if res > 4 else 0
            is_last = res == img_resolution
            block = SynthesisBlock(
                in_channels,
                self.channels_dict[res],
                w_dim=w_dim,
                resolution=res,
                img_channels=img_channels,
                is_last=is_last,
                **block_kwargs,
            )
            self.num_ws += block.num_conv + (block.num_torgb if is_last else 0)
            setattr(self, f"b{res}", block)

    def forward(self, ws, noise_mode="const"):
        w_idx = 0
        x = img = None
        for res in self.block_resolutions:
            block = getattr(self, f"b{res}")
            cur = ws.narrow(1, w_idx, block.num_conv + block.num_torgb)
            w_idx += block.num_conv
            x, img = block(x, img, cur, noise_mode=noise_mode)
        return img


class StyleGAN2AdaNet(nn.Module):
    """NVlabs' `Generator` (stylegan2-ada-pytorch) rebuilt natively: `mapping` + `synthesis`."""

    def __init__(
        self, z_dim, c_dim, w_dim, img_resolution, img_channels, mapping_kwargs=None, synthesis_kwargs=None
    ):
        super().__init__()
        self.z_dim, self.c_dim, self.w_dim = z_dim, c_dim, w_dim
        self.img_resolution, self.img_channels = img_resolution, img_channels
        self.synthesis = SynthesisNetwork(
            w_dim=w_dim,
            img_resolution=img_resolution,
            img_channels=img_channels,
            **dict(synthesis_kwargs or {}),
        )
        self.num_ws = self.synthesis.num_ws
        self.mapping = MappingNetwork(
            z_dim=z_dim, c_dim=c_dim, w_dim=w_dim, num_ws=self.num_ws, **dict(mapping_kwargs or {})
        )

    def forward(self, z, c=None, truncation_psi=1.0, noise_mode="const"):
        w = self.mapping(z, c)
        if truncation_psi != 1:
            w = self.mapping.w_avg.lerp(w, truncation_psi)
        return self.synthesis(w.unsqueeze(1).repeat(1, self.num_ws, 1), noise_mode=noise_mode)


# --------------------------------------------------------------------------------------------------
# reading the pickle
_PERSISTENT = ("torch_utils.persistence", "_reconstruct_persistent_obj")
_TOP_KWARGS = (
    "z_dim",
    "c_dim",
    "w_dim",
    "img_resolution",
    "img_channels",
    "mapping_kwargs",
    "synthesis_kwargs",
)
_MAPPING_KWARGS = {
    "num_layers",
    "embed_features",
    "layer_features",
    "activation",
    "lr_multiplier",
    "w_avg_beta",
}
_SYNTHESIS_KWARGS = {
    "channel_base",
    "channel_max",
    "num_fp16_res",
    "architecture",
    "resample_filter",
    "conv_clamp",
    "fp16_channels_last",
    "kernel_size",
    "use_noise",
    "activation",
    "channels_last",
}


class PersistentRecord:
    """Inert record of one pickled `torch_utils.persistence` object: its class name and pickled state."""

    def __init__(self, class_name: str, state: dict, version=None):
        self.class_name = class_name
        self.state = state
        self.version = version

    def __repr__(self):
        return f"PersistentRecord({self.class_name})"

    @property
    def init_args(self) -> tuple:
        return tuple(self.state.get("_init_args") or ())

    @property
    def init_kwargs(self) -> dict:
        return dict(self.state.get("_init_kwargs") or {})

    def named_tensors(self, prefix: str = "") -> dict[str, torch.Tensor]:
        """All parameters and buffers, keyed like `state_dict()` (None entries skipped)."""
        out: dict[str, torch.Tensor] = {}
        for group in ("_parameters", "_buffers"):
            for name, t in (self.state.get(group) or {}).items():
                if isinstance(t, torch.Tensor):
                    out[prefix + name] = t.detach()
        for name, child in (self.state.get("_modules") or {}).items():
            if isinstance(child, PersistentRecord):
                out.update(child.named_tensors(f"{prefix}{name}."))
        return out

    def class_names(self) -> set[str]:
        names = {self.class_name}
        for child in (self.state.get("_modules") or {}).values():
            if isinstance(child, PersistentRecord):
                names |= child.class_names()
        return names


class _EasyDict(dict):
    """Stand-in for dnnlib.util.EasyDict: a plain dict (attribute access is never needed here)."""

    def __setstate__(self, state):  # EasyDict pickles no instance state; ignore anything else
        pass


def _unpickle_globals(path: Path) -> dict:
    def persistent_record(meta):
        if (
            not isinstance(meta, dict)
            or meta.get("type") != "class"
            or not isinstance(meta.get("class_name"), str)
            or not isinstance(meta.get("state"), dict)
        ):
            raise LatentcompError(
                f"{path}: refusing a torch_utils.persistence object that is not a plain class record "
                "(expected meta with type='class', class_name and a state dict)"
            )
        # meta["module_src"] is the network's Python source: deliberately never executed
        return PersistentRecord(meta["class_name"], meta["state"], meta.get("version"))

    def storage_from_bytes(b):
        if not isinstance(b, (bytes, bytearray)):
            raise LatentcompError(f"{path}: a tensor storage is not stored as bytes")
        return torch.load(io.BytesIO(b), map_location="cpu", weights_only=True)

    return {
        _PERSISTENT: persistent_record,
        ("dnnlib.util", "EasyDict"): _EasyDict,
        ("dnnlib", "EasyDict"): _EasyDict,
        ("torch.storage", "_load_from_bytes"): storage_from_bytes,
    }


def read_network_pickle(path) -> dict:
    """Unpickle an NVlabs network pickle into plain data with `PersistentRecord`s; executes no code."""
    from ..safe_pickle import restricted_unpickler_module, safe_load

    p = Path(path).expanduser()
    if not p.is_file():
        raise LatentcompError(f"StyleGAN2-ADA network pickle not found: {p}")
    allow = _unpickle_globals(p)
    data = None
    if not zipfile.is_zipfile(p):  # NVlabs .pkl files are plain pickles
        module = restricted_unpickler_module(p, (), allow)
        try:
            with open(p, "rb") as f:
                data = module.Unpickler(f).load()
        except LatentcompError:
            raise
        except Exception as e:  # noqa: BLE001 - any parse failure is a bad file
            raise LatentcompError(f"{p}: cannot read network pickle ({type(e).__name__}: {e})") from None
    if not isinstance(data, dict):  # a torch.save container (zip or legacy)
        data = safe_load(p, allow=allow, what="StyleGAN2-ADA network pickle")
    if not isinstance(data, dict):
        raise LatentcompError(
            f"{p}: expected a dict with 'G_ema' (NVlabs network pickle); got {type(data).__name__}"
        )
    return data


def arch_from_record(G: PersistentRecord, where: str) -> dict:
    """Generator constructor kwargs from the pickled init args/kwargs, validated."""
    kw = G.init_kwargs
    for name, value in zip(_TOP_KWARGS, G.init_args, strict=False):
        kw.setdefault(name, value)
    missing = [k for k in _TOP_KWARGS[:5] if k not in kw]
    if missing:
        raise LatentcompError(
            f"{where}: G_ema init kwargs lack {', '.join(missing)}; not a stylegan2-ada Generator"
        )
    mapping = dict(kw.get("mapping_kwargs") or {})
    synthesis = dict(kw.get("synthesis_kwargs") or {})
    bad = sorted(set(mapping) - _MAPPING_KWARGS) + sorted(set(synthesis) - _SYNTHESIS_KWARGS)
    if bad:
        raise LatentcompError(
            f"{where}: unsupported generator options {bad}; known mapping options {sorted(_MAPPING_KWARGS)}, "
            f"synthesis options {sorted(_SYNTHESIS_KWARGS)}"
        )
    for k in ("num_fp16_res", "fp16_channels_last", "channels_last"):  # performance only; we run float32
        synthesis.pop(k, None)
    arch = {k: kw[k] for k in _TOP_KWARGS[:5]}
    for k in ("z_dim", "c_dim", "w_dim", "img_resolution", "img_channels"):
        try:
            arch[k] = int(arch[k])
        except (TypeError, ValueError):
            raise LatentcompError(f"{where}: G_ema init kwarg {k}={arch[k]!r} is not an integer") from None
    arch["mapping_kwargs"] = mapping
    arch["synthesis_kwargs"] = synthesis
    return arch


def load_stylegan2_ada_net(path) -> tuple[StyleGAN2AdaNet, dict]:
    """Read G_ema of an NVlabs pickle -> (native net with its weights, config dict)."""
    p = Path(path).expanduser()
    data = read_network_pickle(p)
    G = data.get("G_ema", data.get("G"))
    if not isinstance(G, PersistentRecord):
        keys = ", ".join(map(str, list(data)[:8]))
        raise LatentcompError(f"{p}: no 'G_ema' generator network in this pickle (keys: {keys})")
    if "SynthesisInput" in G.class_names():
        raise LatentcompError(
            f"{p}: this is a StyleGAN3 network; stylegan2-ada: reads StyleGAN2(-ADA) generators"
        )
    if G.class_name != "Generator":
        raise LatentcompError(f"{p}: G_ema is a {G.class_name!r}; expected a stylegan2-ada 'Generator'")
    arch = arch_from_record(G, str(p))
    try:
        net = StyleGAN2AdaNet(**arch)
    except (TypeError, ValueError) as e:
        raise LatentcompError(f"{p}: cannot build the generator from its init kwargs {arch} ({e})") from None
    tensors = G.named_tensors()
    own = net.state_dict()
    desc = f"a {net.img_resolution}px stylegan2-ada generator (z {net.z_dim}, w {net.w_dim})"
    missing = [k for k in own if k not in tensors]
    unexpected = [k for k in tensors if k not in own]
    if missing or unexpected:
        raise LatentcompError(
            f"{p}: G_ema tensors do not match {desc}: "
            f"missing {missing[:4]}{'...' if len(missing) > 4 else ''}, "
            f"unexpected {unexpected[:4]}{'...' if len(unexpected) > 4 else ''}"
        )
    for k, v in tensors.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise LatentcompError(
                f"{p}: G_ema {k} has shape {tuple(v.shape)}; expected {tuple(own[k].shape)} for {desc}"
            )
    net.load_state_dict({k: v.float() for k, v in tensors.items()})
    config = {"format": "stylegan2-ada-pytorch", "architecture": arch}
    tsk = data.get("training_set_kwargs")
    if isinstance(tsk, dict):
        config["training_set_kwargs"] = {
            k: v for k, v in tsk.items() if isinstance(v, (int, float, str, bool, type(None)))
        }
    return net, config


class StyleGAN2AdaGenerator(Generator):
    """Frozen NVlabs StyleGAN2-ADA generator: spaces z, w, w+; fixed noise (`noise_const`); output clamped.

    truncation: psi, applied in the mapping (z -> w) towards the network's `w_avg` (or the mean w of 4096 z
    drawn with seed 0 when the pickle tracks none). class_idx: the label for conditional networks (c_dim > 0).
    """

    latent_spaces = ("z", "w", "w+")
    prior = "normal"

    def __init__(
        self,
        net: StyleGAN2AdaNet,
        truncation: float = 1.0,
        noise_mode: str = "const",
        clamp: bool = True,
        class_idx: int | None = None,
        config: dict | None = None,
    ):
        super().__init__()
        if noise_mode not in ("const", "random", "none"):
            raise LatentcompError(f"noise_mode {noise_mode!r} not accepted; expected const, random or none")
        self.net = net
        self.latent_shape = (net.z_dim,)
        self.resolution = net.img_resolution
        self.channels = net.img_channels
        self.num_ws = net.num_ws
        self.w_dim = net.w_dim
        self.truncation = float(truncation)
        self.noise_mode = noise_mode
        self.clamp = clamp
        self.config = dict(config or {})
        c = torch.zeros(1, net.c_dim)
        if net.c_dim > 0:
            idx = 0 if class_idx is None else int(class_idx)
            if not 0 <= idx < net.c_dim:
                raise LatentcompError(
                    f"class_idx {idx} out of range for a generator with {net.c_dim} classes"
                )
            c[0, idx] = 1
        elif class_idx is not None:
            raise LatentcompError("class_idx given, but this generator is unconditional (c_dim 0)")
        self.register_buffer("label", c)
        w_avg = getattr(net.mapping, "w_avg", None)
        if w_avg is None:
            with torch.no_grad():
                z = torch.randn(4096, net.z_dim, generator=torch.Generator().manual_seed(0))
                w_avg = net.mapping(z, c.expand(4096, -1)).mean(0)
        self.register_buffer("w_avg", w_avg.detach().float().reshape(1, -1).clone())
        self.freeze()

    def map_z(self, z: torch.Tensor) -> torch.Tensor:
        w = self.net.mapping(z, self.label.expand(z.shape[0], -1))
        if self.truncation != 1:
            w = self.w_avg + self.truncation * (w - self.w_avg)
        return w

    def synthesize(self, latent: torch.Tensor, space: str) -> torch.Tensor:
        img = self.net.synthesis(self.to_wplus(latent, space), noise_mode=self.noise_mode)
        return img.clamp(-1, 1) if self.clamp else img

    def feature_layers(self) -> dict[str, str]:
        """mapping (w), then per block b{res}: conv0 (upsampling conv), conv1, torgb (this block's RGB)."""
        names = {"mapping": "net.mapping"}
        for res in self.net.synthesis.block_resolutions:
            block = getattr(self.net.synthesis, f"b{res}")
            for part in ("conv0", "conv1", "torgb"):
                if hasattr(block, part):
                    names[f"b{res}.{part}"] = f"net.synthesis.b{res}.{part}"
        return names


@register_kind("stylegan2-ada")
def load_stylegan2_ada(
    location: str,
    truncation: float = 1.0,
    noise_mode: str = "const",
    clamp: bool = True,
    class_idx: int | None = None,
    **unused,
) -> StyleGAN2AdaGenerator:
    """`stylegan2-ada:PATH.pkl` (NVlabs stylegan2-ada-pytorch network pickle, G_ema)."""
    if unused:
        raise LatentcompError(
            f"stylegan2-ada: unknown option(s) {', '.join(unused)}; accepted: truncation, noise_mode, clamp, "
            "class_idx"
        )
    net, config = load_stylegan2_ada_net(location)
    return StyleGAN2AdaGenerator(
        net, truncation=truncation, noise_mode=noise_mode, clamp=clamp, class_idx=class_idx, config=config
    )
