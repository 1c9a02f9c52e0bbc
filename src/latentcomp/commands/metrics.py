"""`latentcomp metrics ...`: image metrics on folders.

    latentcomp metrics fid DIR_A DIR_B [--features analyzer|inception|pixels|MODULE:FN]   FID + KID
    latentcomp metrics prdc REAL_DIR FAKE_DIR [--k 5]                   precision/recall/density/coverage
    latentcomp metrics is DIR                                           Inception Score (Inception weights)
    latentcomp metrics masked-l1 DIR_A DIR_B [--mask-dir M]             per-pair L1 on known pixels
    latentcomp metrics masked-lpips DIR_A DIR_B [--mask-dir M] [--net alex|vgg]

Folders are read in batches (features are streamed, so 50k images fit). Images of another size than a
folder's first image are resized to it in float, bicubic and antialiased (metrics.fid.resize_images).
Pairs (masked metrics) and masks are matched by file name (the extension may differ).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import typer

from ..errors import LatentcompError

metrics_app = typer.Typer(
    help="Image metrics on folders: FID/KID, PRDC, IS, masked L1 / LPIPS.", no_args_is_help=True
)

FEATURES_HELP = (
    "Feature space: analyzer[:SPEC] (toyfaces, offline), inception[:PATH], pixels[:SIZE], MODULE:FN."
)


def _jsonable(v):
    if isinstance(v, float) and (math.isnan(v) or math.isinf(v)):
        return None
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    return v


def _emit(result: dict, json_path: Path | None) -> None:
    for k, v in result.items():
        if isinstance(v, float):
            print(f"{k}: {v:.6g}")
        elif not isinstance(v, dict | list):
            print(f"{k}: {v}")
    if json_path is not None:
        from .. import io

        io.write_text(json_path, json.dumps(_jsonable(result), indent=2) + "\n")
        print(f"wrote {json_path}")


def _load_batch(paths, size_hw, channels=3):
    """Images resized (carefully) to size_hw where different -> ((N, C, H, W), number resized)."""
    import torch

    from .. import io
    from ..metrics.fid import resize_images

    out, resized = [], 0
    for p in paths:
        x = io.load_image(p, channels=channels, notice=None)
        if size_hw is not None and tuple(x.shape[-2:]) != tuple(size_hw):
            x = resize_images(x, size_hw)
            resized += 1
        out.append(x)
    return torch.cat(out), resized


def folder_features(folder: Path, extractor, batch: int = 256, what: str = "image folder"):
    """Features (N, D) of every image in a folder, streamed in batches; images resized to the first's size."""
    import torch
    from tqdm import tqdm

    from .. import io

    if batch < 1:
        raise LatentcompError(f"--batch must be at least 1; got {batch}")
    files = io.list_images(folder, what)
    size_hw = tuple(io.load_image(files[0], notice=None).shape[-2:])
    feats, resized = [], 0
    for i in tqdm(
        range(0, len(files), batch),
        desc=f"features {Path(folder).name}",
        unit="batch",
        disable=len(files) <= batch,
    ):
        x, r = _load_batch(files[i : i + batch], size_hw)
        resized += r
        feats.append(extractor(x))
    if resized:
        print(
            f"notice: {resized} image(s) of {folder} resized to {size_hw[1]}x{size_hw[0]} "
            "(bicubic, antialiased)"
        )
    return torch.cat(feats)


def _pairs(dir_a: Path, dir_b: Path):
    from .. import io

    a = io.list_images(dir_a, "first image folder")
    by_stem = {f.stem: f for f in io.list_images(dir_b, "second image folder")}
    missing = [f.name for f in a if f.stem not in by_stem]
    if missing:
        raise LatentcompError(
            f"{dir_b} has no image for {len(missing)} image(s) of {dir_a}, e.g. {missing[0]}; pairs are "
            "matched by file name (extension may differ)"
        )
    return [(f, by_stem[f.stem]) for f in a]


def _masked_over_folders(dir_a, dir_b, mask_dir, fn, batch=64):
    import torch

    from .. import io

    pairs = _pairs(dir_a, dir_b)
    masks = None
    if mask_dir is not None:
        masks = dict(io.match_images_masks(dir_a, mask_dir))
    vals = []
    for i in range(0, len(pairs), batch):
        chunk = pairs[i : i + batch]
        xa, xb, ms = [], [], []
        for pa, pb in chunk:
            a = io.load_image(pa, notice=None)
            b = io.load_image(pb, notice=None)
            if a.shape != b.shape:
                raise LatentcompError(
                    f"{pa.name}: {tuple(a.shape[-2:])} vs {pb} {tuple(b.shape[-2:])}; "
                    "paired images must have the same size"
                )
            xa.append(a)
            xb.append(b)
            if masks is not None:
                hw = tuple(a.shape[-2:])
                ms.append(io.load_mask(masks[pa], image_hw=hw, allow_empty=True, notice=None))
        if len({tuple(t.shape) for t in xa}) > 1:  # mixed sizes: one pair at a time
            for j in range(len(xa)):
                vals.append(fn(xa[j], xb[j], ms[j] if ms else None))
        else:
            vals.append(fn(torch.cat(xa), torch.cat(xb), torch.cat(ms) if ms else None))
    v = torch.cat(vals)
    ok = ~torch.isnan(v)
    return {
        "n": len(pairs),
        "n_without_known_pixels": int((~ok).sum()),
        "mean": float(v[ok].mean()) if ok.any() else math.nan,
        "std": float(v[ok].std()) if ok.sum() > 1 else math.nan,
        "per_image": {
            p[0].name: (float(x) if not math.isnan(float(x)) else None) for p, x in zip(pairs, v, strict=True)
        },
    }


