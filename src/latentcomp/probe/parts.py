"""Unsupervised part discovery for any generator: k-means on its intermediate features.

For samples z, the activation of a layer `G.features(z, layer)` (N, C, h, w) is standardised per
channel (statistics over the fitting samples) and L2-normalised per pixel, so that a pixel is described
by the direction of its feature vector, then clustered with k-means (torch, k-means++ seeding, the best
of 2 seeded runs) on a random subset of pixels. A sample's part map is the nearest centre of each pixel
of its features, upsampled bilinearly to the image size: (N, H, W) with values in 0..k-1. Several
layers can be combined (each upsampled to the largest of them, then concatenated).

On toyfaces the part maps are scored against the analyzer's part maps of the same generated images
(the ground truth of a *generated* image is what the analyzer reads in it): confusion matrix of
clusters x parts over held-out samples, clusters matched one-to-one to parts with the Hungarian
algorithm (scipy.optimize.linear_sum_assignment, maximising overlap), then mIoU over the parts present;
also a many-to-one score (each cluster labelled with the part it overlaps most), which is an upper
bound when k exceeds the number of parts. Clusters left unmatched count as wrong for every part.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import LatentcompError
from .common import log, partmap_to_image, plt, sample_with_latents, save_fig, save_grid, write_json

MAX_FIT_PIXELS = 60_000


def candidate_layers(G, space: str = "z") -> dict[str, tuple[int, int]]:
    """Layers with a spatial feature map between 8 px and half the image size, and more than 3 channels:
    name -> (channels, size)."""
    z = G.sample_latent(1, generator=torch.Generator().manual_seed(0))
    out = {}
    with torch.no_grad():
        for name in G.feature_layers():
            try:
                f = G.features(z, name, space="z")
            except (LatentcompError, RuntimeError, TypeError):
                continue
            if not isinstance(f, torch.Tensor) or f.dim() != 4 or f.shape[1] <= 3:
                continue
            if 8 <= f.shape[-1] <= max(8, G.resolution // 2):
                out[name] = (int(f.shape[1]), int(f.shape[-1]))
    return out


def default_layer(cands: dict[str, tuple[int, int]], resolution: int) -> str:
    """The last candidate whose size is closest to a quarter of the image size."""
    if not cands:
        raise LatentcompError(
            "the generator offers no spatial feature layer of 8 px or more for part discovery"
        )
    target = resolution / 4
    best = min(abs(math.log2(s / target)) for _, s in cands.values())
    return [n for n, (_, s) in cands.items() if abs(math.log2(s / target)) == best][-1]


@dataclass
class PartModel:
    """k-means centres on standardised, normalised features of `layers`."""

    layers: list[str]
    k: int
    centers: torch.Tensor  # (k, D)
    mean: torch.Tensor  # (D,)
    std: torch.Tensor  # (D,)
    size: int  # working feature size (the largest layer's)
    space: str = "z"
    inertia: float = math.nan
    seconds: float = 0.0
    names: list[str] = field(default_factory=list)

    @torch.no_grad()
    def _features(self, G, latents: torch.Tensor) -> torch.Tensor:
        """(N, D, size, size): concatenated standardised+normalised layer features (before fit stats: raw)."""
        fs = []
        for layer in self.layers:
            f = G.features(latents.to(G.device), layer, space=self.space).float()
            if f.shape[-1] != self.size:
                f = F.interpolate(f, size=(self.size, self.size), mode="bilinear", align_corners=False)
            fs.append(f.cpu())
        return torch.cat(fs, 1)

    def _normalise(self, f: torch.Tensor) -> torch.Tensor:
        f = (f - self.mean.view(1, -1, 1, 1)) / self.std.view(1, -1, 1, 1)
        return F.normalize(f, dim=1)

    @torch.no_grad()
    def predict(self, G, latents: torch.Tensor, out_size: int | None = None, batch: int = 32) -> torch.Tensor:
        """Part maps (N, out_size, out_size) long in 0..k-1 (default: the image size)."""
        out_size = out_size or int(G.resolution)
        maps = []
        for i in range(0, latents.shape[0], batch):
            f = self._features(G, latents[i : i + batch])
            f = F.interpolate(f, size=(out_size, out_size), mode="bilinear", align_corners=False)
            f = self._normalise(f)
            n, d, h, w = f.shape
            flat = f.permute(0, 2, 3, 1).reshape(-1, d)
            lab = torch.cdist(flat, self.centers).argmin(1)
            maps.append(lab.view(n, h, w))
        return torch.cat(maps)


def kmeans(
    x: torch.Tensor, k: int, seed: int = 0, iters: int = 50, n_init: int = 2, tol: float = 1e-5
) -> tuple[torch.Tensor, float]:
    """Lloyd's k-means with k-means++ seeding in torch (deterministic for the seed): (centres (k, D),
    inertia = sum of squared distances to the nearest centre). The best of `n_init` runs."""
    x = x.float()
    n = x.shape[0]
    if n < k:
        raise LatentcompError(f"k-means with k = {k} needs at least {k} points; got {n}")
    g = torch.Generator().manual_seed(int(seed))
    best_c, best_inertia = None, math.inf
    for _ in range(max(1, n_init)):
        c = x[torch.randint(n, (1,), generator=g)]
        d2 = torch.cdist(x, c).pow(2).squeeze(1)
        for _ in range(1, k):  # k-means++: next centre with probability ~ squared distance
            probs = d2 / d2.sum() if d2.sum() > 0 else torch.full_like(d2, 1.0 / n)
            nxt = x[torch.multinomial(probs, 1, generator=g)]
            c = torch.cat([c, nxt])
            d2 = torch.minimum(d2, torch.cdist(x, nxt).pow(2).squeeze(1))
        prev = math.inf
        for _ in range(iters):
            dist = torch.cdist(x, c)
            lab = dist.argmin(1)
            inertia = float(dist.gather(1, lab[:, None]).pow(2).sum())
            sums = torch.zeros_like(c).index_add_(0, lab, x)
            counts = torch.bincount(lab, minlength=k).float()
            empty = counts == 0
            c = torch.where(empty[:, None], c, sums / counts.clamp(min=1)[:, None])
            if prev - inertia <= tol * max(prev, 1e-12):
                break
            prev = inertia
        inertia = float(torch.cdist(x, c).min(1).values.pow(2).sum())
        if inertia < best_inertia:
            best_c, best_inertia = c.clone(), inertia
    return best_c, best_inertia


def fit_parts(
    G,
    k: int = 8,
    n: int = 200,
    layers: list[str] | None = None,
    seed: int = 0,
    batch: int = 32,
    space: str = "z",
) -> PartModel:
    """Cluster the features of n samples of G into k parts (module doc)."""
    t0 = time.perf_counter()
    if k < 2:
        raise LatentcompError(f"part discovery needs k >= 2 clusters; got {k}")
    cands = candidate_layers(G)
    if not layers:
        layers = [default_layer(cands, int(G.resolution))]
    unknown = [lay for lay in layers if lay not in G.feature_layers()]
    if unknown:
        raise LatentcompError(
            f"unknown feature layer(s) {', '.join(unknown)}; available: {', '.join(G.feature_layers())}"
        )
    sizes = []
    z = G.sample_latent(n, generator=torch.Generator().manual_seed(seed)).cpu()
    with torch.no_grad():
        for layer in layers:
            f = G.features(z[:1].to(G.device), layer, space="z")
            if f.dim() != 4:
                raise LatentcompError(
                    f"layer {layer} gives {tuple(f.shape)}; part discovery needs (N, C, h, w)"
                )
            sizes.append(int(f.shape[-1]))
    model = PartModel(
        layers=list(layers),
        k=k,
        centers=torch.zeros(0),
        mean=torch.zeros(0),
        std=torch.ones(0),
        size=max(sizes),
        space="z",
    )
    feats = torch.cat([model._features(G, z[i : i + batch]) for i in range(0, n, batch)])  # (n, D, s, s)
    d = feats.shape[1]
    model.mean = feats.mean((0, 2, 3))
    model.std = feats.std((0, 2, 3)).clamp(min=1e-6)
    flat = model._normalise(feats).permute(0, 2, 3, 1).reshape(-1, d)
    rng = np.random.default_rng(seed)
    if flat.shape[0] > MAX_FIT_PIXELS:
        flat = flat[torch.from_numpy(rng.choice(flat.shape[0], MAX_FIT_PIXELS, replace=False))]
    model.centers, model.inertia = kmeans(flat, k, seed=seed)
    model.seconds = time.perf_counter() - t0
    model.names = [f"cluster{i}" for i in range(k)]
    return model


def confusion(pred: torch.Tensor, true: torch.Tensor, k: int, p: int) -> np.ndarray:
    """(k, p) pixel counts of cluster i and part j."""
    idx = pred.reshape(-1).long() * p + true.reshape(-1).long()
    return torch.bincount(idx, minlength=k * p).view(k, p).double().numpy()


def match_miou(conf: np.ndarray, part_names: list[str]) -> dict:
    """Hungarian (one-to-one) and many-to-one mIoU from a cluster x part confusion matrix."""
    from scipy.optimize import linear_sum_assignment

    k, p = conf.shape
    part_total = conf.sum(0)
    present = part_total > 0
    rows, cols = linear_sum_assignment(-conf)
    hung = np.full(k, -1)
    hung[rows] = cols

    def miou_of(mapping):
        ious = {}
        for j in range(p):
            if not present[j]:
                continue
            inter = conf[mapping == j, j].sum()
            pred_total = conf[mapping == j].sum()
            union = part_total[j] + pred_total - inter
            ious[part_names[j]] = float(inter / union) if union > 0 else 0.0
        return (float(np.mean(list(ious.values()))) if ious else math.nan), ious

    m_h, per_h = miou_of(hung)
    # many-to-one: each cluster to the part with the highest IoU against it alone
    iou_single = conf / np.maximum(conf.sum(1, keepdims=True) + part_total[None, :] - conf, 1)
    many = iou_single.argmax(1)
    m_m, per_m = miou_of(many)
    return {
        "miou_hungarian": m_h,
        "per_part_hungarian": per_h,
        "miou_many_to_one": m_m,
        "per_part_many_to_one": per_m,
        "assignment": {f"cluster{i}": (part_names[int(j)] if j >= 0 else None) for i, j in enumerate(hung)},
        "pixel_accuracy_hungarian": float(
            sum(conf[i, j] for i, j in zip(rows, cols, strict=True)) / conf.sum()
        ),
    }


def evaluate_parts(G, model: PartModel, analyzer, n: int = 64, seed: int = 1, batch: int = 32) -> dict:
    """mIoU of the part maps against the analyzer's part maps on n held-out samples (Hungarian matching)."""
    z = G.sample_latent(n, generator=torch.Generator().manual_seed(seed)).cpu()
    with torch.no_grad():
        imgs = torch.cat(
            [G(z[i : i + batch].to(G.device), space="z").clamp(-1, 1).cpu() for i in range(0, n, batch)]
        )
    truth = analyzer.predict(imgs, logits=False).partmap.cpu()
    pred = model.predict(G, z, out_size=truth.shape[-1], batch=batch)
    conf = confusion(pred, truth, model.k, len(analyzer.part_names))
    res = match_miou(conf, list(analyzer.part_names))
    res["n_eval"] = n
    res["_images"], res["_pred"], res["_truth"] = imgs, pred, truth
    return res


