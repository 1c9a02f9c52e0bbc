import pytest
import torch

import latentcomp as lc
from latentcomp.errors import LatentcompError
from latentcomp.io import _UMASK
from latentcomp.training.gan import GANConfig, GANTrainer


def tiny(arch, steps):
    return GANConfig(
        arch=arch,
        resolution=32,
        steps=steps,
        batch=4,
        pool_size=32,
        z_dim=16,
        width=4,
        checkpoint_every=2,
        sample_every=1000,
    )


@pytest.mark.parametrize("arch,kind", [("dcgan", "dcgan"), ("stylegan2", "stylegan2")])
def test_tiny_run_writes_resumes_and_reloads(tmp_path, arch, kind):
    straight = GANTrainer(tiny(arch, 4), tmp_path / "a")
    straight.train(progress=False, log_dir=False)
    first = GANTrainer(tiny(arch, 2), tmp_path / "b")
    first.train(progress=False, log_dir=False)
    resumed = GANTrainer(tiny(arch, 4), tmp_path / "b", resume=True)
    assert resumed.step == 2
    resumed.train(progress=False, log_dir=False)
    # resuming continues the exact run: same weights as the uninterrupted one
    for (name, p), q in zip(straight.G.state_dict().items(), resumed.G.state_dict().values(), strict=True):
        assert torch.equal(p, q), name
    assert not list((tmp_path / "b").glob("*.tmp"))
    G = lc.load_generator(f"{kind}:{tmp_path / 'b' / 'generator.safetensors'}")
    assert G.resolution == 32 and G.latent_shape == (16,)
    x = G(G.sample_latent(3, torch.Generator().manual_seed(0)))
    assert x.shape == (3, 3, 32, 32) and torch.isfinite(x).all()


def test_refuses_to_overwrite_and_needs_checkpoint_to_resume(tmp_path):
    GANTrainer(tiny("dcgan", 2), tmp_path / "run").train(progress=False, log_dir=False)
    with pytest.raises(LatentcompError, match="--resume"):
        GANTrainer(tiny("dcgan", 2), tmp_path / "run")
    with pytest.raises(LatentcompError, match="no checkpoint"):
        GANTrainer(tiny("dcgan", 2), tmp_path / "empty", resume=True)


def test_unknown_arch(tmp_path):
    with pytest.raises(LatentcompError, match="--arch"):
        GANTrainer(GANConfig(arch="vae", resolution=32, pool_size=8), tmp_path / "x")


def test_resume_from_a_damaged_checkpoint_is_a_clear_error(tmp_path):
    GANTrainer(tiny("dcgan", 2), tmp_path / "run").train(progress=False, log_dir=False)
    ckpt, config = tmp_path / "run" / "checkpoint.pt", tmp_path / "run" / "config.json"
    ckpt.write_bytes(ckpt.read_bytes()[:1000])  # e.g. copied while it was being written
    before = config.read_text()
    with pytest.raises(LatentcompError, match="cannot read training state .*checkpoint.pt"):
        GANTrainer(tiny("dcgan", 4), tmp_path / "run", resume=True)
    assert config.read_text() == before  # nothing was rewritten


def test_saved_files_get_the_usual_permissions(tmp_path):
    import os
    import stat

    GANTrainer(tiny("dcgan", 2), tmp_path / "run").train(progress=False, log_dir=False)
    expected = 0o666 & ~_UMASK
    for name in ("checkpoint.pt", "config.json", "generator.safetensors", "generator.json", "samples.png"):
        mode = stat.S_IMODE(os.stat(tmp_path / "run" / name).st_mode)
        assert mode == expected, (name, oct(mode))


# ------------------------------------------------------------------------------- recipe options
def test_augmentation_moves_labels_with_pixels_and_marks_invented_ones():
    from latentcomp.training.augment import IGNORE, augment

    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 3, 16, 16, generator=g) * 2 - 1
    labels = torch.randint(0, 8, (6, 16, 16), generator=g)
    # each pixel's label is encoded in its first channel, so after any geometry they must still agree
    x[:, 0] = labels.float() / 10
    out, moved = augment(x, ("translation",), labels, generator=torch.Generator().manual_seed(1))
    kept = moved != IGNORE
    assert kept.float().mean() > 0.5 and (~kept).any()  # something shifted in, most stays
    assert torch.allclose(out[:, 0][kept], moved[kept].float() / 10)
    assert (out[~kept.unsqueeze(1).expand_as(out)] == -1).all()  # padding is black
    out, cut = augment(x, ("cutout",), labels, generator=torch.Generator().manual_seed(2))
    hidden = cut == IGNORE
    assert hidden.float().mean() > 0.05 and (out.permute(0, 2, 3, 1)[hidden] == 0).all()
    assert torch.equal(out.permute(0, 2, 3, 1)[~hidden], x.permute(0, 2, 3, 1)[~hidden])
    y = x.clone().requires_grad_(True)
    out, _ = augment(y, ("color", "translation", "cutout"), generator=torch.Generator().manual_seed(3))
    out.sum().backward()
    assert y.grad is not None and y.grad.abs().sum() > 0  # differentiable: G's gradient passes


