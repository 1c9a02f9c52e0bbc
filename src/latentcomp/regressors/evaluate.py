"""Reconstruction quality of a regressor on fresh samples of its generator (the model-card figures).

For n samples x = G(z): G(E(x)) with no mask and with the paper's masks; L1 on the known pixels and
on all pixels, a perceptual distance (LPIPS where its weights exist locally, else the L2 distance of
the toyfaces analyzer's features), and for toyfaces the analyzer's attribute agreement between x
and G(E(x, m)) (visible attributes only).
"""

from __future__ import annotations

import time

import torch

from ..masks import noise_masks


@torch.no_grad()
def evaluate_regressor(
    regressor,
    generator=None,
    n: int = 1000,
    seed: int = 123,
    batch: int = 20,  # the paper draws one mask cutoff per batch: several batches, several cutoffs
    analyzer=None,
    progress: bool = True,
    iterations: int | None = None,
) -> dict:
    """Figures for n fresh samples; `iterations`: passes of an iterative regressor (None = its default)."""
    from tqdm import tqdm

    G = generator or regressor.load_generator()
    iterative = bool(getattr(regressor, "iterative", False))
    if iterative:
        regressor.bind_generator(G)
    passes = regressor.check_iterations(iterations) if hasattr(regressor, "check_iterations") else 1
    kw = {"iterations": passes} if iterative else {}
    res = G.resolution
    gen = torch.Generator().manual_seed(seed)
    use_analyzer = analyzer is not None
    sums: dict[str, float] = {}
    count = 0
    t_enc = 0.0

    def add(key, value):
        sums[key] = sums.get(key, 0.0) + float(value)

    for lo in tqdm(range(0, n, batch), disable=not progress, desc="evaluate regressor"):
        m = min(batch, n - lo)
        x = G(G.sample_latent(m, generator=gen)).clamp(-1, 1)
        masks = {"unmasked": torch.ones(m, 1, res, res), "masked": noise_masks(m, res, generator=gen)}
        for name, mask in masks.items():
            mask = mask.to(x.device)
            t0 = time.perf_counter()
            y = G(regressor(x, mask, **kw), space=regressor.space).clamp(-1, 1)
            t_enc += time.perf_counter() - t0
            err = (y - x).abs().mean(1, keepdim=True)
            add(f"{name}/l1_all", err.mean((1, 2, 3)).sum())
            known = (err * mask).sum((1, 2, 3)) / mask.sum((1, 2, 3)).clamp(min=1)
            add(f"{name}/l1_known", known.sum())
            add(f"{name}/known_fraction", mask.mean((1, 2, 3)).sum())
            if use_analyzer:
                fx, fy = analyzer.features(x), analyzer.features(y)
                add(f"{name}/analyzer_feature_distance", (fx - fy).norm(dim=1).sum())
                px, py = analyzer.predict(x, logits=False), analyzer.predict(y, logits=False)
                vis = px.visible
                agree = ((px.attrs == py.attrs) & vis).float().sum(1) / vis.float().sum(1).clamp(min=1)
                add(f"{name}/attribute_agreement", agree.sum())
        count += m
    out = {k: v / count for k, v in sums.items()}
    out.update(n=n, seed=seed, seconds_per_image_E_plus_G=t_enc / (2 * n), regressor_passes=passes)
    return out
