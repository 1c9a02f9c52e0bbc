"""GAN training for the embedded default models (small, CPU-friendly).

Recipe: non-saturating logistic loss, lazy R1 penalty on reals, an EMA of G (the exported model),
a residual discriminator with minibatch standard deviation. Data: toyfaces renders (a seeded pool
rendered once, so batches are cheap), MNIST IDX files, or an image folder. Options: differentiable
augmentation of D's inputs (`augment`), a discriminator that also segments toyfaces into their parts
(`seg_weight`), and a warm start of G from an exported generator (`init_generator`).

Checkpoints (`RUN/checkpoint.pt`, weights only) hold G, D, EMA, both optimisers, the step and every RNG
state, and are written atomically, so `--resume` continues the exact run. The EMA generator is
exported to `RUN/generator.safetensors` (+ `.json`), which `load_generator("KIND:RUN")` reads.
"""

from __future__ import annotations

import copy
import math
import os
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import LatentcompError
from ..io import atomic_write, save_torch, write_json
from ..outputs import check_run_folder
from .augment import IGNORE, augment, parse_policy
from .checkpoint import load_state, read_json_object
from .discriminator import Discriminator


@dataclass
class GANConfig:
    data: str = "toyfaces"
    arch: str = "dcgan"
    resolution: int = 64
    steps: int = 10000
    batch: int = 32
    seed: int = 0
    lr: float = 0.002
    d_lr: float = 0.0  # 0 = same as lr
    r1_gamma: float = 0.1
    r1_every: int = 8
    ema_half_life: float = 500.0  # in images x 1000 would be StyleGAN's unit; here in steps
    pool_size: int = 20000
    z_dim: int = 128
    width: int = 32  # base channel width
    sample_every: int = 500
    checkpoint_every: int = 250
    device: str = "cpu"
    augment: str = ""  # DiffAugment policy for D's inputs, e.g. "color,translation,cutout"
    seg_weight: float = 0.0  # weight of D's per-pixel part / fake loss (toyfaces only); 0 = off
    init_generator: str = ""  # warm start: a generator spec or exported file of the same architecture
    d_warmup: int = 0  # first steps train D only (a fresh D beside a warm-started G would mislead G)
    precision: str = "fp32"  # "bf16": autocast + channels_last (fast on CPUs with AMX / AVX512-BF16)


PRECISIONS = ("fp32", "bf16")


# ---------------------------------------------------------------------------------------------
# data


