"""How well a generator reproduces the toyfaces domain, measured by the analyzer.

- attribute marginals of samples vs renders (each value's share, over the images where the attribute is
  visible), and the largest gap per attribute in percentage points;
- the analyzer's mean confidence on samples (low when parts are malformed);
- domain FID on analyzer features, samples vs renders, next to the FID between two independent sets of
  renders (the floor that finite sample sizes give);
- with `second_view` (latentcomp.metrics.second_view), the same two FIDs in the features of a network
  of another architecture and training, a check that a ranking does not come from the analyzer alone.
"""

from __future__ import annotations

import time

import torch

from ..data.toyfaces import ATTRIBUTES, ToyFaces
from .analyzer import load_analyzer
from .fid import frechet_distance


def _marginals(attrs: torch.Tensor, visible: torch.Tensor) -> dict[str, list[float]]:
    out = {}
    for k, (name, values) in enumerate(ATTRIBUTES.items()):
        sel = attrs[visible[:, k], k]
        counts = torch.bincount(sel, minlength=len(values)).float()
        out[name] = (counts / counts.sum().clamp(min=1)).tolist()
    return out


@torch.no_grad()
def generator_quality(
    generator,
    n: int = 5000,
    seed: int = 0,
    batch: int = 250,
    analyzer=None,
    render_seed: int = 777,
    progress: bool = True,
    second_view=None,
) -> dict:
    from tqdm import tqdm

    analyzer = analyzer or load_analyzer("builtin:toyfaces-analyzer")
    gen = torch.Generator().manual_seed(seed)
    data_a, data_b = ToyFaces(64, seed=render_seed), ToyFaces(64, seed=render_seed + 1)
    feats = {"samples": [], "renders": [], "renders_b": []}
    feats2 = {"samples": [], "renders": [], "renders_b": []}
    preds = {"samples": [], "renders": []}
    t0 = time.perf_counter()
    for lo in tqdm(range(0, n, batch), disable=not progress, desc="quality"):
        m = min(batch, n - lo)
        x = generator(generator.sample_latent(m, generator=gen)).clamp(-1, 1).cpu()
        r, _, _ = data_a.render_batch(range(lo, lo + m))
        rb, _, _ = data_b.render_batch(range(lo, lo + m))
        for key, images in (("samples", x), ("renders", r)):
            out = analyzer.predict(images, logits=False)
            preds[key].append((out.attrs, out.visible, out.confidence))
            feats[key].append(analyzer.features(images))
        feats["renders_b"].append(analyzer.features(rb))
        if second_view is not None:
            for key, images in (("samples", x), ("renders", r), ("renders_b", rb)):
                feats2[key].append(second_view.features(images))
    cat = {k: [torch.cat(t) for t in zip(*v, strict=True)] for k, v in preds.items()}
    marg_s = _marginals(cat["samples"][0], cat["samples"][1])
    marg_r = _marginals(cat["renders"][0], cat["renders"][1])
    gaps = {
        name: 100 * max(abs(a - b) for a, b in zip(marg_s[name], marg_r[name], strict=True))
        for name in ATTRIBUTES
    }
    f = {k: torch.cat(v).numpy() for k, v in feats.items()}
    second = {}
    if second_view is not None:
        f2 = {k: torch.cat(v).numpy() for k, v in feats2.items()}
        second = {
            "fid2_samples_vs_renders": frechet_distance(f2["samples"], f2["renders"]),
            "fid2_renders_vs_renders": frechet_distance(f2["renders_b"], f2["renders"]),
        }
    return {
        "n": n,
        "generator": getattr(generator, "spec", ""),
        "marginal_gap_pp": gaps,
        "max_marginal_gap_pp": max(gaps.values()),
        "marginals_samples": marg_s,
        "marginals_renders": marg_r,
        "confidence_samples": cat["samples"][2].mean().item(),
        "confidence_renders": cat["renders"][2].mean().item(),
        "fid_samples_vs_renders": frechet_distance(f["samples"], f["renders"]),
        "fid_renders_vs_renders": frechet_distance(f["renders_b"], f["renders"]),
        **second,
        "seconds": round(time.perf_counter() - t0, 1),
    }
