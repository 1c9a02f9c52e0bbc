"""`latentcomp regressor train` under `torchrun --nproc-per-node 2` (gloo, CPU) vs one process.

Both runs see the same data: step k's global batch is drawn from a generator seeded by (seed, k) and
each rank takes its slice. BatchNorm statistics are synchronised across ranks (DistBatchNorm2d), so the
DDP run with 2 x 4 images follows the single-process run with 8 images up to float summation order.
"""

import json
import os
import subprocess
import sys

import torch
from safetensors.torch import load_file

from latentcomp.training.regressor import TrainConfig, train_regressor

COMMON = dict(generator="builtin:tiny-random-stylegan2", steps=3, lr=1e-3, lpips="none", eval_every=3,
              test_size=8, unmasked_fraction=0.25, seed=5)  # fmt: skip


def flat(state):
    return torch.cat([v.flatten().float() for k, v in sorted(state.items()) if "running" not in k
                      and "num_batches" not in k])  # fmt: skip


def test_two_process_ddp_matches_one_process(tmp_path):
    ddp = tmp_path / "ddp"
    args = [f"--{k.replace('_', '-')}={v}" for k, v in COMMON.items()]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "latentcomp.cli", "regressor", "train", "--out", str(ddp), "--batch", "4", "--device", "cpu",
           "--no-tensorboard", *args]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "LATENTCOMP_TEST": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]

    metrics = json.loads((ddp / "metrics.json").read_text())
    assert metrics["global_batch"] == 8 and metrics["ddp"]["world_size"] == 2
    assert metrics["ddp"]["max_param_abs_diff_across_ranks"] == 0.0  # ranks hold identical parameters
    assert sorted(p.name for p in ddp.iterdir()) == [
        "best.safetensors", "config.json", "last.safetensors", "metrics.json", "state.pt",
    ]  # fmt: skip

    def single(name, batch):
        cfg = TrainConfig(out=str(tmp_path / name), batch=batch, device="cpu", tensorboard=False,
                          progress=False, **COMMON)  # fmt: skip
        train_regressor(cfg)
        return load_file(tmp_path / name / "last.safetensors")

    one = single("one", 8)  # same global batch
    half = single("half", 4)  # rank 0's data only: what an unsynchronised run would approximate
    torch.manual_seed(COMMON["seed"])
    from latentcomp.generators import load_generator
    from latentcomp.regressors import build_regressor

    init = flat(build_regressor(load_generator(COMMON["generator"])).state_dict())
    got = flat(load_file(ddp / "last.safetensors"))
    moved = (flat(one) - init).norm()
    rel = ((got - flat(one)).norm() / moved).item()
    rel_half = ((flat(half) - flat(one)).norm() / moved).item()
    assert rel < 1e-3, rel
    assert rel_half > 100 * rel  # the comparison is sensitive to which data each step saw
    # BatchNorm running statistics agree as well
    for k, v in one.items():
        if "running" in k:
            assert torch.allclose(load_file(ddp / "last.safetensors")[k], v, rtol=1e-3, atol=1e-4), k
