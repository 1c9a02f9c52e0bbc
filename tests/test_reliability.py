"""Faults: `kill -9` a training run between checkpoints, then `--resume`.

For `latentcomp regressor train` and `latentcomp gan train` (tiny configs, real subprocesses):
- the run is killed with SIGKILL once its first checkpoint exists (during a checkpoint write when the
  poller catches one), and every checkpoint file with its final name loads at every moment: a watcher
  thread keeps loading them while the process runs (temporary `.tmp` files may exist, never half-written
  files under the final names);
- `--resume` continues from the last checkpoint to the same final step, and the result is bit-identical
  to an uninterrupted run of the same configuration (in-process, one thread like the subprocesses).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
CLI = [sys.executable, "-m", "latentcomp.cli"]
CHECKED_SUFFIXES = (".pt", ".safetensors")
START_TIMEOUT = 240  # s; a busy machine can take long to import torch
MID_WRITE_WINDOW = 0.3  # s after the first checkpoint to wait for a write in progress before killing


def is_final(p: Path) -> bool:
    return not p.name.startswith(".") and not p.name.endswith(".tmp")


def load_any(p: Path) -> None:
    """Load a checkpoint-type file fully; raises if it is not a complete file."""
    if p.suffix == ".pt":
        torch.load(p, map_location="cpu", weights_only=True)
    elif p.suffix == ".safetensors":
        load_file(p)
        side = p.with_suffix(".json")
        if side.name in ("generator.json",) and side.exists():
            json.loads(side.read_text())
    elif p.suffix == ".json":
        json.loads(p.read_text())


class Watcher(threading.Thread):
    """Loads every final-named checkpoint file in `folder` each time it changes (inode, size or mtime),
    until stopped; records failures. Loading only changed files keeps it light on a 2-core machine."""

    def __init__(self, folder: Path, suffixes=CHECKED_SUFFIXES + (".json",), skip=()):
        super().__init__(daemon=True)
        self.folder, self.suffixes, self.skip = folder, suffixes, set(skip)
        self.stop = threading.Event()
        self.loads = 0
        self.failures: list[str] = []
        self._seen: dict[str, tuple] = {}

    def run(self) -> None:
        while not self.stop.is_set():
            if self.folder.is_dir():
                for p in list(self.folder.iterdir()):
                    if p.suffix not in self.suffixes or not is_final(p) or p.name in self.skip:
                        continue
                    try:
                        st = p.stat()
                        key = (st.st_ino, st.st_size, st.st_mtime_ns)
                        if self._seen.get(p.name) == key:
                            continue
                        load_any(p)
                        self._seen[p.name] = key
                        self.loads += 1
                    except FileNotFoundError:
                        pass  # replaced between listing and opening
                    except Exception as e:  # noqa: BLE001 - any failure to load is the bug we look for
                        if p.exists():
                            self.failures.append(f"{p.name}: {type(e).__name__}: {str(e)[:120]}")
            time.sleep(0.002)


def start(args: list[str]) -> subprocess.Popen:
    return subprocess.Popen(CLI + args, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def kill_after_first_checkpoint(proc: subprocess.Popen, run: Path, first: str) -> bool:
    """SIGKILL `proc` once `run/first` exists, preferably while a temp file is being written.
    Returns True when the kill landed while a .tmp file existed (mid-write)."""
    deadline = time.monotonic() + START_TIMEOUT
    while not (run / first).exists():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"training ended before its first checkpoint (exit {proc.returncode}): {err[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"no {first} after {START_TIMEOUT} s")
        time.sleep(0.002)
    mid_write = False
    until = time.monotonic() + MID_WRITE_WINDOW
    while time.monotonic() < until and proc.poll() is None:
        if any(p.name.endswith(".tmp") for p in run.iterdir()):
            mid_write = True
            break
        time.sleep(0.0005)
    if proc.poll() is not None:
        pytest.fail("training finished before it could be killed; make the run longer")
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    return mid_write


def check_all_final_files_load(run: Path) -> list[str]:
    names = []
    for p in sorted(run.iterdir()):
        if p.is_file() and is_final(p) and p.suffix in CHECKED_SUFFIXES + (".json",):
            load_any(p)  # raises on a half-written file
            names.append(p.name)
    return names


def finish(proc: subprocess.Popen, timeout: float = 600) -> str:
    out, err = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, err[-3000:]
    return out


# ---------------------------------------------------------------------------------- regressor training
REG_STEPS, REG_EVAL = 64, 8


def reg_args(run: Path) -> list[str]:
    return [
        "regressor",
        "train",
        "--generator",
        "builtin:tiny-random",
        "--out",
        str(run),
        "--steps",
        str(REG_STEPS),
        "--batch",
        "4",
        "--lpips",
        "none",
        "--eval-every",
        str(REG_EVAL),
        "--test-size",
        "4",
        "--seed",
        "1",
        "--device",
        "cpu",
        "--threads",
        "1",
        "--no-tensorboard",
    ]


def test_regressor_training_survives_kill_9(tmp_path):
    from latentcomp.training.checkpoint import load_state
    from latentcomp.training.regressor import TrainConfig, train_regressor

    run = tmp_path / "run"
    watcher = Watcher(run)
    watcher.start()
    try:
        proc = start(reg_args(run))
        kill_after_first_checkpoint(proc, run, "state.pt")
        names = check_all_final_files_load(run)
        assert {"state.pt", "last.safetensors", "config.json"} <= set(names)  # metrics.json follows
        killed_at = int(load_state(run / "state.pt")["step"])
        assert killed_at % REG_EVAL == 0 and 0 < killed_at < REG_STEPS
        # resume needs only the folder (and the total); it goes on from the checkpoint to the end
        proc = start(
            [
                "regressor",
                "train",
                "--out",
                str(run),
                "--resume",
                "--steps",
                str(REG_STEPS),
                "--threads",
                "1",
                "--no-tensorboard",
            ]
        )
        finish(proc)
    finally:
        watcher.stop.set()
        watcher.join()
    assert not watcher.failures, watcher.failures
    assert watcher.loads > 0
    check_all_final_files_load(run)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["step"] == REG_STEPS
    steps_logged = [h["step"] for h in metrics["history"]]
    assert steps_logged == list(range(REG_EVAL, REG_STEPS + 1, REG_EVAL))  # no gap, no repeat at the kill
    # the same weights as one uninterrupted run of the configuration the CLI recorded
    ref = tmp_path / "ref"
    saved = json.loads((run / "config.json").read_text())["train"]
    cfg = TrainConfig.from_dict(
        {**saved, "out": str(ref), "resume": False, "tensorboard": False, "progress": False}
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        train_regressor(cfg)
    finally:
        torch.set_num_threads(threads)
    a, b = load_file(ref / "last.safetensors"), load_file(run / "last.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


# ---------------------------------------------------------------------------------------- GAN training
GAN_STEPS, GAN_EVERY = 60, 5
GAN_ARGS = [
    "--arch",
    "dcgan",
    "--resolution",
    "32",
    "--pool-size",
    "32",
    "--width",
    "4",
    "--z-dim",
    "16",
    "--batch",
    "4",
    "--checkpoint-every",
    str(GAN_EVERY),
    "--threads",
    "1",
]


def test_gan_training_survives_kill_9(tmp_path):
    from latentcomp.training.gan import GANConfig, GANTrainer

    run = tmp_path / "gan"
    # config.json is written once at the start (and again on resume), not as a checkpoint: checked after
    watcher = Watcher(run, skip=("config.json",))
    watcher.start()
    try:
        proc = start(["gan", "train", *GAN_ARGS, "--steps", str(GAN_STEPS), "--out", str(run)])
        kill_after_first_checkpoint(proc, run, "checkpoint.pt")
        names = check_all_final_files_load(run)
        assert {"checkpoint.pt", "config.json"} <= set(names)  # generator.safetensors follows it
        killed_at = int(torch.load(run / "checkpoint.pt", weights_only=True)["step"])
        assert killed_at % GAN_EVERY == 0 and 0 < killed_at < GAN_STEPS
        proc = start(["gan", "train", *GAN_ARGS, "--steps", str(GAN_STEPS), "--out", str(run), "--resume"])
        finish(proc)
    finally:
        watcher.stop.set()
        watcher.join()
    assert not watcher.failures, watcher.failures
    assert watcher.loads > 0
    check_all_final_files_load(run)
    state = torch.load(run / "checkpoint.pt", weights_only=True)
    assert int(state["step"]) == GAN_STEPS
    # bit-identical to an uninterrupted run of the configuration the CLI recorded
    cfg = GANConfig(**json.loads((run / "config.json").read_text()))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ref = GANTrainer(cfg, tmp_path / "ref")
        ref.train(progress=False, log_dir=False)
    finally:
        torch.set_num_threads(threads)
    for name, p in ref.G_ema.state_dict().items():
        assert torch.equal(p, state["G_ema"][name]), name
    for name, p in ref.D.state_dict().items():
        assert torch.equal(p, state["D"][name]), name
