"""The Pipeline API on tiny random models: shapes, known region, clear errors, determinism, loading."""

from __future__ import annotations

from unittest import mock

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from latentcomp import load_generator
from latentcomp.edit import Pipeline
from latentcomp.edit.refine import finetune_regressor, masked_l1
from latentcomp.errors import LatentcompError
from latentcomp.regressors import build_regressor, save_regressor

RES = 32


def _half(n=1, left=True):
    m = torch.zeros(n, 1, RES, RES)
    if left:
        m[..., : RES // 2] = 1
    else:
        m[..., RES // 2 :] = 1
    return m


def test_compose_shapes_and_equivalence(pipe):
    a, b = pipe.sample(2, seed=1), pipe.sample(2, seed=2)
    res = pipe.compose([a, b], [_half(), _half(left=False)])
    assert res.image.shape == (2, 3, RES, RES) and res.collage.shape == (2, 3, RES, RES)
    assert res.mask.shape == (2, 1, RES, RES) and res.mask.eq(1).all()
    assert res.latent.shape == (2, 64) and res.space == "z"
    assert res.known_error.shape == (2,) and torch.isfinite(res.known_error).all()
    # the same as E then G by hand
    with torch.no_grad():
        manual = pipe.generator(pipe.regressor(res.collage, res.mask), space="z").clamp(-1, 1)
    assert torch.allclose(manual, res.image, atol=1e-6)
    assert res.image.min() >= -1 and res.image.max() <= 1


def test_compose_single_image_and_known_region_paste(pipe):
    a = pipe.sample(1, seed=3)[0]  # (C, H, W)
    m = _half()[0]
    res = pipe.compose([a], [m], paste=True)
    assert res.image.shape == (1, 3, RES, RES)
    assert torch.equal(res.image[..., : RES // 2], a[None, :, :, : RES // 2])  # known pixels kept exactly
    assert torch.allclose(res.known_error, masked_l1(res.raw, res.collage, res.mask))


def test_wplus_pipeline(pipe_wplus):
    x = pipe_wplus.sample(2, seed=0)
    res = pipe_wplus.compose([x], [_half(2)])
    assert res.latent.shape == (2, pipe_wplus.generator.num_ws, pipe_wplus.generator.w_dim)
    assert pipe_wplus.mean_latent().shape == (1, pipe_wplus.generator.num_ws, pipe_wplus.generator.w_dim)


@pytest.mark.parametrize(
    "mask,words",
    [
        (torch.ones(1, 1, 16, 16), ["16x16", "32x32"]),
        (torch.zeros(1, 1, RES, RES), ["no known pixels"]),
        (torch.full((1, 1, RES, RES), float("nan")), ["NaN"]),
    ],
)
def test_bad_masks(pipe, mask, words):
    x = pipe.sample(1)
    for call in (lambda: pipe.compose([x], [mask]), lambda: pipe.inpaint(x, mask)):
        with pytest.raises(LatentcompError) as e:
            call()
        for w in words:
            assert w in str(e.value)


def test_bad_images(pipe):
    with pytest.raises(LatentcompError, match="expects 32x32"):
        pipe.compose([torch.zeros(1, 3, 16, 16)])
    with pytest.raises(LatentcompError, match="NaN or Inf"):
        pipe.inpaint(torch.full((1, 3, RES, RES), float("inf")), _half())
    with pytest.raises(LatentcompError, match="3"):
        pipe.compose([torch.zeros(1, 1, RES, RES)])
    with pytest.raises(LatentcompError, match="n must be at least 1"):
        pipe.inpaint(pipe.sample(1), _half(), n=0)


def test_inpaint_multimodal(pipe):
    x = pipe.sample(2, seed=4)
    res = pipe.inpaint(x, _half(), n=3, seed=0)
    assert res.images.shape == (2, 3, 3, RES, RES) and res.latents.shape == (2, 3, 64)
    assert res.known_error.shape == (2, 3) and res.diversity.shape == (2,)
    assert torch.isfinite(res.diversity).all() and (res.diversity >= 0).all()
    # completion 0 is the plain regressor output
    assert torch.allclose(res.images[:, 0], pipe.reconstruct(x, _half()).cpu(), atol=1e-6)
    # the others differ in their latents
    assert not torch.allclose(res.latents[:, 1], res.latents[:, 0])
    one = pipe.inpaint(x, _half(), n=1)
    assert torch.isnan(one.diversity).all() and one.image.shape == (2, 3, RES, RES)
    pasted = pipe.inpaint(x, _half(), n=2, paste=True)
    assert torch.equal(
        pasted.images[:, :, :, :, : RES // 2], x[:, None, :, :, : RES // 2].expand(2, 2, 3, RES, RES // 2)
    )


def test_inpaint_style_method(pipe, pipe_wplus):
    x = pipe_wplus.sample(1, seed=5)
    res = pipe_wplus.inpaint(x, _half(), n=3, method="style", seed=1)
    assert res.images.shape == (1, 3, 3, RES, RES) and res.method == "style"
    with pytest.raises(LatentcompError, match="w\\+"):
        pipe.inpaint(pipe.sample(1), _half(), n=2, method="style")
    with pytest.raises(LatentcompError, match="unknown completion method"):
        pipe.inpaint(pipe.sample(1), _half(), n=2, method="magic")


def test_determinism(pipe_wplus):
    p = pipe_wplus
    assert torch.equal(p.sample(3, seed=7), p.sample(3, seed=7))
    assert not torch.equal(p.sample(3, seed=7), p.sample(3, seed=8))
    x = p.sample(2, seed=1)
    r1 = p.compose([x, p.sample(2, seed=2)], [_half(), _half(left=False)], refine=2)
    r2 = p.compose([x, p.sample(2, seed=2)], [_half(), _half(left=False)], refine=2)
    assert torch.equal(r1.image, r2.image)
    i1, i2 = p.inpaint(x, _half(), n=3, seed=3), p.inpaint(x, _half(), n=3, seed=3)
    assert torch.equal(i1.images, i2.images)
    assert not torch.equal(i1.images[:, 1:], p.inpaint(x, _half(), n=3, seed=4).images[:, 1:])


def test_edit_by_example(pipe):
    tgt, ex = pipe.sample(1, seed=1), pipe.sample(1, seed=2)
    region = _half(left=False)
    res = pipe.edit(tgt, ex, region, paste=True)
    assert res.image.shape == (1, 3, RES, RES) and res.mask.eq(1).all()
    assert torch.equal(res.collage[..., RES // 2 :], ex[..., RES // 2 :])
    assert torch.equal(res.image[..., : RES // 2], tgt[..., : RES // 2])  # outside the region, kept
    with pytest.raises(LatentcompError, match="region"):
        pipe.edit(tgt, ex, torch.zeros(1, 1, RES, RES))


def test_refine_optimise_finetune(pipe):
    target = pipe.sample(2, seed=11)
    m = _half()
    base = masked_l1(pipe.reconstruct(target, m), target, m)
    ref = pipe.refine(target, m, steps=8, lr=0.05)
    assert ref.known_l1.shape == (2,) and float(ref.known_l1.mean()) < float(base.mean())
    opt = pipe.optimize(target, m, steps=6, track=True)
    assert opt.history.shape == (7, 2) and opt.latent.shape == (2, 64)
    lb = pipe.refine(target, m, steps=3, method="lbfgs")
    assert torch.isfinite(lb.known_l1).all()
    with pytest.raises(LatentcompError, match="optimiser"):
        pipe.refine(target, m, steps=1, method="sgd")
    before = {k: v.clone() for k, v in pipe.regressor.state_dict().items()}
    tuned = pipe.finetune(target[:1], m, steps=2)
    assert tuned is not pipe and tuned.generator is pipe.generator
    assert all(torch.equal(v, pipe.regressor.state_dict()[k]) for k, v in before.items())
    changed = any(not torch.equal(v, tuned.regressor.state_dict()[k]) for k, v in before.items())
    assert changed
    again = pipe.finetune(target[:1], m, steps=2)
    assert torch.equal(tuned.compose([target[:1]], [m]).image, again.compose([target[:1]], [m]).image)
    res = pipe.compose([target[:1]], [m], finetune=1, refine=1)
    assert res.image.shape == (1, 3, RES, RES)


def test_compile_matches_eager(make_pipe):
    """Pipeline.compile: same outputs as eager for E + G and for refinement (a grad-mode graph), and a
    fine-tuned copy of a compiled E runs its own tuned weights, not the original's."""
    eager, compiled = make_pipe(seed=3), make_pipe(seed=3).compile()
    assert compiled.compiled and not eager.compiled
    x, m = eager.sample(4, seed=5), _half(4)
    a, b = eager.compose([x], [m]), compiled.compose([x], [m])
    assert torch.allclose(a.image, b.image, atol=1e-4) and not torch.equal(a.image, eager.sample(4, seed=6))
    ra, rb = eager.refine(x, m, steps=3, lr=0.05), compiled.refine(x, m, steps=3, lr=0.05)
    assert torch.allclose(ra.latent, rb.latent, atol=1e-4)
    G, E = compiled.generator, compiled.regressor
    tuned = finetune_regressor(G, E, x[:1], m[:1], steps=2, perceptual_weight=0)
    with torch.no_grad():
        own = tuned(x[:1] * m[:1], m[:1])
        original = compiled.regressor(x[:1] * m[:1], m[:1])
    assert not torch.allclose(own, original, atol=1e-6)


def test_compile_freezes_only_the_no_grad_graphs(make_pipe):
    """compile(freeze=True) sends the graphs run without grad (E's pass, G's) through inductor's freezing,
    and not those that need grad (refinement); freeze=False never does. Outputs stay those of eager."""
    from torch._inductor import freezing

    torch._dynamo.reset()  # fresh graph caches: earlier tests' compiles count towards the recompile limit
    eager = make_pipe(seed=3)
    x, m = eager.sample(2, seed=5), _half(2)
    assert not make_pipe(seed=3).compile().frozen  # opt-in
    for freeze in (True, False):
        pipe = make_pipe(seed=3).compile(freeze=freeze)
        assert pipe.frozen == freeze
        with mock.patch.object(freezing, "freeze", wraps=freezing.freeze) as spy:
            out = pipe.reconstruct(x, m)
            frozen_graphs = spy.call_count
            pipe.refine(x, m, steps=2, lr=0.05)
        assert torch.allclose(out, eager.reconstruct(x, m), atol=1e-4)
        assert (frozen_graphs > 0) == freeze
        assert spy.call_count == frozen_graphs


def test_regressor_bf16_runs_only_e_in_bf16(make_pipe):
    fp32, bf16 = make_pipe(seed=3), make_pipe(seed=3).set_regressor_precision("bf16")
    x, m = fp32.sample(4, seed=5), _half(4)
    a, b = fp32.invert(x, m), bf16.invert(x, m)
    assert b.dtype == torch.float32 and not torch.equal(a, b)  # bf16 really ran ...
    assert (a - b).abs().max() <= 0.05 * a.abs().max()  # ... and lands near the fp32 latent
    assert torch.equal(fp32.generate(b), bf16.generate(b))  # G stays fp32
    # every path that regresses uses it: compose, inpaint, refinement's start, fine-tuned copies
    assert torch.allclose(bf16.compose([x], [m]).latent, b, atol=1e-6)
    assert torch.allclose(bf16.inpaint(x, m, n=2, seed=1).latents[:, 0], b, atol=1e-6)
    assert torch.allclose(bf16.refine(x, m, steps=0).latent, b, atol=1e-6)
    assert bf16.finetune(x[:1], m[:1], steps=1).regressor_precision == "bf16"
    # the optimisation objective's latent term runs E in bf16 too; without that term both runs are equal
    def opt(p, **w):
        return p.optimize(x, m, steps=2, **w).latent

    assert not torch.equal(opt(fp32), opt(bf16))
    assert torch.equal(opt(fp32, latent_weight=0.0), opt(bf16, latent_weight=0.0))
    with pytest.raises(LatentcompError, match="accepted: fp32, bf16, int8"):
        bf16.set_regressor_precision("fp16")
    assert bf16.regressor_precision == "bf16"


def test_regressor_int8_serves_the_calls_without_grad(make_pipe):
    fp32, q = make_pipe(seed=3), make_pipe(seed=3).set_regressor_precision("int8", calibration=32)
    x, m = fp32.sample(4, seed=5), _half(4)
    a, b = fp32.invert(x, m), q.invert(x, m)
    assert b.dtype == torch.float32 and not torch.equal(a, b)  # the int8 copy ran ...
    assert torch.equal(b, q.int8_regressor(x * m, m))
    assert (a - b).abs().mean() <= 0.05 * a.abs().mean()  # ... near the fp32 latent
    # every path that regresses uses it: compose, inpaint, refinement's start
    assert torch.allclose(q.compose([x], [m]).latent, b, atol=1e-6)
    assert torch.allclose(q.inpaint(x, m, n=2, seed=1).latents[:, 0], b, atol=1e-6)
    assert torch.allclose(q.refine(x, m, steps=0).latent, b, atol=1e-6)
    # under grad (the objective's latent term) it is the fp32 E: int8 kernels have no backward
    with torch.enable_grad():
        assert torch.equal(q.run_regressor(x * m, m), fp32.run_regressor(x * m, m))
    assert q.refine(x, m, steps=2).latent.isfinite().all()
    tuned = q.finetune(x[:1], m[:1], steps=1)
    assert tuned.regressor_precision == "int8" and tuned.int8_regressor is not q.int8_regressor
    assert torch.equal(q.set_regressor_precision("fp32").invert(x, m), a) and q.int8_regressor is None
    q.device = torch.device("cuda")  # as if the pipeline lived on a GPU
    with pytest.raises(LatentcompError, match="int8 runs on the CPU only"):
        q.set_regressor_precision("int8")
    assert q.regressor_precision == "fp32"


def test_from_pretrained_file_and_folder(tmp_path):
    G = load_generator("builtin:tiny-random")
    torch.manual_seed(0)
    E = build_regressor(G)
    save_regressor(E, tmp_path / "reg")
    p1 = Pipeline.from_pretrained(str(tmp_path / "reg.safetensors"))
    run = tmp_path / "run"
    run.mkdir()
    save_regressor(E, run / "best")
    p2 = Pipeline.from_pretrained(str(run))
    x = p1.sample(1)
    assert torch.equal(p1.compose([x]).image, p2.compose([x]).image)
    with pytest.raises(LatentcompError, match="not found"):
        Pipeline.from_pretrained(str(tmp_path / "missing"))


def test_bundled_missing_is_a_plain_error(tmp_path, monkeypatch):
    from latentcomp.regressors import io as regressor_io

    pipe = Pipeline.from_pretrained("toyfaces")  # installed: loads the bundled DCGAN pipeline
    assert pipe.resolution == 64 and pipe.regressor.space == "z"
    monkeypatch.setattr(regressor_io, "WEIGHTS_DIR", tmp_path)  # a copy without the bundled weights
    with pytest.raises(LatentcompError, match="toyfaces") as e:
        Pipeline.from_pretrained("toyfaces")
    assert "not installed" in str(e.value) and "\n" not in str(e.value)


def test_mismatched_models_refused():
    G = load_generator("builtin:tiny-random")
    G2 = load_generator("builtin:tiny-random-stylegan2")
    with pytest.raises(LatentcompError, match="space"):
        Pipeline(G, build_regressor(G2))


@settings(max_examples=10, deadline=None)
@given(
    n=st.integers(1, 3),
    parts=st.integers(1, 3),
    seed=st.integers(0, 2**16),
    keep=st.floats(0.05, 1.0),
)
def test_property_compose_inpaint(pipe, n, parts, seed, keep):
    g = torch.Generator().manual_seed(seed)
    images = [torch.rand(n, 3, RES, RES, generator=g) * 2 - 1 for _ in range(parts)]
    masks = [(torch.rand(n, 1, RES, RES, generator=g) < keep).float() for _ in range(parts)]
    for m in masks:
        m[:, :, 0, 0] = 1  # never empty
    res = pipe.compose(images, masks, paste=True)
    assert res.image.shape == (n, 3, RES, RES) and torch.isfinite(res.image).all()
    assert res.image.abs().max() <= 1 and torch.isfinite(res.known_error).all()
    known = res.mask.bool().expand_as(res.image)
    assert torch.equal(res.image[known], res.collage[known])
    out = pipe.inpaint(images[0], masks[0], n=2, seed=seed, paste=True)
    assert out.images.shape == (n, 2, 3, RES, RES) and torch.isfinite(out.images).all()
    k = masks[0].bool().unsqueeze(1).expand_as(out.images)
    assert torch.equal(out.images[k], images[0].unsqueeze(1).expand_as(out.images)[k])
