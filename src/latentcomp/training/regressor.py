"""Self-supervised training of a latent regressor E for a frozen generator G.

Each step: z from G's own prior, x = G(z) (for w / w+ heads: w = G.mapping(z), x = G(w)), a mask m
from the sampler, latent_hat = E(x, m), x_hat = G(latent_hat), and

    loss = w_mse * MSE(x_hat, x) + w_lpips * LPIPS(x_hat, x) + w_latent * latent loss

with latent loss 1 - cos(z_hat, z) for a z head, MSE(w_hat, w) (w repeated per layer for w+) for
w / w+ heads. Adam (lr 1e-4, betas 0.5 / 0.999). Optionally real images from a folder replace a
fraction of the batch (no latent loss on those rows).

Options that change the model or the batch:
- `iterative`: an iterative regressor (see regressors/model.py), trained with its passes unrolled: the
  loss above is taken after every pass and averaged; each pass sees the previous output detached, so no
  gradient runs across passes (ReStyle's training).
- `head="pyramid"`: the feature-pyramid w+ head.
- `collage_fraction`: that share of each batch is automatic collages of 2-4 generator samples
  (training/collages.py); those rows have no latent loss and their image losses see only their known
  pixels (MSE over the known pixels; LPIPS of both images with the hidden pixels set to 0).

Reproducibility: the randomness of step k (latents, masks, real-image picks) comes from a
torch.Generator seeded by (seed, k), drawn for the whole global batch; each process takes its slice.
So a resumed run equals an uninterrupted one, and N processes with batch B see exactly the data of
one process with batch N x B. Under DDP the BatchNorm layers are synchronised across processes
(`DistBatchNorm2d`, which works with gloo on CPU as well as nccl), so the two runs match up to
floating-point summation order.

Run folder (`out`): config.json (the regressor config incl. generator spec + training options),
best.safetensors (best test loss), last.safetensors, state.pt (resumable: model, optimizer, step,
RNG states, history), metrics.json, tb/ (TensorBoard). Every file is written atomically; only rank 0
writes.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from ..devices import parse_device
from ..errors import LatentcompError, option
from ..io import write_json
from ..masks import MASK_KINDS, MaskSampler
from ..outputs import check_run_folder
from ..regressors import Regressor, build_regressor, save_regressor
from ..regressors.model import HEADS, ITER_STARTS, MAX_ITERATIONS, difference_init
from .checkpoint import capture_rng_state, load_state, restore_rng_state, save_state
from .collages import COLLAGE_KINDS, collage_rows, make_training_collages, resolve_collage_kind

STATE_FILE = "state.pt"
STATE_VERSION = 1
# what a run writes besides tb/; overwrite=True removes them first, so that no old weights stay beside a new
# config.json if the new run stops before its first checkpoint
RUN_FILES = ("config.json", "best.safetensors", "last.safetensors", STATE_FILE, "metrics.json")


@dataclass
class TrainConfig:
    """Options of `latentcomp regressor train` (same names, dashes -> underscores)."""

    generator: str = ""
    out: str = ""
    space: str = "auto"  # z | w | w+ | auto (w+ where the generator has it, else z)
    backbone: str = "auto"  # small | resnet18 | resnet34 | auto (small <= 64 px, resnet18 <= 256, resnet34)
    steps: int = 10_000
    batch: int = 16  # per process; global batch = world size x batch
    lr: float = 1e-4
    beta1: float = 0.5
    beta2: float = 0.999
    mask_kind: str = "noise"  # noise | rect | parts | none
    unmasked_fraction: float = 0.0
    real: str | None = None
    real_fraction: float = 0.0
    lpips: str = "alex"  # alex | vgg | none
    lpips_weights: str | None = None
    w_mse: float = 1.0
    w_lpips: float = 1.0
    w_latent: float = 1.0
    eval_every: int = 500
    test_size: int = 64
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    rgb_only: bool = False
    input_size: int | None = None
    part_analyzer: str = "builtin:toyfaces-analyzer"
    log_every: int = 10
    max_minutes: float = (
        0.0  # stop (with a checkpoint) after this much wall time in this invocation; 0 = none
    )
    tensorboard: bool = True
    progress: bool = True
    resume: bool = False
    init: str | None = None  # start from this regressor's weights (fine-tuning, e.g. for a newer G)
    overwrite: bool = False  # start a new run in a folder that holds files (replacing them)
    head: str = "pool"  # pool | pyramid (w+ only: feature pyramid + one map-to-style head per layer)
    pyramid_width: int | None = None  # channels of the pyramid (default 128 over small, 256 over resnets)
    iterative: bool = False  # iterative regression: a refiner sees [x*m, m, G(w_t)*m], adds a residual
    iter_start: str = "plain"  # plain (the first pass is a plain regressor) | mean (the mean latent)
    iterations: int = 3  # passes unrolled in training (and the default at inference), iterative only
    collage_fraction: float = 0.0  # share of each batch made of automatic collages of 2-4 samples
    collage_masks: str = "auto"  # auto | parts | noise: how the collages' parts are cut

    # options that may change when a run is resumed; all others must match the saved run
    RESUMABLE_CHANGES = ("out", "steps", "eval_every", "device", "log_every", "tensorboard", "progress",
                         "resume", "lpips_weights", "real", "max_minutes", "init", "overwrite")  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def validate(self) -> None:
        self._check_types()
        if not self.out:
            raise LatentcompError(f"{option('out')} is required (the run folder)")
        for name, low in (("steps", 0), ("batch", 1), ("eval_every", 1), ("test_size", 1)):
            if (v := getattr(self, name)) < low:
                raise LatentcompError(f"{option(name)} must be at least {low}; got {v}")
        if self.mask_kind not in MASK_KINDS:
            raise LatentcompError(
                f"unknown {option('mask_kind')} {self.mask_kind!r}; accepted: {', '.join(MASK_KINDS)}"
            )
        if self.lpips not in ("alex", "vgg", "none"):
            raise LatentcompError(f"unknown {option('lpips')} {self.lpips!r}; accepted: alex, vgg, none")
        if self.space not in ("auto", "z", "w", "w+"):
            raise LatentcompError(f"unknown {option('space')} {self.space!r}; accepted: z, w, w+ (or auto)")
        if self.backbone not in ("auto", "small", "resnet18", "resnet34"):
            raise LatentcompError(
                f"unknown {option('backbone')} {self.backbone!r}; accepted: small, resnet18, resnet34"
            )
        for name in ("unmasked_fraction", "real_fraction"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise LatentcompError(f"{option(name)} must be in [0, 1]; got {v}")
        if self.real_fraction > 0 and not self.real:
            raise LatentcompError(f"{option('real_fraction')} needs {option('real')} (a folder of images)")
        if self.lr <= 0:
            raise LatentcompError(f"{option('lr')} must be > 0; got {self.lr}")
        if self.head not in HEADS:
            raise LatentcompError(f"unknown {option('head')} {self.head!r}; accepted: {', '.join(HEADS)}")
        if self.iter_start not in ITER_STARTS:
            raise LatentcompError(
                f"unknown {option('iter_start')} {self.iter_start!r}; accepted: {', '.join(ITER_STARTS)}"
            )
        low = 2 if self.iter_start == "plain" else 1  # the plain pass alone would leave the refiner untrained
        if self.iterative and not low <= self.iterations <= MAX_ITERATIONS:
            raise LatentcompError(
                f"{option('iterations')} must be from {low} to {MAX_ITERATIONS} for an iterative regressor "
                f"starting from the {self.iter_start} pass; got {self.iterations}"
            )
        if not 0.0 <= self.collage_fraction <= 1.0:
            v = self.collage_fraction
            raise LatentcompError(f"{option('collage_fraction')} must be in [0, 1]; got {v}")
        if self.collage_masks not in COLLAGE_KINDS:
            raise LatentcompError(
                f"unknown {option('collage_masks')} {self.collage_masks!r}; "
                f"accepted: {', '.join(COLLAGE_KINDS)}"
            )

    def _check_types(self) -> None:
        """Every option of the type its field declares (a resumed run reads them from config.json)."""
        accepted = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,)}
        for f in dataclasses.fields(self):
            kinds = [t.strip() for t in str(f.type).split("|")]
            v = getattr(self, f.name)
            if v is None and "None" in kinds:
                continue
            if not any(
                isinstance(v, accepted[k]) and (k == "bool" or not isinstance(v, bool))
                for k in kinds
                if k in accepted
            ):
                raise LatentcompError(
                    f"{option(f.name)} must be {' or '.join(kinds)}; got {v!r} "
                    "(from the command line or the run's config.json)"
                )


@dataclass
class TrainResult:
    run_dir: Path
    step: int
    best_test_loss: float
    last_test: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    wall_s: float = 0.0


# -- distributed helpers ---------------------------------------------------------------------------
class _AllReduceSum(torch.autograd.Function):
    """Differentiable all-reduce (sum): the gradient of every rank's copy is summed as well."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class DistBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are computed over the global batch of all processes.

    torch's SyncBatchNorm only runs on GPUs; this one uses differentiable all-reduces
    (`_AllReduceSum`), so it works with gloo on CPU too. Outside a
    process group, or in eval mode, it is a plain BatchNorm2d (same state dict keys).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (
            self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
        ):
            return super().forward(x)
        all_reduce = _AllReduceSum.apply
        c = x.shape[1]
        count = torch.tensor([x.numel() / c], dtype=x.dtype, device=x.device)
        dist.all_reduce(count)
        mean = all_reduce(x.sum(dim=(0, 2, 3))) / count
        xc = x - mean.view(1, c, 1, 1)
        var = all_reduce((xc * xc).sum(dim=(0, 2, 3))) / count
        y = xc * torch.rsqrt(var + self.eps).view(1, c, 1, 1)
        if self.affine:
            y = y * self.weight.view(1, c, 1, 1) + self.bias.view(1, c, 1, 1)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                n = float(count)
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * (n / max(n - 1, 1)), alpha=m)
        return y


