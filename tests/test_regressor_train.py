import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from latentcomp.cli import main
from latentcomp.errors import LatentcompError
from latentcomp.regressors import load_regressor
from latentcomp.training.checkpoint import load_state
from latentcomp.training.regressor import RegressorTrainer, TrainConfig, train_regressor


def cfg(out, **kw):
    base = dict(generator="builtin:tiny-random", out=str(out), steps=4, batch=4, lr=1e-3, lpips="none",
                eval_every=2, test_size=8, tensorboard=False, progress=False, device="cpu")  # fmt: skip
    base.update(kw)
    return TrainConfig(**base)


def test_a_few_steps_reduce_the_test_loss(tmp_path):
    # builtin:tiny-random's images barely depend on z (std across samples ~0.003), so there is nothing
    # to regress; its StyleGAN2 sibling varies like a real generator. The w+ head: MSE to w per layer.
    run = cfg(tmp_path / "run", generator="builtin:tiny-random-stylegan2", steps=20, eval_every=10, batch=8,
              test_size=16, tensorboard=True)  # fmt: skip
    tr = RegressorTrainer(run)
    before, _ = tr.evaluate()
    result = tr.run()
    tr.close()
    after = result.last_test
    assert after["loss"] < 0.85 * before["loss"], (before, after)
    assert after["mse"] < before["mse"] and after["latent"] < before["latent"]
    assert result.best_test_loss == min(h["loss"] for h in result.history)
    files = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"config.json", "best.safetensors", "last.safetensors", "state.pt", "metrics.json", "tb"} <= files
    assert list((tmp_path / "run" / "tb").glob("events.out.tfevents.*"))
    assert not list((tmp_path / "run").glob(".*.tmp"))  # no temporary files left behind
    reg = load_regressor(tmp_path / "run")  # the run folder is a model
    assert reg.generator_spec == "builtin:tiny-random-stylegan2" and reg.space == "w+"
    G = reg.load_generator()
    with torch.no_grad():
        assert G(reg(torch.zeros(2, 3, 32, 32)), space="w+").shape == (2, 3, 32, 32)


def test_resume_equals_an_uninterrupted_run(tmp_path):
    full = train_regressor(cfg(tmp_path / "full", steps=6, eval_every=3, unmasked_fraction=0.25))
    train_regressor(cfg(tmp_path / "cut", steps=3, eval_every=3, unmasked_fraction=0.25))
    resumed = train_regressor(
        cfg(tmp_path / "cut", steps=6, eval_every=3, unmasked_fraction=0.25, resume=True)
    )
    assert resumed.step == full.step == 6
    a, b = load_file(tmp_path / "full" / "last.safetensors"), load_file(tmp_path / "cut" / "last.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k  # bit-exact
    sa, sb = load_state(tmp_path / "full" / "state.pt"), load_state(tmp_path / "cut" / "state.pt")
    for i, st in sa["optimizer"]["state"].items():
        assert torch.equal(st["exp_avg_sq"], sb["optimizer"]["state"][i]["exp_avg_sq"])
    assert json.loads(sa["history_json"])[-1]["loss"] == json.loads(sb["history_json"])[-1]["loss"]
    assert resumed.best_test_loss == full.best_test_loss


def test_resume_guards(tmp_path):
    train_regressor(cfg(tmp_path / "run", steps=2))
    with pytest.raises(LatentcompError, match="already holds a training run.*resume"):
        train_regressor(cfg(tmp_path / "run", steps=4))
    with pytest.raises(LatentcompError, match=r"batch 8 \(run has 4\)"):
        train_regressor(cfg(tmp_path / "run", steps=4, batch=8, resume=True))
    done = train_regressor(cfg(tmp_path / "run", steps=2, resume=True))  # nothing left to do
    assert done.step == 2


@pytest.mark.parametrize("space", ["z", "w"])
def test_z_and_w_heads_on_a_stylegan2(tmp_path, space):
    result = train_regressor(cfg(tmp_path / "run", generator="builtin:tiny-random-stylegan2", steps=2,
                                 space=space))  # fmt: skip
    reg = load_regressor(tmp_path / "run")
    G = reg.load_generator()
    assert reg.space == space
    assert reg.out_shape == (G.latent_shape if space == "z" else (G.w_dim,))
    assert np.isfinite(result.best_test_loss)
    with torch.no_grad():
        assert G(reg(torch.zeros(1, 3, 32, 32)), space=space).shape == (1, 3, 32, 32)


def test_real_images_and_part_masks_plumbing(tmp_path, monkeypatch):
    real = tmp_path / "real"
    real.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)).save(real / f"{i}.png")

    class FakeAnalyzer:
        def predict(self, x):
            pm = torch.zeros(x.shape[0], *x.shape[-2:], dtype=torch.long)
            pm[:, :16], pm[:, 16:, :16] = 1, 2
            return SimpleNamespace(partmap=pm)

    monkeypatch.setattr(RegressorTrainer, "_load_analyzer", staticmethod(lambda spec, device: FakeAnalyzer()))
    run = cfg(tmp_path / "run", real=str(real), real_fraction=0.5, mask_kind="parts", batch=8)
    tr = RegressorTrainer(run)
    from latentcomp.training.regressor import step_generator

    x, m, target, weight, _ = tr.make_batch(step_generator(0, 0), 8, slice(0, 8))
    assert 0 < (weight == 0).sum() < 8  # real rows: no latent loss
    assert x.abs().max() <= 1.0 and x.shape == (8, 3, 32, 32)
    assert set(m.unique().tolist()) <= {0.0, 1.0}
    assert (m[:, 0, :16] == m[:, :1, :1, 0]).all()  # part 1 (the top half) is known or hidden as a whole
    tr.train_step()
    tr.close()