@metrics_app.command("fid")
def fid_cmd(
    dir_a: Path = typer.Argument(..., help="First image folder (e.g. real images)."),
    dir_b: Path = typer.Argument(..., help="Second image folder (e.g. generated images)."),
    features: str = typer.Option("analyzer", help=FEATURES_HELP),
    kid_subsets: int = typer.Option(100, help="KID: number of random subsets."),
    kid_subset_size: int = typer.Option(1000, help="KID: subset size (capped at the smaller folder)."),
    seed: int = typer.Option(0, min=0, max=2**63 - 1, help="KID subset seed."),
    batch: int = typer.Option(256, help="Images per feature batch."),
    device: str = typer.Option("cpu", help="Torch device."),
    json_out: Path = typer.Option(None, "--json", help="Also write the result as JSON here."),
):
    """FID and KID between two image folders in any feature space."""
    from ..metrics.features import load_features
    from ..metrics.fid import frechet_distance_info, kid

    ex = load_features(features, device=device)
    fa, fb = folder_features(dir_a, ex, batch), folder_features(dir_b, ex, batch)
    info = frechet_distance_info(fa, fb)
    k_mean, k_std = kid(fa, fb, subsets=kid_subsets, subset_size=kid_subset_size, seed=seed)
    res = {
        "features": ex.name,
        "n_a": info["n_a"],
        "n_b": info["n_b"],
        "dim": info["dim"],
        "fid": info["fid"],
        "kid": k_mean,
        "kid_std": k_std,
        "fid_eps_retries": info["retries"],
    }
    _emit(res, json_out)


@metrics_app.command("prdc")
def prdc_cmd(
    real_dir: Path = typer.Argument(..., help="Real (reference) image folder."),
    fake_dir: Path = typer.Argument(..., help="Generated image folder."),
    features: str = typer.Option("analyzer", help=FEATURES_HELP),
    k: int = typer.Option(5, help="Nearest neighbours (the prdc default is 5)."),
    chunk: int = typer.Option(2048, help="Block size of the chunked distances (memory ~ chunk^2)."),
    batch: int = typer.Option(256, help="Images per feature batch."),
    device: str = typer.Option("cpu", help="Torch device."),
    json_out: Path = typer.Option(None, "--json", help="Also write the result as JSON here."),
):
    """Precision, recall, density and coverage (k-NN manifolds, chunked: fine for 50k images)."""
    from ..metrics.features import load_features
    from ..metrics.prdc import compute_prdc

    ex = load_features(features, device=device)
    fr, ff = folder_features(real_dir, ex, batch), folder_features(fake_dir, ex, batch)
    res = compute_prdc(fr, ff, k=k, chunk=chunk, device=device)
    _emit({"features": ex.name, "n_real": fr.shape[0], "n_fake": ff.shape[0], "k": k, **res}, json_out)


@metrics_app.command("is")
def is_cmd(
    folder: Path = typer.Argument(..., help="Image folder."),
    weights: Path = typer.Option(None, help="Inception weights file [default: the torch hub cache]."),
    splits: int = typer.Option(10, help="Number of splits."),
    batch: int = typer.Option(64, help="Images per batch."),
    device: str = typer.Option("cpu", help="Torch device."),
    json_out: Path = typer.Option(None, "--json", help="Also write the result as JSON here."),
):
    """Inception Score (needs the Inception weights locally)."""
    import torch

    from .. import io
    from ..metrics.features import InceptionFeatures
    from ..metrics.fid import inception_score

    ex = InceptionFeatures(weights, batch_size=batch, device=device)
    files = io.list_images(folder)
    size_hw = tuple(io.load_image(files[0], notice=None).shape[-2:])
    logits = torch.cat(
        [ex.logits(_load_batch(files[i : i + batch], size_hw)[0]) for i in range(0, len(files), batch)]
    )
    mean, std = inception_score(logits, splits=splits, logits=True)
    _emit({"n": len(files), "inception_score": mean, "inception_score_std": std}, json_out)


@metrics_app.command("masked-l1")
def masked_l1_cmd(
    dir_a: Path = typer.Argument(..., help="First image folder."),
    dir_b: Path = typer.Argument(..., help="Second image folder (paired by file name)."),
    mask_dir: Path = typer.Option(None, help="Masks (white = known) by file name [default: all known]."),
    json_out: Path = typer.Option(None, "--json", help="Also write the result (with per-image values) here."),
):
    """Mean absolute error over the known pixels, per pair, images in [-1, 1]."""
    from ..metrics.masked import masked_l1

    res = _masked_over_folders(dir_a, dir_b, mask_dir, masked_l1)
    _emit({"masked_l1": res["mean"], **res}, json_out)


@metrics_app.command("masked-lpips")
def masked_lpips_cmd(
    dir_a: Path = typer.Argument(..., help="First image folder."),
    dir_b: Path = typer.Argument(..., help="Second image folder (paired by file name)."),
    mask_dir: Path = typer.Option(None, help="Masks (white = known) by file name [default: all known]."),
    net: str = typer.Option("alex", help="alex or vgg."),
    weights: Path = typer.Option(None, help="Backbone ImageNet weights [default: the torch hub cache]."),
    json_out: Path = typer.Option(None, "--json", help="Also write the result (with per-image values) here."),
):
    """LPIPS between the known pixels of paired images (hidden pixels zeroed in both)."""
    from ..metrics.masked import masked_lpips

    def fn(a, b, m):
        return masked_lpips(a, b, m, net=net, weights=str(weights) if weights else None)

    res = _masked_over_folders(dir_a, dir_b, mask_dir, fn)
    _emit({f"masked_lpips_{net}": res["mean"], **res}, json_out)


def register(app) -> None:
    app.add_typer(metrics_app, name="metrics")