def test_unknown_augmentation_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(LatentcompError, match="accepted: color, translation, cutout"):
        GANTrainer(GANConfig(**{**tiny("dcgan", 2).__dict__, "augment": "flip"}), tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_segmenting_discriminator_learns_the_part_maps(tmp_path):
    """With seg_weight, D's per-pixel head is trained to predict the reals' part classes: after a few
    steps it beats the chance level of always guessing the most common part."""
    cfg = GANConfig(**{**tiny("dcgan", 30).__dict__, "seg_weight": 1.0, "batch": 8, "lr": 2e-3})
    trainer = GANTrainer(cfg, tmp_path / "seg")
    assert trainer.seg_classes == 9 and trainer.parts is not None
    losses = [trainer.train_step()["loss/d_seg"] for _ in range(30)]
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 * 0.8
    real, parts = trainer.real_batch()
    _, seg = trainer.D(real, segment=True)
    target = torch.nn.functional.interpolate(parts[:, None].float(), size=seg.shape[-2:])[:, 0].long()
    accuracy = (seg[:, :-1].argmax(1) == target).float().mean()
    chance = torch.bincount(target.flatten()).max() / target.numel()
    assert accuracy > chance


def test_segmentation_needs_part_maps(tmp_path):
    with pytest.raises(LatentcompError, match="only --data toyfaces"):
        cfg = GANConfig(**{**tiny("dcgan", 2).__dict__, "seg_weight": 1.0, "data": "mnist"})
        GANTrainer(cfg, tmp_path / "r")


def test_warm_start_copies_the_exported_generator(tmp_path):
    first = GANTrainer(tiny("dcgan", 2), tmp_path / "a")
    first.train(progress=False, log_dir=False)
    spec = f"dcgan:{tmp_path / 'a' / 'generator.safetensors'}"
    cfg = GANConfig(**{**tiny("dcgan", 2).__dict__, "init_generator": spec, "seed": 5})
    warm = GANTrainer(cfg, tmp_path / "b")
    exported = lc.load_generator(spec).net.state_dict()
    for name, p in warm.G.state_dict().items():
        assert torch.equal(p, exported[name]), name
    with pytest.raises(LatentcompError, match="does not match this run's generator layout"):
        cfg = GANConfig(**{**tiny("dcgan", 2).__dict__, "init_generator": spec, "width": 8})
        GANTrainer(cfg, tmp_path / "c")


def test_time_budget_stops_with_a_resumable_checkpoint(tmp_path):
    trainer = GANTrainer(tiny("dcgan", 10_000), tmp_path / "t")
    trainer.train(progress=False, log_dir=False, max_seconds=0.0)
    assert trainer.step == 1  # one step, then the budget is spent
    assert (tmp_path / "t" / "checkpoint.pt").is_file()
    assert (tmp_path / "t" / "generator.safetensors").is_file()
    assert GANTrainer(tiny("dcgan", 10_000), tmp_path / "t", resume=True).step == 1


def test_discriminator_warmup_leaves_the_generator_alone(tmp_path):
    cfg = GANConfig(**{**tiny("dcgan", 6).__dict__, "d_warmup": 3})
    trainer = GANTrainer(cfg, tmp_path / "w")
    g0 = {k: v.clone() for k, v in trainer.G.named_parameters()}  # (BatchNorm buffers move with fakes)
    d0 = {k: v.clone() for k, v in trainer.D.state_dict().items()}
    for _ in range(3):
        assert "loss/g" not in trainer.train_step()
    assert all(torch.equal(g0[k], v) for k, v in trainer.G.named_parameters())
    assert not all(torch.equal(d0[k], v) for k, v in trainer.D.state_dict().items())
    assert "loss/g" in trainer.train_step()
    assert not all(torch.equal(g0[k], v) for k, v in trainer.G.named_parameters())


def test_resume_takes_the_device_of_this_call_and_refuses_unknown_keys(tmp_path):
    import json

    GANTrainer(tiny("dcgan", 2), tmp_path / "r").train(progress=False, log_dir=False)
    cfg_file = tmp_path / "r" / "config.json"
    saved = json.loads(cfg_file.read_text())
    cfg_file.write_text(json.dumps({**saved, "device": "cuda"}))  # as if the last leg ran on a GPU
    resumed = GANTrainer(tiny("dcgan", 4), tmp_path / "r", resume=True)
    assert resumed.device.type == "cpu" and resumed.step == 2
    cfg_file.write_text(json.dumps({**saved, "colour": 1}))
    with pytest.raises(LatentcompError, match="unknown keys colour"):
        GANTrainer(tiny("dcgan", 4), tmp_path / "r", resume=True)


@pytest.mark.parametrize("arch,kind", [("dcgan", "dcgan"), ("stylegan2", "stylegan2")])
def test_bf16_run_computes_in_bf16_resumes_and_exports_a_loadable_fp32_generator(tmp_path, arch, kind):
    cfg = lambda steps: GANConfig(**{**tiny(arch, steps).__dict__, "precision": "bf16"})  # noqa: E731
    trainer = GANTrainer(cfg(2), tmp_path / "b")
    seen = set()
    conv = next(m for m in trainer.D.modules() if isinstance(m, torch.nn.Conv2d))
    conv.register_forward_hook(lambda m, i, out: seen.add(out.dtype))
    trainer.train(progress=False, log_dir=False)
    assert seen == {torch.bfloat16}
    assert all(p.dtype == torch.float32 for p in trainer.G.parameters())  # weights stay fp32 (autocast)
    resumed = GANTrainer(cfg(4), tmp_path / "b", resume=True)
    assert resumed.cfg.precision == "bf16" and resumed.step == 2
    resumed.train(progress=False, log_dir=False)
    G = lc.load_generator(f"{kind}:{tmp_path / 'b' / 'generator.safetensors'}")
    x = G(G.sample_latent(2, torch.Generator().manual_seed(0)))
    assert x.dtype == torch.float32 and torch.isfinite(x).all()


def test_unknown_precision_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(LatentcompError, match="--precision 'fp16'.*fp32 or bf16"):
        GANTrainer(GANConfig(**{**tiny("dcgan", 2).__dict__, "precision": "fp16"}), tmp_path / "p")
    assert not (tmp_path / "p").exists()