def convert_dist_batchnorm(module: nn.Module) -> nn.Module:
    """Turn every BatchNorm2d in `module` into a DistBatchNorm2d in place.

    The class is swapped on the existing objects, so parameters, buffers and the optimizer's references
    to them stay the same.
    """
    for m in module.modules():
        if type(m) is nn.BatchNorm2d:
            m.__class__ = DistBatchNorm2d
    return module


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    initialized_here: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed(device: str) -> tuple[DistInfo, torch.device]:
    """Join the process group torchrun describes (WORLD_SIZE > 1) and pick this process's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if device != "auto":
        device = str(parse_device(device, option("device")))
    want_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    info = DistInfo()
    if world > 1 or (dist.is_available() and dist.is_initialized()):
        if not dist.is_initialized():
            local = int(os.environ.get("LOCAL_RANK", "0"))
            if want_cuda:
                torch.cuda.set_device(local)
            dist.init_process_group(backend="nccl" if want_cuda else "gloo")
            info.initialized_here = True
        info.rank, info.world = dist.get_rank(), dist.get_world_size()
        info.local_rank = int(os.environ.get("LOCAL_RANK", str(info.rank)))
    if want_cuda:
        # an explicit cuda:N wins; under torchrun each process takes the GPU of its local rank
        dev = torch.device(device if ":" in device else f"cuda:{info.local_rank if info.world > 1 else 0}")
    else:
        dev = torch.device("cpu")
    return info, dev


# -- data ------------------------------------------------------------------------------------------
def step_generator(seed: int, step: int, stream: int = 0) -> torch.Generator:
    """A CPU torch.Generator for (seed, step, stream), well mixed via NumPy's SeedSequence."""
    s = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(stream), int(step)]).generate_state(2, np.uint32)
    return torch.Generator().manual_seed(int(s[0]) << 32 | int(s[1]))


