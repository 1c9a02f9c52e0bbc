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
