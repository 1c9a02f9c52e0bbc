"""Int8 copy of a regressor for CPU inference (post-training static quantization).

E only has to land near the right latent, so its convolutions can run in int8: weights quantized per
output channel, activations with ranges calibrated on inputs like the ones it will see. On the bundled
pipelines that made E 1.5-1.9x faster than compiled fp32 on an AVX2 CPU and raised the known-pixel error
of G(E(x)) by 1-5% (figures in docs/benchmarks.md).

Done with torch.ao's FX graph mode quantization and its x86 backend (fbgemm / oneDNN int8 kernels), the
quantization flow that ships with torch itself; its successor, torchao's pt2e flow, is a separate install.
Inference only: int8 kernels have no backward pass and run on the CPU only, so whatever needs E's gradient
(refinement's latent term, fine-tuning) keeps the fp32 regressor.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn

from ..errors import LatentcompError
from .model import Regressor, trunk_forward

CALIBRATION_BATCH = 64


class _Trunk(nn.Module):
    """Backbone + head + pool of a regressor as one module, the part that is quantized."""

    def __init__(self, regressor: Regressor):
        super().__init__()
        self.backbone, self.head, self.space = regressor.backbone, regressor.head, regressor.space

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        return trunk_forward(self.backbone, self.head, self.space, inp)


class QuantizedRegressor(nn.Module):
    """Same call as `Regressor` (x, mask) -> latent, with an int8 trunk; the input preparation (masking,
    resizing) and the output stay fp32."""

    def __init__(self, regressor: Regressor, trunk: nn.Module):
        super().__init__()
        self.trunk = trunk
        for name in ("space", "resolution", "channels", "out_shape", "generator_spec"):
            setattr(self, name, getattr(regressor, name))
        self.prepare_input = regressor.prepare_input  # reads only the config, not the weights

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        inp = self.prepare_input(x, mask)
        if inp.device.type != "cpu":
            raise LatentcompError(f"the int8 regressor runs on the CPU only; got inputs on {inp.device}")
        return self.trunk(inp.float()).view(inp.shape[0], *self.out_shape)


@torch.no_grad()
def quantize_regressor(
    regressor: Regressor, images: torch.Tensor, masks: torch.Tensor | None = None
) -> QuantizedRegressor:
    """An int8 copy of `regressor` (left unchanged), calibrated on `images` (N, C, H, W) with `masks`
    (N, 1, H, W; None = all known). Use a few hundred inputs drawn as in use: G's samples under the
    training mask sampler (`Pipeline.set_regressor_precision("int8")` does that)."""
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

    if not isinstance(regressor, Regressor):
        raise LatentcompError(
            "int8 quantization needs a latentcomp Regressor (backbone + head); "
            f"got {type(regressor).__name__}"
        )
    if regressor.iterative or regressor.head_kind != "pool":
        raise LatentcompError(
            "int8 quantization covers plain regressors with the pooled head; this one is "
            + ("iterative" if regressor.iterative else f"a {regressor.head_kind} head")
            + " (run it in fp32 or bf16)"
        )
    if regressor.device.type != "cpu":
        raise LatentcompError(
            f"int8 quantization runs on the CPU only; the regressor is on {regressor.device}"
        )
    if images.dim() != 4 or images.shape[0] == 0:
        raise LatentcompError(
            f"calibration images must have shape (N, C, H, W) with N >= 1; got {tuple(images.shape)}"
        )
    E = copy.deepcopy(regressor).eval()
    for module in E.modules():
        if hasattr(module, "inplace"):
            module.inplace = False  # int8 activations have no in-place variant (torch warns at every call)
    inputs = [E.prepare_input(x, m) for x, m in _batches(images, masks)]
    with warnings.catch_warnings():
        # torch.ao's FX flow warns that it is deprecated in favour of torchao (not installed here)
        warnings.simplefilter("ignore")
        # the qconfig of the engine the int8 kernels will run on (x86 on PCs, qnnpack on ARM)
        qconfig = get_default_qconfig_mapping(torch.backends.quantized.engine)
        prepared = prepare_fx(_Trunk(E), qconfig, (inputs[0],))
        for inp in inputs:
            prepared(inp)
        trunk = convert_fx(prepared)
    return QuantizedRegressor(regressor, trunk).eval()


def _batches(images: torch.Tensor, masks: torch.Tensor | None):
    parts = images.split(CALIBRATION_BATCH)
    if masks is None:
        return [(x, None) for x in parts]
    return list(zip(parts, masks.split(CALIBRATION_BATCH), strict=True))
