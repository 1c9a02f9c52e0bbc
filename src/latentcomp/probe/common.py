"""Shared pieces of the probing experiments: models, analyzer, sizes, part sources, plots and JSON."""

from __future__ import annotations

import base64
import io as _io
import math
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import LatentcompError


@dataclass
class Sizes:
    """How much work each experiment does. `default()` fits 20 minutes for two toyfaces models on 2 CPU
    cores; `quick()` fits 2 minutes (a smoke test: its numbers mean little)."""

    tradeoff_n: int = 200  # collages per generator; every method runs on all of them
    refine_steps: int = 30
    opt_steps: int = 100
    independence_pairs: int = 40  # image pairs per part
    strengths: int = 6  # points per curve, strength / alpha from 0 to 1
    parts_fit: int = 200  # samples whose features k-means clusters
    parts_eval: int = 64  # held-out samples scored against the analyzer's part maps
    rebalance_n: int = 400  # generated images in the set to rebalance
    reference_n: int = 400  # reference images (renders or samples) for realism
    batch: int = 50

    @classmethod
    def default(cls) -> Sizes:
        return cls()

    @classmethod
    def quick(cls) -> Sizes:
        return cls(
            tradeoff_n=8,
            refine_steps=2,
            opt_steps=3,
            independence_pairs=4,
            strengths=3,
            parts_fit=12,
            parts_eval=6,
            rebalance_n=24,
            reference_n=24,
            batch=8,
        )

    def as_dict(self) -> dict:
        return asdict(self)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------ models
def load_pipeline(spec: str, device: str | None = None):
    """A Pipeline for a probe: anything `latentcomp.pretrained.load_pipeline` accepts; a plain generator
    spec (e.g. builtin:tiny-random) gets a fresh, untrained regressor, with a notice (smoke tests only)."""
    from ..pretrained import load_pipeline as load

    return load(spec, device=device, allow_untrained=True)


def model_label(pipe) -> str:
    return str(pipe.source or pipe.generator.spec) + (" (untrained E)" if pipe.untrained else "")


def load_domain_analyzer(spec: str | None, device=None):
    """The toyfaces analyzer, or (None, reason) where it cannot be loaded."""
    if spec in (None, "", "none"):
        return None, "no analyzer given (--analyzer none)"
    from ..metrics.analyzer import load_analyzer

    try:
        return load_analyzer(spec, device=str(device) if device else None), ""
    except LatentcompError as e:
        return None, str(e)


def toyfaces_compatible(pipe, analyzer) -> bool:
    """Whether toyfaces renders / analyzer part maps make sense for this generator."""
    from ..data.toyfaces import PARTS, RESOLUTIONS

    return (
        analyzer is not None
        and pipe.channels == 3
        and pipe.resolution in RESOLUTIONS
        and list(analyzer.part_names) == list(PARTS)
    )


@torch.no_grad()
def sample_with_latents(pipe, n: int, seed: int, batch: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """n samples of G (CPU images) and their z, deterministic for the seed whatever the batch."""
    g = torch.Generator().manual_seed(int(seed))
    z = pipe.generator.sample_latent(n, generator=g).cpu()
    imgs = [
        pipe.generator(z[i : i + batch].to(pipe.device), space="z").clamp(-1, 1).cpu()
        for i in range(0, n, batch)
    ]
    return torch.cat(imgs), z


def renders(resolution: int, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """n toyfaces renders (images, part maps, attributes) from a data seed no training run uses."""
    from ..data.toyfaces import ToyFaces

    return ToyFaces(resolution=resolution, seed=4_242_000 + int(seed)).render_batch(list(range(n)))


def batched(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, batch: int) -> torch.Tensor:
    return torch.cat([fn(x[i : i + batch]) for i in range(0, x.shape[0], batch)])


def dilate(mask: torch.Tensor, pixels: int = 1) -> torch.Tensor:
    if pixels <= 0:
        return mask
    k = 2 * pixels + 1
    return torch.nn.functional.max_pool2d(mask.float(), k, stride=1, padding=pixels)


# ------------------------------------------------------------------------------------------ realism
def realism(features: torch.Tensor, reference: torch.Tensor, k: int = 5) -> dict:
    """FID, KID and precision/recall/density/coverage of `features` against `reference` features."""
    from ..metrics.fid import frechet_distance, kid
    from ..metrics.prdc import compute_prdc

    out: dict = {"n": int(features.shape[0]), "n_reference": int(reference.shape[0])}
    out["fid"] = (
        frechet_distance(features, reference) if min(features.shape[0], reference.shape[0]) > 1 else math.nan
    )
    try:
        out["kid"] = kid(features, reference, subsets=20, subset_size=min(200, features.shape[0]), seed=0)[0]
    except LatentcompError:
        out["kid"] = math.nan
    kk = min(k, features.shape[0] - 1, reference.shape[0] - 1)
    if kk >= 1:
        out.update(compute_prdc(reference, features, k=kk))
        out["prdc_k"] = kk
    return out


# ------------------------------------------------------------------------------------------ output
def jsonable(v):
    if isinstance(v, float | np.floating):
        v = float(v)
        return None if (math.isnan(v) or math.isinf(v)) else v
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, torch.Tensor):
        return jsonable(v.tolist())
    if isinstance(v, np.ndarray):
        return jsonable(v.tolist())
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items() if not str(k).startswith("_")}
    if isinstance(v, list | tuple):
        return [jsonable(x) for x in v]
    return v


def write_json(path: Path, data: dict) -> Path:
    import json

    from .. import io

    return io.write_text(path, json.dumps(jsonable(data), indent=2) + "\n")


def plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot

    return pyplot


def save_fig(fig, path: Path) -> Path:
    from .. import io

    def write(tmp: Path) -> None:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")

    io.atomic_write(path, write)
    plt().close(fig)
    return Path(path)


def save_grid(rows: list[torch.Tensor], path: Path, pad: int = 2, scale: int = 1) -> Path:
    """Rows of images (each (K, C, H, W) in [-1, 1]) -> one PNG grid, rows top to bottom."""
    from torchvision.utils import make_grid

    from .. import io

    k = max(r.shape[0] for r in rows)
    c = max(r.shape[1] for r in rows)
    tiles = []
    for r in rows:
        r = r.float().cpu()
        if r.shape[1] != c:
            r = r.expand(-1, c, -1, -1)
        if r.shape[0] < k:
            r = torch.cat([r, torch.ones(k - r.shape[0], *r.shape[1:])])
        tiles.append(r)
    grid = make_grid(torch.cat(tiles), nrow=k, padding=pad, pad_value=1.0)
    if scale > 1:
        grid = torch.nn.functional.interpolate(grid[None], scale_factor=scale, mode="nearest")[0]
    return io.save_image(grid, path)


def partmap_to_image(pm: torch.Tensor, n_classes: int | None = None) -> torch.Tensor:
    """(N, H, W) long -> (N, 3, H, W) in [-1, 1] with a fixed palette."""
    n_classes = int(pm.max()) + 1 if n_classes is None else n_classes
    cmap = plt().get_cmap("tab20" if n_classes > 10 else "tab10")
    pal = torch.tensor([cmap(i % cmap.N)[:3] for i in range(max(n_classes, 1))], dtype=torch.float32)
    return pal[pm.clamp(min=0).long()].permute(0, 3, 1, 2) * 2 - 1


def png_base64(path: Path) -> str:
    return base64.b64encode(Path(path).read_bytes()).decode("ascii")


def fig_to_base64(fig) -> str:
    buf = _io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt().close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")