STREAM_TRAIN, STREAM_TEST = 0, 1


# -- the trainer -------------------------------------------------------------------------------------
class Batch(NamedTuple):
    x: torch.Tensor  # (N, C, H, W) inputs: samples, real images or collages
    m: torch.Tensor  # (N, 1, H, W) known pixels
    target: torch.Tensor  # (N, ...) latent of each sample (unused where weight is 0)
    weight: torch.Tensor  # (N,) latent-loss weight: 0 for real images and collages
    loss_mask: torch.Tensor | None  # (N, 1, H, W) pixels under the image losses; None = all


def warm_start_state(ours: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor]):
    """Our state dict filled from a donor's where tensors correspond -> (state, keys left fresh).

    A key takes the donor's tensor of the same name. A refiner trunk key (`refiner.backbone.*`) may take
    the plain trunk's (`backbone.*`), its first conv widened: the donor's weights on the channels they
    share ([x * m, m]) and minus its image weights on the new ones (G(w_t) * m; `difference_init`), so
    the refiner starts as the plain trunk reading the known-pixel error. A pyramid head's base
    (`head.base.*`) takes a pooled head's weights (`head.*`). Heads of another kind, the refiner's head
    (which starts at zero) and buffers without a counterpart stay as they are."""
    state, fresh = {}, []
    for key, mine in ours.items():
        cands = [key]
        if key.startswith("refiner.backbone."):
            cands.append(key[len("refiner."):])
        if key.startswith("head.base."):  # a pyramid head's base is the pooled head of a plain regressor
            cands.append("head." + key[len("head.base."):])
        for c in cands:
            t = theirs.get(c)
            if t is None:
                continue
            if t.shape == mine.shape:
                state[key] = t.to(mine.dtype)
                break
            widened = t.dim() == 4 and mine.dim() == 4 and t.shape[1] < mine.shape[1]
            if widened and t.shape[0] == mine.shape[0] and t.shape[2:] == mine.shape[2:]:
                wide = torch.zeros_like(mine)
                wide[:, : t.shape[1]] = t
                new = mine.shape[1] - t.shape[1]
                if key.startswith("refiner.") and new <= t.shape[1]:
                    difference_init(wide, new)  # the current output's channels read the error
                state[key] = wide
                break
        else:
            state[key] = mine
            fresh.append(key)
    return state, fresh


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class RegressorTrainer:
    """Owns G (frozen), E, the optimizer, the losses and the run folder. `run()` trains to cfg.steps."""

    def __init__(self, cfg: TrainConfig, generator=None):
        cfg.validate()
        self.cfg = cfg
        self.run_dir = Path(cfg.out).expanduser()
        state_path = self.run_dir / STATE_FILE
        # checked by every process before any joins the group, so before rank 0 can write a file
        if state_path.is_file() and not (cfg.resume or cfg.overwrite):
            raise LatentcompError(
                f"{self.run_dir} already holds a training run ({STATE_FILE}); set {option('resume')} to "
                f"continue it, {option('overwrite')} to start a new one over it, or choose another "
                f"{option('out')}"
            )
        check_run_folder(self.run_dir, state_file=STATE_FILE, resume=cfg.resume, overwrite=cfg.overwrite)
        self.dist, self.device = setup_distributed(cfg.device)
        self.state: dict[str, Any] | None = None
        if state_path.is_file() and cfg.resume:
            self.state = load_state(state_path)
        elif cfg.resume and self.dist.is_main:
            _log(f"{option('resume')}: no {STATE_FILE} in {self.run_dir}; starting a new run")

        # generator
        from ..generators import load_generator

        if generator is None:
            if not cfg.generator:
                raise LatentcompError(
                    f"{option('generator')} is required (a spec, e.g. builtin:toyfaces-dcgan)"
                )
            generator = load_generator(cfg.generator)
        elif not cfg.generator:
            cfg.generator = getattr(generator, "spec", "") or ""
        if self.state is not None:
            self._check_resume_config(self.state.get("config", {}))
        self.G = generator.to(self.device).eval()
        for p in self.G.parameters():
            p.requires_grad_(False)

        # regressor (same init on every rank; DDP also broadcasts rank 0's weights)
        torch.manual_seed(cfg.seed)
        self.E: Regressor = build_regressor(
            self.G, space=cfg.space, backbone=cfg.backbone, rgbm=not cfg.rgb_only, input_size=cfg.input_size,
            head=cfg.head, pyramid_width=cfg.pyramid_width, iterative=cfg.iterative,
            iter_start=cfg.iter_start, iterations=cfg.iterations,
        ).to(self.device)  # fmt: skip
        if cfg.space == "auto":
            cfg.space = self.E.space
        if cfg.backbone == "auto":
            cfg.backbone = self.E.backbone_name
        self.opt = torch.optim.Adam(self.E.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2))
        self.step = 0
        self.best_loss = math.inf
        self.history: list[dict[str, Any]] = []
        self.wall_s = 0.0
        if self.state is not None:
            self._load_state(self.state)
        elif cfg.init:
            self._init_from(cfg.init)
        self.model: nn.Module = self.E
        if self.dist.world > 1:
            convert_dist_batchnorm(self.E)
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = nn.parallel.DistributedDataParallel(self.E, device_ids=ids)

        self.lpips = None
        if cfg.lpips != "none" and cfg.w_lpips > 0:
            from ..losses import load_lpips

            self.lpips = load_lpips(cfg.lpips, cfg.lpips_weights, device=self.device)
        self.sampler = MaskSampler(cfg.mask_kind, cfg.unmasked_fraction)
        self.collage_kind = ""  # "" (no collages), "parts" or "noise"
        if cfg.collage_fraction > 0:
            self.collage_kind = resolve_collage_kind(cfg.collage_masks, self.G)
        self.analyzer = None
        if self.sampler.needs_parts or self.collage_kind == "parts":
            self.analyzer = self._load_analyzer(cfg.part_analyzer, self.device)
        self.real = None
        if cfg.real:
            from ..data.folder import ImageFolder

            G = self.G
            self.real = ImageFolder(cfg.real, G.resolution, G.channels, cache=8192, what="real image folder")
        self.writer = None

    # -- configuration ---------------------------------------------------------------------------
    def _check_resume_config(self, saved: dict[str, Any]) -> None:
        cur = self.cfg.to_dict()
        diffs = []
        for k, v in saved.items():
            if k in TrainConfig.RESUMABLE_CHANGES or k not in cur:
                continue
            if cur[k] != v and not (k in ("space", "backbone") and cur[k] == "auto"):
                diffs.append(f"{option(k)} {cur[k]!r} (run has {v!r})")
        if diffs:
            raise LatentcompError(
                f"{option('resume')} {self.run_dir}: options differ from the saved run: {'; '.join(diffs)}. "
                f"Resume with the run's options (only {option('steps')}, {option('eval_every')}, "
                f"{option('device')} may change) or use a new {option('out')}"
            )

    @staticmethod
    def _load_analyzer(spec: str, device: torch.device):
        try:
            from ..metrics.analyzer import load_analyzer
        except ImportError as e:
            raise LatentcompError(
                f"{option('mask_kind')} parts needs a part segmenter (latentcomp.metrics.analyzer), "
                "which is not available"
            ) from e
        return load_analyzer(spec, device=str(device))

    def _init_from(self, src: str) -> None:
        """Start E from an existing regressor's weights (a warm start).

        Same layout: every tensor is copied. A donor of the same backbone, space and latent shape but another
        head or without the iterative refiner (e.g. a plain regressor for an iterative or pyramid run): the
        tensors that have a counterpart are copied (`warm_start_state`) and the rest keep their fresh init;
        the log names what was left fresh."""
        from ..regressors import load_regressor

        donor = load_regressor(src)
        ours, theirs = self.E.state_dict(), donor.state_dict()
        exact = set(ours) == set(theirs) and all(theirs[k].shape == ours[k].shape for k in ours)
        same_layout = (donor.backbone_name, donor.space, tuple(donor.out_shape), donor.rgbm, donor.channels,
                       donor.input_size) == (self.E.backbone_name, self.E.space, tuple(self.E.out_shape),
                                             self.E.rgbm, self.E.channels, self.E.input_size)  # fmt: skip
        if not (exact or same_layout):
            raise LatentcompError(
                f"{option('init')} {src}: its layout ({donor.backbone_name}, space {donor.space}, latent "
                f"shape {tuple(donor.latent_shape)}) does not match this run's ({self.E.backbone_name}, "
                f"space {self.E.space}, latent shape {tuple(self.E.latent_shape)})"
            )
        if exact:
            self.E.load_state_dict(theirs)
            if self.dist.is_main:
                _log(f"initialised from {src}")
            return
        state, fresh = warm_start_state(ours, theirs)
        trunk = [k for k in ours if k.split(".")[0] in ("backbone", "refiner") and ".head." not in k
                 and not k.startswith("refiner.head")]  # fmt: skip
        if any(k in fresh for k in trunk):
            raise LatentcompError(
                f"{option('init')} {src}: its backbone does not fit this run's ({self.E.backbone_name}); "
                "nothing to warm-start from"
            )
        self.E.load_state_dict(state)
        if self.dist.is_main:
            groups = sorted({".".join(k.split(".")[:2]) for k in fresh})
            _log(f"initialised from {src}: {len(ours) - len(fresh)} of {len(ours)} tensors copied; fresh: "
                 f"{', '.join(groups) or 'none'}")  # fmt: skip

    def _load_state(self, state: dict[str, Any]) -> None:
        if state.get("version") != STATE_VERSION:
            raise LatentcompError(
                f"{self.run_dir / STATE_FILE}: unsupported state version {state.get('version')}"
            )
        self.E.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        self.best_loss = float(state["best_loss"])
        self.history = json.loads(state.get("history_json", "[]"))
        self.wall_s = float(state.get("wall_s", 0.0))
        if "rng" in state:
            restore_rng_state(state["rng"])

    @property
    def global_batch(self) -> int:
        return self.cfg.batch * self.dist.world

    # -- data ------------------------------------------------------------------------------------
    def make_batch(self, g: torch.Generator, n_global: int, rows: slice, real_ok: bool = True) -> Batch:
        """(x, mask, target latent, latent-loss weight per row, image-loss mask or None) for this process's
        rows. Collage rows (`collage_fraction`) hold a collage, its known region as the mask, weight 0
        and their known region as the image-loss mask; without collage rows the image-loss mask is None."""
        G, cfg = self.G, self.cfg
        z = G.sample_latent(n_global, generator=g)[rows].to(self.device)
        n = z.shape[0]
        is_real = idx = None
        if self.real is not None and real_ok and cfg.real_fraction > 0:
            is_real = (torch.rand((n_global,), generator=g) < cfg.real_fraction)[rows]
            idx = torch.randint(len(self.real), (n_global,), generator=g)[rows]
        with torch.no_grad():
            if self.E.space == "z":
                target = z
                x = G(z, space="z")
            else:
                w = G.mapping(z)
                x = G(w, space="w")
                target = w if self.E.space == "w" else G.to_wplus(w, "w")
            weight = torch.ones(n, device=self.device)
            if is_real is not None and bool(is_real.any()):
                sel = is_real.nonzero().flatten().tolist()
                x = x.clone()
                x[sel] = torch.stack([self.real[int(idx[i])] for i in sel]).to(self.device, x.dtype)
                weight[sel] = 0.0
            partmaps = None
            if self.sampler.needs_parts:
                partmaps = self.analyzer.predict(x).partmap
        m = self.sampler(n_global, x.shape[-2:], generator=g, partmaps=partmaps, rows=rows).to(self.device)
        loss_mask = None
        if self.collage_kind:  # drawn after everything above, so the other rows are those of a run without
            coll = collage_rows(n_global, cfg.collage_fraction, g)
            mine = coll.nonzero().flatten()
            start = rows.start or 0
            mine = mine[(mine >= start) & (mine < start + n)]
            collage, known, _ = make_training_collages(G, n_global, mine, g, self.collage_kind, self.analyzer,
                                                       self.device)  # fmt: skip
            if mine.numel():
                local = (mine - start).to(self.device)
                x, m = x.clone(), m.clone()
                x[local], m[local] = collage.to(x.dtype), known
                weight[local] = 0.0
                loss_mask = torch.ones_like(m)
                loss_mask[local] = known
        return Batch(x, m, target, weight, loss_mask)

    def _rows(self, n_local: int) -> slice:
        r = self.dist.rank
        return slice(r * n_local, (r + 1) * n_local)

    # -- losses ----------------------------------------------------------------------------------
    def losses(
        self, model: nn.Module, x, m, target, weight, loss_mask=None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], Any]:
        """The objective (averaged over the passes of an iterative regressor), its parts, the last output.
        `loss_mask` (N, 1, H, W) limits the image losses to its pixels (collage rows); None = all pixels."""
        cfg = self.cfg
        latents, images = model(x, m, trace=True)
        totals, per_pass = [], []
        for pred, x_hat in zip(latents, images, strict=True):
            parts = self._pass_losses(pred, x_hat, x, target, weight, loss_mask)
            total = cfg.w_mse * parts["mse"] + cfg.w_latent * parts["latent"]
            if "lpips" in parts:
                total = total + cfg.w_lpips * parts["lpips"]
            totals.append(total)
            per_pass.append(parts)
        k = len(totals)
        out = {name: sum(p[name] for p in per_pass) / k for name in per_pass[0]}
        if k > 1:
            for i, p in enumerate(per_pass, 1):
                out[f"mse_pass{i}"] = p["mse"]
        out["loss"] = sum(totals) / k
        return out["loss"], out, images[-1]

    def _pass_losses(self, pred, x_hat, x, target, weight, loss_mask) -> dict[str, torch.Tensor]:
        if loss_mask is None:
            parts: dict[str, torch.Tensor] = {"mse": F.mse_loss(x_hat, x)}
            if self.lpips is not None:
                parts["lpips"] = self.lpips(x_hat, x).mean()
        else:  # per row: the mean over its loss pixels; LPIPS of both images with the other pixels at 0
            sq = ((x_hat - x) ** 2 * loss_mask).flatten(1).sum(1)
            parts = {"mse": (sq / (loss_mask.flatten(1).sum(1).clamp(min=1) * x.shape[1])).mean()}
            if self.lpips is not None:
                parts["lpips"] = self.lpips(x_hat * loss_mask, x * loss_mask).mean()
        if self.E.space == "z":
            per = 1.0 - F.cosine_similarity(pred.flatten(1), target.flatten(1), dim=1)
        else:
            per = (pred - target).pow(2).flatten(1).mean(dim=1)
        parts["latent"] = (per * weight).sum() / x.shape[0]
        return parts

    def train_step(self) -> dict[str, float]:
        """One optimisation step (step index self.step), then self.step += 1."""
        self.model.train()
        g = step_generator(self.cfg.seed, self.step, STREAM_TRAIN)
        batch = self.make_batch(g, self.global_batch, self._rows(self.cfg.batch))
        total, parts, _ = self.losses(self.model, *batch)
        self.opt.zero_grad(set_to_none=True)
        total.backward()
        self.opt.step()
        self.step += 1
        return {k: float(v.detach()) for k, v in parts.items()}

    @torch.no_grad()
    def evaluate(self) -> tuple[dict[str, float], tuple[torch.Tensor, ...]]:
        """Mean losses on the fixed held-out test set (seeded by `seed`; same for every run)."""
        self.E.eval()
        cfg = self.cfg
        sums: dict[str, float] = {}
        n_total = 0
        first = None
        for i, start in enumerate(range(0, cfg.test_size, cfg.batch)):
            n = min(cfg.batch, cfg.test_size - start)
            g = step_generator(cfg.seed, i, STREAM_TEST)
            batch = self.make_batch(g, n, slice(0, n), real_ok=False)
            x, m = batch.x, batch.m
            _, parts, x_hat = self.losses(self.E, *batch)
            for k, v in parts.items():
                sums[k] = sums.get(k, 0.0) + float(v) * n
            n_total += n
            if first is None:
                first = (x[:8].cpu(), m[:8].cpu(), x_hat[:8].cpu())
        self.E.train()
        return {k: v / n_total for k, v in sums.items()}, first

    # -- files -----------------------------------------------------------------------------------
    def _run_config(self) -> dict[str, Any]:
        cfg = dict(self.E.config)
        cfg["train"] = self.cfg.to_dict()
        cfg["world_size"] = self.dist.world
        return cfg

    def save_checkpoint(self, test: dict[str, float] | None) -> None:
        if not self.dist.is_main:
            return
        extra = {"step": self.step}
        if test is not None:
            extra["test_loss"] = test["loss"]
            if test["loss"] < self.best_loss:
                self.best_loss = test["loss"]
                save_regressor(self.E, self.run_dir / "best", extra=extra, write_json=False)
        save_regressor(self.E, self.run_dir / "last", extra=extra, write_json=False)
        save_state(
            self.run_dir / STATE_FILE,
            version=STATE_VERSION,
            step=self.step,
            model=self.E.state_dict(),
            optimizer=self.opt.state_dict(),
            best_loss=self.best_loss,
            history_json=json.dumps(self.history),
            wall_s=self.wall_s,
            config=self.cfg.to_dict(),
            rng=capture_rng_state(),
        )
        write_json(
            self.run_dir / "metrics.json",
            {"step": self.step, "best_test_loss": self.best_loss, "wall_s": round(self.wall_s, 2),
             "global_batch": self.global_batch, "history": self.history},
        )  # fmt: skip

    def _open_writer(self):
        if not (self.dist.is_main and self.cfg.tensorboard):
            return None
        from ..extras import require

        SummaryWriter = require("torch.utils.tensorboard", "TensorBoard logs").SummaryWriter
        return SummaryWriter(log_dir=str(self.run_dir / "tb"), purge_step=self.step if self.step else None)

    def _log_images(self, images: tuple[torch.Tensor, ...]) -> None:
        if self.writer is None or images is None:
            return
        from torchvision.utils import make_grid

        x, m, x_hat = images
        shown = x * m  # hidden pixels are 0 = mid-grey
        rows = [shown, m.expand_as(x), x_hat, x]
        grid = make_grid(torch.cat(rows).clamp(-1, 1) * 0.5 + 0.5, nrow=x.shape[0], padding=1)
        self.writer.add_image("test/input_mask_output_target", grid, self.step)

    # -- the loop --------------------------------------------------------------------------------
    def run(self) -> TrainResult:
        cfg = self.cfg
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            if cfg.overwrite and self.state is None:
                for name in RUN_FILES:
                    (self.run_dir / name).unlink(missing_ok=True)
            write_json(self.run_dir / "config.json", self._run_config())
        self.writer = self._open_writer()
        last_test: dict[str, float] = {}
        from tqdm.auto import tqdm

        bar = tqdm(total=cfg.steps, initial=min(self.step, cfg.steps), desc="regressor", unit="step",
                   disable=not (self.dist.is_main and cfg.progress), dynamic_ncols=True)  # fmt: skip
        t_last = t_start = time.perf_counter()
        try:
            while self.step < cfg.steps:
                losses = self.train_step()
                now = time.perf_counter()
                self.wall_s += now - t_last
                t_last = now
                bar.update(1)
                if not math.isfinite(losses["loss"]):
                    raise LatentcompError(
                        f"training diverged at step {self.step} (loss {losses['loss']}); lower {option('lr')}"
                    )
                if self.writer is not None and (self.step % cfg.log_every == 0 or self.step == 1):
                    for k, v in losses.items():
                        self.writer.add_scalar(f"train/{k}", v, self.step)
                out_of_time = cfg.max_minutes > 0 and self._agree(now - t_start > 60 * cfg.max_minutes)
                if self.step % cfg.eval_every == 0 or self.step == cfg.steps or out_of_time:
                    last_test = self._eval_and_save()
                    bar.set_postfix(
                        loss=f"{losses['loss']:.4f}", test=f"{last_test.get('loss', math.nan):.4f}"
                    )
                if out_of_time:
                    if self.dist.is_main:
                        _log(
                            f"{option('max_minutes')} {cfg.max_minutes:g} reached at step {self.step}; "
                            f"{option('resume')} continues"
                        )
                    break
        except KeyboardInterrupt:
            if self.dist.world == 1 and self.step > 0:
                resume = option("resume")
                _log(f"interrupted: saving a checkpoint at step {self.step} (continue with {resume})")
                self.save_checkpoint(None)
            raise
        finally:
            bar.close()
            if self.writer is not None:
                self.writer.close()
        if self.dist.world > 1:
            diff = self.rank_param_divergence()
            if self.dist.is_main:
                metrics = json.loads((self.run_dir / "metrics.json").read_text())
                metrics["ddp"] = {"world_size": self.dist.world, "max_param_abs_diff_across_ranks": diff}
                write_json(self.run_dir / "metrics.json", metrics)
            dist.barrier()
        return TrainResult(
            self.run_dir, self.step, self.best_loss, last_test, list(self.history), self.wall_s
        )

    def _agree(self, flag: bool) -> bool:
        """Rank 0's decision, shared with every rank (so that all processes stop at the same step)."""
        if self.dist.world == 1:
            return flag
        t = torch.tensor([1.0 if flag else 0.0], device=self.device)
        dist.broadcast(t, src=0)
        return bool(t.item())

    def rank_param_divergence(self) -> float:
        """Max |param - rank 0's param| over all parameters and ranks (0.0 when DDP keeps them in sync)."""
        flat = torch.cat([p.detach().flatten() for p in self.E.parameters()])
        ref = flat.clone()
        dist.broadcast(ref, src=0)
        diff = (flat - ref).abs().max().reshape(1)
        dist.all_reduce(diff, op=dist.ReduceOp.MAX)
        return float(diff)

    def _eval_and_save(self) -> dict[str, float]:
        test: dict[str, float] = {}
        if self.dist.is_main:
            test, images = self.evaluate()
            self.history.append({"step": self.step, "wall_s": round(self.wall_s, 2), **test})
            if self.writer is not None:
                for k, v in test.items():
                    self.writer.add_scalar(f"test/{k}", v, self.step)
                self._log_images(images)
                self.writer.flush()
            self.save_checkpoint(test)
        return test

    def close(self) -> None:
        if self.dist.initialized_here and dist.is_initialized():
            dist.destroy_process_group()


def train_regressor(cfg: TrainConfig, generator=None) -> TrainResult:
    """Train (or resume) a regressor as configured; returns the final step, best test loss, history.

    `generator` may be a Generator instance (then `cfg.generator` may be empty and G.spec is recorded).
    Under `torchrun --nproc-per-node N` (WORLD_SIZE > 1) trains with DDP; only rank 0 writes files.
    """
    trainer = RegressorTrainer(cfg, generator)
    try:
        return trainer.run()
    finally:
        trainer.close()
