"""Pipeline options: chosen at construction (or by from_pretrained), one frozen record, and the same
results as the older in-place setters."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from latentcomp import load_generator
from latentcomp.edit import Pipeline
from latentcomp.edit.pipeline import PipelineOptions
from latentcomp.errors import LatentcompError
from latentcomp.regressors import build_regressor

RES = 32


def _parts(seed=3):
    G = load_generator("builtin:tiny-random")
    torch.manual_seed(seed)
    return G, build_regressor(G)


def _left(n):
    m = torch.zeros(n, 1, RES, RES)
    m[..., : RES // 2] = 1
    return m


def test_precision_at_construction_equals_the_setter():
    made = Pipeline(*_parts(), precision="bf16")
    set_later = Pipeline(*_parts()).set_regressor_precision("bf16")
    fp32 = Pipeline(*_parts())
    x, m = fp32.sample(3, seed=5), _left(3)
    assert made.options == set_later.options and made.regressor_precision == "bf16"
    assert torch.equal(made.invert(x, m), set_later.invert(x, m))
    assert not torch.equal(made.invert(x, m), fp32.invert(x, m))


def test_options_record_is_frozen_and_checked():
    pipe = Pipeline(*_parts(), options=PipelineOptions(precision="int8", calibration=8))
    assert pipe.int8_regressor is not None and pipe.options.calibration == 8
    with pytest.raises(dataclasses.FrozenInstanceError):
        pipe.options.precision = "fp32"
    with pytest.raises(
        LatentcompError, match="unknown regressor precision 'fp16'; accepted: fp32, bf16, int8"
    ):
        Pipeline(*_parts(), precision="fp16")
    with pytest.raises(LatentcompError, match="unknown pipeline option.* turbo; accepted: precision"):
        Pipeline(*_parts(), turbo=True)
    with pytest.raises(LatentcompError, match="calibration must be at least 1"):
        Pipeline(*_parts(), precision="int8", calibration=0)


def test_from_pretrained_takes_options():
    pipe = Pipeline.from_pretrained(
        "toyfaces", precision="bf16", compile=True, compile_options={"dynamic": False}
    )
    assert pipe.options == PipelineOptions(precision="bf16", compile=True, compile_options={"dynamic": False})
    assert pipe.compiled and not pipe.frozen


def test_finetune_keeps_precision_but_runs_eager(monkeypatch):
    compiled = []
    monkeypatch.setattr(torch.nn.Module, "compile", lambda self, **kw: compiled.append(type(self).__name__))
    pipe = Pipeline(*_parts(), precision="bf16", compile=True, freeze=True)
    assert pipe.compiled and pipe.frozen and len(compiled) == 2  # G and E
    tuned = pipe.finetune(pipe.sample(1, seed=2), _left(1), steps=1)
    assert tuned.options == PipelineOptions(precision="bf16") and tuned.source == pipe.source
    assert len(compiled) == 2


def test_iterations_scope_restores_only_iterations():
    pipe = Pipeline(*_parts(), precision="bf16")
    with pipe.iterations_scope(1):
        assert pipe.iterations == 1
    assert pipe.options == PipelineOptions(precision="bf16")


def test_one_image_with_a_batch_of_masks_everywhere():
    """_prepare repeats a batch of one image to the masks' batch for every entry point."""
    pipe = Pipeline(*_parts())
    x, masks = pipe.sample(1, seed=4), torch.cat([_left(1), 1 - _left(1)])
    lat = pipe.invert(x, masks)
    assert lat.shape[0] == 2 and not torch.equal(lat[0], lat[1])
    assert torch.equal(pipe.refine(x, masks, steps=0).latent, lat)
    assert pipe.inpaint(x, masks, n=1).images.shape[0] == 2