def test_cli_train_info_and_resume(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["regressor", "train", "--generator", "builtin:tiny-random", "--out", str(out), "--steps", "2",
            "--batch", "4", "--lpips", "none", "--eval-every", "2", "--test-size", "4", "--no-tensorboard",
            "--device", "cpu", "--seed", "3"]  # fmt: skip
    with pytest.raises(SystemExit) as e:
        main(args)
    assert e.value.code in (0, None)
    assert "best test loss" in capsys.readouterr().out
    # resume needs only the run folder and the new total
    with pytest.raises(SystemExit) as e:
        main(["regressor", "train", "--out", str(out), "--resume", "--steps", "3", "--no-tensorboard"])
    assert e.value.code in (0, None)
    assert json.loads((out / "metrics.json").read_text())["step"] == 3
    with pytest.raises(SystemExit) as e:
        main(["regressor", "info", str(out)])
    assert '"generator_spec": "builtin:tiny-random"' in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        main(["regressor", "export", str(out), str(tmp_path / "exported"), "--half"])
    assert load_regressor(tmp_path / "exported.safetensors").config == load_regressor(out).config
    # the exported record names the step of the weights it holds (best: the lowest test loss; last: the end)
    history = json.loads((out / "metrics.json").read_text())["history"]
    best = min(history, key=lambda e: e["loss"])
    exported = json.loads((tmp_path / "exported.json").read_text())
    assert (exported["step"], exported["best_test_loss"]) == (best["step"], best["loss"])
    with pytest.raises(SystemExit) as e:
        main(["regressor", "export", str(out / "last.safetensors"), str(tmp_path / "last")])
    last = json.loads((tmp_path / "last.json").read_text())
    assert (last["step"], last["test_loss"]) == (3, history[-1]["loss"]) and history[-1]["step"] == 3


def test_missing_lpips_weights_stop_with_a_clear_message(tmp_path, capsys, monkeypatch):
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", lambda *a, **k: pytest.fail("downloads"))
    try:
        with pytest.raises(SystemExit) as e:
            main(["regressor", "train", "--generator", "builtin:tiny-random", "--out", str(tmp_path / "run"),
                  "--steps", "1", "--lpips", "alex"])  # fmt: skip
    finally:
        torch.hub.set_dir(old)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: LPIPS-alex needs torchvision's ImageNet weights")
    assert str(tmp_path / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth") in err
    assert "--lpips none" in err and "--lpips-weights" in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()  # stopped before writing anything


def test_time_limit_stops_with_a_checkpoint(tmp_path, capsys):
    res = train_regressor(cfg(tmp_path / "run", steps=50, eval_every=50, max_minutes=1e-9))
    assert res.step == 1 and (tmp_path / "run" / "best.safetensors").is_file()
    assert "max_minutes 1e-09 reached" in capsys.readouterr().err
    res = train_regressor(cfg(tmp_path / "run", steps=3, eval_every=50, resume=True))
    assert res.step == 3


def test_init_warm_starts_from_another_regressor(tmp_path):
    donor = train_regressor(cfg(tmp_path / "donor", generator="builtin:tiny-random-stylegan2", steps=20,
                                eval_every=10, batch=8, test_size=16))  # fmt: skip
    # a fresh run starting from the donor begins at the donor's test loss, not at a random init's
    warm = RegressorTrainer(cfg(tmp_path / "warm", generator="builtin:tiny-random-stylegan2", steps=0,
                                test_size=16, init=str(tmp_path / "donor")))  # fmt: skip
    cold = RegressorTrainer(cfg(tmp_path / "cold", generator="builtin:tiny-random-stylegan2", steps=0,
                                test_size=16))  # fmt: skip
    donor_weights = load_regressor(tmp_path / "donor").state_dict()
    assert all(torch.equal(v, donor_weights[k]) for k, v in warm.E.state_dict().items())
    assert warm.evaluate()[0]["loss"] < 0.85 * cold.evaluate()[0]["loss"]
    assert donor.step == 20
    # a regressor of another layout is refused with both layouts named
    with pytest.raises(LatentcompError, match="init .* does not match"):
        RegressorTrainer(cfg(tmp_path / "bad", init=str(tmp_path / "donor")))