def load_training_images(cfg: GANConfig) -> torch.Tensor:
    """All training images as uint8 (N, C, H, W): cheap to index, small in memory."""
    if cfg.data == "toyfaces":
        return load_toyfaces_pool(cfg)[0]
    if cfg.data == "mnist":
        from ..data.mnist import MNIST

        images = MNIST(_default_mnist_root()).images  # (N, 1, 28, 28) in [-1, 1]
        images = F.interpolate(images, size=cfg.resolution, mode="bilinear", antialias=True)
        return ((images + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    path = Path(cfg.data)
    if not path.is_dir():
        raise LatentcompError(f"--data {cfg.data!r}: expected 'toyfaces', 'mnist' or an image folder")
    from ..data.folder import ImageFolder

    ds = ImageFolder(path, resolution=cfg.resolution)
    return torch.stack([((ds[i] + 1) * 127.5).round().clamp(0, 255).to(torch.uint8) for i in range(len(ds))])


def load_toyfaces_pool(cfg: GANConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The toyfaces training pool: images uint8 (N, 3, H, W) and part maps uint8 (N, H, W)."""
    from ..data.toyfaces import ToyFaces

    ds = ToyFaces(cfg.resolution, seed=cfg.seed + 1000)
    images, parts = [], []
    for start in range(0, cfg.pool_size, 500):
        img, part, _ = ds.render_batch(range(start, min(start + 500, cfg.pool_size)))
        images.append(((img + 1) * 127.5).round().clamp(0, 255).to(torch.uint8))
        parts.append(part.to(torch.uint8))
    return torch.cat(images), torch.cat(parts)


def _default_mnist_root() -> Path:
    env = os.environ.get("LATENTCOMP_MNIST")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3].parent / "shared" / "real" / "mnist"


# ---------------------------------------------------------------------------------------------
# networks


def build_generator_net(cfg: GANConfig, channels: int) -> nn.Module:
    """The trainable generator network, in the key layout its loader reads."""
    if cfg.arch == "dcgan":
        from ..generators.dcgan import DCGANNet

        return DCGANNet(nz=cfg.z_dim, ngf=cfg.width, nc=channels, resolution=cfg.resolution)
    if cfg.arch == "stylegan2":
        from ..generators.stylegan2 import StyleGAN2Net

        w = cfg.width
        widths = {4: 8 * w, 8: 8 * w, 16: 4 * w, 32: 2 * w, 64: w, 128: w // 2 or 1}
        widths = {r: c for r, c in widths.items() if r <= cfg.resolution}
        return StyleGAN2Net(
            cfg.resolution, style_dim=cfg.z_dim, n_mlp=4, channels=widths, img_channels=channels
        )
    if cfg.arch == "gansformer":
        from ..generators.gansformer import build_gansformer

        return build_gansformer(cfg.resolution, cfg.z_dim, width=cfg.width, channels=channels)
    raise LatentcompError(f"--arch {cfg.arch!r} is not supported; use dcgan, stylegan2 or gansformer")


def generate(net: nn.Module, cfg: GANConfig, z: torch.Tensor, noise: str = "random") -> torch.Tensor:
    if cfg.arch == "stylegan2":
        w = net.mapping(z)
        return net.synthesis(w.unsqueeze(1).repeat(1, net.num_ws, 1), noise_mode=noise)
    if cfg.arch == "gansformer":  # the flat z is split into the k latent components
        return net(z.view(z.shape[0], net.k, -1), noise_mode=noise)
    return net(z.view(z.shape[0], -1, 1, 1))


def export_generator(net: nn.Module, cfg: GANConfig, path: Path, extra: dict) -> None:
    """Write the EMA generator in its kind's loadable format (safetensors + JSON), atomically."""
    net = _set_memory_format(copy.deepcopy(net), torch.contiguous_format)  # safetensors wants contiguous
    if cfg.arch == "dcgan":
        from ..generators.dcgan import save_dcgan

        save_dcgan(recalibrated_batchnorm(net, cfg), path, extra=extra)
    elif cfg.arch == "gansformer":
        from ..generators.gansformer import save_gansformer

        save_gansformer(net, path, extra_config=extra)
    else:
        from ..generators.stylegan2 import save_stylegan2

        save_stylegan2(net, path, extra_config=extra)


def _set_memory_format(net: nn.Module, fmt: torch.memory_format) -> nn.Module:
    """Lay out the 4-d weights (convolutions) in `fmt`; others (StyleGAN2's 5-d kernels) stay as they are."""
    for p in net.parameters():
        if p.dim() == 4:
            p.data = p.data.contiguous(memory_format=fmt)
    return net


def recalibrated_batchnorm(net: nn.Module, cfg: GANConfig, batches: int = 16) -> nn.Module:
    """A copy of an EMA generator whose BatchNorm running statistics match its own (averaged) weights.

    The EMA copies G's running stats, which were collected with G's weights, not the EMA's; recomputing
    them with a cumulative average over a few batches removes that mismatch before export.
    """
    net = copy.deepcopy(net)
    bns = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return net
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    net.train()
    gen = torch.Generator().manual_seed(cfg.seed + 7)
    with torch.no_grad():
        for _ in range(batches):
            net(torch.randn(64, cfg.z_dim, generator=gen).to(next(net.parameters()).device))
    return net.eval()


def _warm_start_weights(source: str, net: nn.Module) -> dict[str, torch.Tensor]:
    """G's weights from an exported generator (a spec such as builtin:toyfaces-dcgan, or a run's
    generator.safetensors of the same kind), checked against `net`'s layout."""
    from ..generators import load_generator

    if ":" not in source:
        raise LatentcompError(
            f"init_generator {source!r} must be a generator spec such as builtin:toyfaces-dcgan or "
            "dcgan:RUN/generator.safetensors"
        )
    theirs = load_generator(source).net.state_dict()
    ours = net.state_dict()
    wrong = sorted(k for k in ours if k not in theirs or theirs[k].shape != ours[k].shape)
    if wrong or set(theirs) - set(ours):
        raise LatentcompError(
            f"init_generator {source!r} does not match this run's generator layout (--arch, --width, "
            f"--z-dim, --resolution): {len(wrong)} of {len(ours)} tensors differ, e.g. {wrong[:3]}"
        )
    return {k: theirs[k].to(ours[k].dtype) for k in ours}




def _rng_state(gen: torch.Generator) -> dict:
    return {"torch": torch.get_rng_state(), "sampler": gen.get_state()}


class GANTrainer:
    def __init__(self, cfg: GANConfig, out: Path, resume: bool = False, overwrite: bool = False):
        self.cfg, self.out = cfg, Path(out)
        ckpt_path = self.out / "checkpoint.pt"
        if resume:
            if not ckpt_path.is_file():
                raise LatentcompError(f"--resume: no checkpoint at {ckpt_path}")
            state = load_state(ckpt_path)  # read first: a bad checkpoint stops before anything is written
            saved = read_json_object(self.out / "config.json", "run config")
            unknown = sorted(set(saved) - {f.name for f in fields(GANConfig)})
            if unknown:
                raise LatentcompError(
                    f"--resume: {self.out / 'config.json'} has unknown keys {', '.join(unknown)}; "
                    "it was not written by this version of latentcomp gan train"
                )
            # the step target and the device are choices of this call; the recipe is the run's
            self.cfg = cfg = GANConfig(**{**saved, "steps": cfg.steps, "device": cfg.device})
        elif ckpt_path.exists() and not overwrite:
            raise LatentcompError(
                f"{self.out} already holds a run; pass --resume to continue it, --overwrite to start a new "
                "one over it, or pick a new --out"
            )
        else:
            check_run_folder(self.out, state_file=ckpt_path.name, overwrite=overwrite)
        self.augment_policy = parse_policy(cfg.augment)  # checked before anything is written
        if cfg.precision not in PRECISIONS:
            raise LatentcompError(f"--precision {cfg.precision!r} is not supported; use fp32 or bf16")
        if overwrite and not resume:
            ckpt_path.unlink(missing_ok=True)  # the old run's checkpoint must not be resumed later
        self.out.mkdir(parents=True, exist_ok=True)
        write_json(self.out / "config.json", asdict(cfg))

        torch.manual_seed(cfg.seed)
        self.device = torch.device(cfg.device)
        self.parts = None
        if cfg.seg_weight > 0:
            if cfg.data != "toyfaces":
                raise LatentcompError(
                    f"seg_weight {cfg.seg_weight} needs part maps, which only --data toyfaces has; "
                    f"got --data {cfg.data!r} (use seg_weight 0)"
                )
            self.images, self.parts = load_toyfaces_pool(cfg)
        else:
            self.images = load_training_images(cfg)
        channels = self.images.shape[1]
        self.G = build_generator_net(cfg, channels).to(self.device)
        if cfg.init_generator and not resume:
            self.G.load_state_dict(_warm_start_weights(cfg.init_generator, self.G))
        self.seg_classes = 0
        if self.parts is not None:
            from ..data.toyfaces import PARTS

            self.seg_classes = len(PARTS) + 1  # the parts, then "fake"
        self.D = Discriminator(
            cfg.resolution, channels, width=cfg.width, seg_classes=self.seg_classes
        ).to(self.device)
        if cfg.precision == "bf16":  # oneDNN's fast bf16 convolutions want NHWC
            _set_memory_format(self.G, torch.channels_last)
            _set_memory_format(self.D, torch.channels_last)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        betas = (0.0, 0.99) if cfg.arch in ("stylegan2", "gansformer") else (0.5, 0.99)
        r1_ratio = cfg.r1_every / (cfg.r1_every + 1)  # lazy regularisation, as in StyleGAN2
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=cfg.lr, betas=betas)
        # the discriminator has plain (not equalized-lr) layers, so it may need a smaller rate than an
        # equalized-lr StyleGAN2 generator
        self.opt_d = torch.optim.Adam(
            self.D.parameters(),
            lr=(cfg.d_lr or cfg.lr) * r1_ratio,
            betas=(betas[0] ** r1_ratio, betas[1] ** r1_ratio),
        )
        self.sampler = torch.Generator().manual_seed(cfg.seed)
        self.step = 0
        self.fixed_z = torch.randn(64, cfg.z_dim, generator=torch.Generator().manual_seed(12345))
        self.elapsed = 0.0
        if resume:
            self.G.load_state_dict(state["G"])
            self.D.load_state_dict(state["D"])
            self.G_ema.load_state_dict(state["G_ema"])
            self.opt_g.load_state_dict(state["opt_g"])
            self.opt_d.load_state_dict(state["opt_d"])
            self.step = int(state["step"])
            self.elapsed = float(state.get("elapsed", 0.0))
            torch.set_rng_state(state["rng"]["torch"])
            self.sampler.set_state(state["rng"]["sampler"])

    def real_batch(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """A batch of reals in [-1, 1] and, when D segments, their part maps (N, H, W) long."""
        idx = torch.randint(len(self.images), (self.cfg.batch,), generator=self.sampler)
        parts = None if self.parts is None else self.parts[idx].long().to(self.device)
        return (self.images[idx].float() / 127.5 - 1).to(self.device), parts

    def noise(self) -> torch.Tensor:
        return torch.randn(self.cfg.batch, self.cfg.z_dim, generator=self.sampler).to(self.device)

    def autocast(self):
        """bf16 autocast for the forward passes when the run asks for it; losses are taken in fp32."""
        enabled = self.cfg.precision == "bf16"
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=enabled)

    def discriminate(self, x: torch.Tensor, parts: torch.Tensor | None = None, fake: bool = False):
        """D's logits on augmented `x`, and its per-pixel segmentation loss when D segments.

        The segmentation target is the (augmented) part map for reals and the "fake" class for fakes;
        `parts` None on a fake means G's view: every pixel should look like some real part."""
        if self.augment_policy:
            x, parts = augment(x, self.augment_policy, parts, generator=self.sampler)
        if not self.seg_classes:
            with self.autocast():
                return self.D(x).float(), None
        with self.autocast():
            logits, seg = self.D(x, segment=True)
        logits, seg = logits.float(), seg.float()
        if fake and parts is None:  # generator loss: -log(1 - p(fake)) per pixel
            log_real = seg[:, :-1].logsumexp(1) - seg.logsumexp(1)
            return logits, -log_real.mean()
        target = F.interpolate(parts[:, None].float(), size=seg.shape[-2:], mode="nearest")[:, 0].long()
        if fake:  # every pixel that augmentation did not invent is "fake"
            target = target.masked_fill(target != IGNORE, self.seg_classes - 1)
        return logits, F.cross_entropy(seg, target, ignore_index=IGNORE)

    def train_step(self) -> dict[str, float]:
        cfg = self.cfg
        # discriminator: logistic loss (+ per-pixel segmentation loss), lazy R1 on reals
        real, parts = self.real_batch()
        with torch.no_grad(), self.autocast():
            fake = generate(self.G, cfg, self.noise()).float()
        do_r1 = cfg.r1_gamma > 0 and self.step % cfg.r1_every == 0
        real.requires_grad_(do_r1)
        real_logits, seg_real = self.discriminate(real, parts)
        # fakes carry no part map; a map of zeros lets augmentation mark its padding and cutout as ignored
        fake_parts = None if parts is None else torch.zeros_like(parts)
        fake_logits, seg_fake = self.discriminate(fake, fake_parts, fake=True)
        d_loss = F.softplus(fake_logits).mean() + F.softplus(-real_logits).mean()
        logs = {"loss/d": d_loss.item()}
        if seg_real is not None:
            seg = seg_real + seg_fake
            d_loss = d_loss + cfg.seg_weight * seg
            logs["loss/d_seg"] = seg.item()
        if do_r1:
            (grad,) = torch.autograd.grad(real_logits.sum(), real, create_graph=True)
            r1 = grad.pow(2).flatten(1).sum(1).mean()
            d_loss = d_loss + cfg.r1_gamma / 2 * r1 * cfg.r1_every
            logs["loss/r1"] = r1.item()
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt_d.step()
        if self.step < cfg.d_warmup:
            self.step += 1
            return logs
        # generator: non-saturating loss (+ every pixel should look like a real part)
        with self.autocast():
            fake = generate(self.G, cfg, self.noise()).float()
        g_logits, g_seg = self.discriminate(fake, fake=True)
        g_loss = F.softplus(-g_logits).mean()
        logs["loss/g"] = g_loss.item()
        if g_seg is not None:
            g_loss = g_loss + cfg.seg_weight * g_seg
            logs["loss/g_seg"] = g_seg.item()
        self.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        self.opt_g.step()
        # EMA of the generator; ramped up early so it does not average in the random init for long
        half_life = min(cfg.ema_half_life, max(10.0, self.step * 0.1))
        beta = 0.5 ** (1.0 / half_life)
        with torch.no_grad():
            for pe, p in zip(self.G_ema.parameters(), self.G.parameters(), strict=True):
                pe.lerp_(p, 1 - beta)
            for be, b in zip(self.G_ema.buffers(), self.G.buffers(), strict=True):
                be.copy_(b)
        self.step += 1
        return logs

    def save(self) -> None:
        state = {
            "G": self.G.state_dict(),
            "D": self.D.state_dict(),
            "G_ema": self.G_ema.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "step": self.step,
            "elapsed": self.elapsed,
            "rng": _rng_state(self.sampler),
        }
        save_torch(state, self.out / "checkpoint.pt")
        extra = {
            "trained_steps": self.step,
            "data": self.cfg.data,
            "seed": self.cfg.seed,
            "wall_time_s": round(self.elapsed, 1),
        }
        export_generator(self.G_ema, self.cfg, self.out / "generator.safetensors", extra)

    def sample_grid(self) -> torch.Tensor:
        with torch.no_grad():
            img = generate(self.G_ema, self.cfg, self.fixed_z.to(self.device), noise="const")
        return img.clamp(-1, 1) * 0.5 + 0.5

    def train(self, progress: bool = True, log_dir: bool = True, max_seconds: float | None = None) -> None:
        """Train to `cfg.steps`, or until this call has run `max_seconds` (then checkpoint and stop, so
        a time-boxed session ends with a resumable run)."""
        from tqdm import tqdm

        writer = None
        if log_dir:
            from ..extras import require

            SummaryWriter = require("torch.utils.tensorboard", "TensorBoard logs").SummaryWriter
            writer = SummaryWriter(str(self.out / "tb"))
        bar = tqdm(
            total=self.cfg.steps,
            initial=self.step,
            disable=not progress,
            desc=f"gan {self.cfg.arch}",
            dynamic_ncols=True,
        )
        start = time.perf_counter() - self.elapsed
        deadline = None if max_seconds is None else time.perf_counter() + max_seconds
        while self.step < self.cfg.steps:
            logs = self.train_step()
            self.elapsed = time.perf_counter() - start
            if deadline is not None and time.perf_counter() >= deadline:
                bar.update(1)
                self.save()
                break
            bar.update(1)
            if self.step % 20 == 0:
                bar.set_postfix({k.split("/")[1]: f"{v:.3f}" for k, v in logs.items()})
                if writer:
                    for k, v in logs.items():
                        if math.isfinite(v):
                            writer.add_scalar(k, v, self.step)
            if writer and self.step % self.cfg.sample_every == 0:
                writer.add_image("samples", _grid(self.sample_grid()), self.step)
            if self.step % self.cfg.checkpoint_every == 0 or self.step == self.cfg.steps:
                self.save()
        bar.close()
        if writer:
            writer.close()
        if self.step == self.cfg.steps and not (self.out / "generator.safetensors").exists():
            self.save()
        import torchvision

        grid = self.sample_grid()
        save = lambda tmp: torchvision.utils.save_image(grid, tmp, nrow=8, format="png")  # noqa: E731
        atomic_write(self.out / "samples.png", save)


def _grid(images: torch.Tensor) -> torch.Tensor:
    import torchvision

    return torchvision.utils.make_grid(images, nrow=8)