def run_parts(
    pipes,
    out: Path,
    analyzer=None,
    sizes=None,
    seed: int = 0,
    k: int | None = None,
    layers: list[str] | None = None,
    all_layers: bool = True,
) -> dict:
    """The `parts` experiment for each pipeline: fit k-means part maps on the default layer (or `layers`),
    score them (toyfaces), and with `all_layers` also score each candidate layer alone. Writes
    parts.json, parts_<i>.png (samples / clusters / analyzer maps) and parts_layers.png."""
    from .common import Sizes, model_label, toyfaces_compatible

    sizes = sizes or Sizes.default()
    out = Path(out)
    results = {"experiment": "parts", "seed": seed, "models": []}
    layer_curves = []
    for mi, pipe in enumerate(pipes):
        G = pipe.generator
        label = model_label(pipe)
        scored = toyfaces_compatible(pipe, analyzer)
        kk = k or (len(analyzer.part_names) if scored else 8)
        cands = candidate_layers(G)
        chosen = layers or [default_layer(cands, int(G.resolution))]
        log(f"parts: {label}: k-means k={kk} on {', '.join(chosen)} ({sizes.parts_fit} samples)")
        model = fit_parts(G, k=kk, n=sizes.parts_fit, layers=chosen, seed=seed, batch=sizes.batch)
        entry: dict = {
            "model": label,
            "layers": chosen,
            "k": kk,
            "fit_samples": sizes.parts_fit,
            "fit_seconds": model.seconds,
            "candidate_layers": {n: list(v) for n, v in cands.items()},
        }
        if scored:
            ev = evaluate_parts(G, model, analyzer, n=sizes.parts_eval, seed=seed + 1, batch=sizes.batch)
            imgs, pred, truth = ev.pop("_images"), ev.pop("_pred"), ev.pop("_truth")
            entry.update(ev)
            per_layer = {}
            if all_layers:
                for name in cands:
                    if [name] == chosen:
                        per_layer[name] = ev["miou_hungarian"]
                        continue
                    m1 = fit_parts(G, k=kk, n=sizes.parts_fit, layers=[name], seed=seed, batch=sizes.batch)
                    e1 = evaluate_parts(G, m1, analyzer, n=sizes.parts_eval, seed=seed + 1, batch=sizes.batch)
                    per_layer[name] = e1["miou_hungarian"]
                entry["miou_per_layer"] = per_layer
                layer_curves.append((label, per_layer, cands))
            show = min(8, imgs.shape[0])
            rows = [imgs[:show], partmap_to_image(pred[:show], kk), partmap_to_image(truth[:show], kk)]
            entry["note"] = "rows: samples, discovered parts (cluster colours), analyzer part maps"
        else:
            imgs, z = sample_with_latents(pipe, 8, seed + 1)
            pred = model.predict(G, z)
            rows = [imgs, partmap_to_image(pred, kk)]
            entry["note"] = "no toyfaces analyzer for this generator: part maps shown, not scored"
        grid = save_grid(rows, out / f"parts_{mi}.png", scale=max(1, 96 // int(G.resolution)))
        entry["grid"] = grid.name
        results["models"].append(entry)
    if layer_curves:
        fig, ax = plt().subplots(figsize=(6, 3.5))
        for label, per_layer, cands in layer_curves:
            names = list(per_layer)
            ax.plot(range(len(names)), [per_layer[n] for n in names], marker="o", label=label)
            for i, n in enumerate(names):
                ax.annotate(
                    f"{n}\n{cands[n][1]}px",
                    (i, per_layer[n]),
                    fontsize=6,
                    ha="center",
                    xytext=(0, 6),
                    textcoords="offset points",
                )
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("feature layer (shallow to deep)")
        ax.set_ylabel("mIoU vs analyzer parts (Hungarian)")
        ax.set_title("Unsupervised parts: k-means per layer")
        ax.legend(fontsize=7)
        save_fig(fig, out / "parts_layers.png")
        results["plot"] = "parts_layers.png"
    write_json(out / "parts.json", results)
    return results
