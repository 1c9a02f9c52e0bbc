"""Independence of parts: does changing one part leave the rest of the image alone?

For pairs of generated images (A, B) and one part p, let r be the region of p in A or B (union of both
part maps, dilated by one pixel) and base = G(E(A)) the regressor's reconstruction of A. Two ways to move
A's part p towards B's, each at strengths t = 0 .. 1:

- regression:    paste B's pixels into r at opacity t (collage = A outside r, (1-t) A + t B inside), and
                 regress: G(E(collage));
- interpolation: the linear path between the two codes, G((1-t) E(A) + t E(B)), in the regressor's
                 latent space (z, w or w+).

For every output we measure
- outside change = masked L1 between output and base outside r (how much the rest of the image moved);
- inside follow  = 1 - L1_in(output, B) / L1_in(base, B) inside r, pooled over pairs (0: part unchanged,
  1: part equals B's).

Both start at (0, 0) for t = 0. "Matched strength" compares them where the part followed equally far:
at the follow value that regression reaches at t = 1, the outside change of interpolation is read off
its curve (linear interpolation in t). locality_gain = interpolation's outside change / regression's
outside change at that matched follow (> 1: regression edits are more local, the paper's claim).
median_regression_leakage = median over parts of regression's outside change / follow at t = 1, which
compares generators with each other (e.g. one latent vector against a GANsformer's k components).
For latents made of k components (a GANsformer), the share of the latent change at t = 1 that each
component carries: `top_component_share` (1 / k = spread evenly, 1 = one component carries the part) and
which component that is (the global one is the last).
Part maps: the toyfaces analyzer's predicted part maps, or k-means part maps (probe/parts.py) for
generators without labels.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from ..metrics.masked import masked_l1
from .common import Sizes, dilate, log, model_label, plt, sample_with_latents, save_fig, save_grid, write_json

MIN_FRACTION = 0.004  # a part must cover this share of the image in B to be edited
MAX_FRACTION = 0.6  # regions larger than this are not "a part"


class PartSource:
    """Part maps for generated images: analyzer (toyfaces) or k-means clusters of G's features."""

    def __init__(self, pipe, analyzer=None, sizes: Sizes | None = None, seed: int = 0):
        from .common import toyfaces_compatible

        self.pipe = pipe
        if toyfaces_compatible(pipe, analyzer):
            self.kind = "analyzer"
            self.analyzer = analyzer
            self.names = list(analyzer.part_names)
            self.model = None
        else:
            from .parts import fit_parts

            sizes = sizes or Sizes.default()
            self.kind = "kmeans"
            self.model = fit_parts(pipe.generator, k=6, n=sizes.parts_fit, seed=seed + 17, batch=sizes.batch)
            self.names = list(self.model.names)

    def __call__(self, images: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        if self.kind == "analyzer":
            return self.analyzer.predict(images, logits=False).partmap.cpu()
        return self.model.predict(self.pipe.generator, z).cpu()


def _follow_outside(out, base, target, region):
    """(outside change per pair (N,), inside distance to B per pair (N,))."""
    outside = masked_l1(out, base, 1 - region)
    inside = masked_l1(out, target, region)
    return outside, inside


@torch.no_grad()
def measure_part(pipe, A, B, region, strengths, batch: int = 50) -> dict:
    """Curves of one part over pairs A, B (N, C, H, W) with regions (N, 1, H, W)."""
    G, space = pipe.generator, pipe.space

    def gen(lat):
        return torch.cat(
            [
                G(lat[i : i + batch].to(pipe.device), space=space).clamp(-1, 1).cpu()
                for i in range(0, lat.shape[0], batch)
            ]
        )

    def enc(x):
        return torch.cat(
            [pipe.regressor(x[i : i + batch].to(pipe.device)).cpu() for i in range(0, x.shape[0], batch)]
        )

    la, lb = enc(A), enc(B)
    base = gen(la)
    _, base_in = _follow_outside(base, base, B, region)
    denom = float(base_in.mean())
    curves = {"regression": {"outside": [], "follow": []}, "interpolation": {"outside": [], "follow": []}}
    examples = {"regression": [], "interpolation": []}
    for t in strengths:
        collage = A * (1 - region) + ((1 - t) * A + t * B) * region
        lat = enc(collage)
        reg = gen(lat)
        itp = gen((1 - t) * la + t * lb)
        for name, out in (("regression", reg), ("interpolation", itp)):
            o, i = _follow_outside(out, base, B, region)
            curves[name]["outside"].append(float(o.mean()))
            curves[name]["follow"].append(1 - float(i.mean()) / denom if denom > 0 else math.nan)
            examples[name].append(out[:1])
    curves["strengths"] = list(map(float, strengths))
    curves["pairs"] = int(A.shape[0])
    curves["region_fraction"] = float(region.mean())
    curves["base_inside_distance"] = denom
    curves.update(matched(curves))
    k = int(getattr(G, "components", 0) or 0)
    if k > 1 and lat.dim() >= 3 and lat.shape[1] == k:  # latents with k components (GANsformer)
        shares = component_shares(lat, la)  # at full strength
        curves["component_share"] = shares.mean(0).tolist()
        curves["top_component"] = int(shares.mean(0).argmax())
        curves["top_component_share"] = float(shares.max(1).values.mean())
    curves["_examples"] = {
        "A": A[:1],
        "B": B[:1],
        "region": region[:1],
        "base": base[:1],
        **{k: torch.cat(v) for k, v in examples.items()},
    }
    return curves


def component_shares(new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """(N, k): the share of the latent change (N, k, ...) that each of the k components carries (L2 norm
    of each component's change, normalised to sum to 1). One part carried by one component gives a
    share near 1 for it; a change spread evenly gives 1 / k everywhere."""
    d = (new - old).flatten(2).norm(dim=2)
    return d / d.sum(1, keepdim=True).clamp_min(1e-12)


def median_leakage(parts: dict) -> float:
    """Median over parts of regression's outside change per unit of inside follow at full strength: a
    measure of one generator's compositionality under regression that needs no interpolation baseline,
    so it compares architectures (lower = the rest of the image moves less for the same part change)."""
    ratios = [
        c["regression_outside"] / c["matched_follow"]
        for c in parts.values()
        if c.get("pairs") and np.isfinite(c.get("matched_follow", math.nan)) and c["matched_follow"] > 0
    ]
    return float(np.median(ratios)) if ratios else math.nan


def matched(curves: dict) -> dict:
    """Outside change of both methods at the follow that regression reaches at full strength."""
    f_reg = curves["regression"]["follow"][-1]
    o_reg = curves["regression"]["outside"][-1]
    f_itp = np.array(curves["interpolation"]["follow"], dtype=float)
    o_itp = np.array(curves["interpolation"]["outside"], dtype=float)
    out = {"matched_follow": f_reg, "regression_outside": o_reg}
    if not np.isfinite(f_reg) or not np.isfinite(f_itp).all():
        return {**out, "interpolation_outside": math.nan, "locality_gain": math.nan, "reached": False}
    # first crossing of f_reg along t (the curve starts at follow 0)
    reached = False
    o_match = float(o_itp[-1])
    for j in range(1, len(f_itp)):
        lo, hi = f_itp[j - 1], f_itp[j]
        if (lo - f_reg) * (hi - f_reg) <= 0 and hi != lo:
            w = (f_reg - lo) / (hi - lo)
            o_match = float(o_itp[j - 1] + w * (o_itp[j] - o_itp[j - 1]))
            reached = True
            break
    gain = o_match / o_reg if o_reg > 0 else math.nan
    return {**out, "interpolation_outside": o_match, "locality_gain": gain, "reached": reached}


def run_independence(
    pipes, out: Path, analyzer=None, sizes: Sizes | None = None, seed: int = 0, parts: list[str] | None = None
) -> dict:
    """The independence experiment for every pipeline: independence.json, independence_<i>.png (curves per
    part) and independence_examples_<i>.png."""
    sizes = sizes or Sizes.default()
    out = Path(out)
    strengths = np.linspace(0, 1, max(2, sizes.strengths))
    res: dict = {"experiment": "independence", "seed": seed, "strengths": strengths.tolist(), "models": []}
    for mi, pipe in enumerate(pipes):
        label = model_label(pipe)
        src = PartSource(pipe, analyzer, sizes, seed)
        want = parts or [p for p in src.names if p != "background"]
        pool = max(4 * sizes.independence_pairs, 16)
        log(f"independence: {label}: parts from {src.kind}, {len(want)} parts, pool of {pool} pairs")
        A, za = sample_with_latents(pipe, pool, seed + 300, sizes.batch)
        B, zb = sample_with_latents(pipe, pool, seed + 400, sizes.batch)
        pa, pb = src(A, za), src(B, zb)
        entry: dict = {"model": label, "space": pipe.space, "part_source": src.kind, "parts": {}}
        ex_rows = []
        for part in want:
            p = src.names.index(part)
            ma = (pa == p).float().unsqueeze(1)
            mb = (pb == p).float().unsqueeze(1)
            region = dilate(torch.maximum(ma, mb), 1)
            frac_b, frac = mb.flatten(1).mean(1), region.flatten(1).mean(1)
            ok = (
                ((frac_b >= MIN_FRACTION) & (frac <= MAX_FRACTION))
                .nonzero()
                .flatten()[: sizes.independence_pairs]
            )
            if ok.numel() == 0:
                entry["parts"][part] = {"pairs": 0, "note": "no pair shows this part"}
                continue
            curves = measure_part(pipe, A[ok], B[ok], region[ok], strengths, sizes.batch)
            ex = curves.pop("_examples")
            entry["parts"][part] = curves
            ex_rows.append(
                torch.cat(
                    [
                        ex["A"],
                        ex["B"],
                        ex["region"].expand(-1, A.shape[1], -1, -1) * 2 - 1,
                        ex["regression"],
                        ex["interpolation"],
                    ]
                )
            )
        gains = [
            c["locality_gain"]
            for c in entry["parts"].values()
            if c.get("pairs") and c.get("locality_gain") is not None and np.isfinite(c["locality_gain"])
        ]
        entry["median_locality_gain"] = float(np.median(gains)) if gains else math.nan
        entry["parts_more_local_with_regression"] = int(sum(g > 1 for g in gains))
        entry["parts_measured"] = len(gains)
        entry["median_regression_leakage"] = median_leakage(entry["parts"])
        tops = [c for c in entry["parts"].values() if "top_component_share" in c]
        if tops:  # is each part carried by one component of a k-component latent?
            entry["components"] = int(pipe.generator.components)
            entry["median_top_component_share"] = float(np.median([c["top_component_share"] for c in tops]))
            entry["distinct_top_components"] = len({c["top_component"] for c in tops})
        entry["plot"] = plot_independence(entry, out / f"independence_{mi}.png").name
        if ex_rows:
            grid = save_grid(
                ex_rows, out / f"independence_examples_{mi}.png", scale=max(1, 64 // int(pipe.resolution))
            )
            entry["examples"] = grid.name
            entry["examples_note"] = (
                "per part (rows): A, B, region, regression at t = "
                f"{', '.join(f'{t:.2f}' for t in strengths)}, "
                "then interpolation at the same t"
            )
        res["models"].append(entry)
    write_json(out / "independence.json", res)
    return res


def plot_independence(entry: dict, path: Path) -> Path:
    parts = [p for p, c in entry["parts"].items() if c.get("pairs")]
    p = plt()
    cols = min(4, max(1, len(parts)))
    rows = max(1, math.ceil(len(parts) / cols))
    fig, axes = p.subplots(rows, cols, figsize=(3.2 * cols, 2.8 * rows), squeeze=False)
    for ax in axes.flat[len(parts) :]:
        ax.axis("off")
    for ax, part in zip(axes.flat, parts, strict=False):
        c = entry["parts"][part]
        for name, style in (("regression", "o-"), ("interpolation", "s--")):
            ax.plot(c[name]["follow"], c[name]["outside"], style, label=name, markersize=3)
        if c.get("reached"):
            ax.plot(
                [c["matched_follow"]] * 2,
                [c["regression_outside"], c["interpolation_outside"]],
                "k:",
                linewidth=1,
            )
        gain = c.get("locality_gain")
        ax.set_title(
            f"{part} (n={c['pairs']}, gain {gain:.2f})"
            if gain is not None and np.isfinite(gain)
            else f"{part} (n={c['pairs']})",
            fontsize=8,
        )
        ax.set_xlabel("inside follow (1 = part equals B's)", fontsize=7)
        ax.set_ylabel("outside change (L1)", fontsize=7)
        ax.tick_params(labelsize=6)
    if parts:
        axes.flat[0].legend(fontsize=6)
    fig.suptitle(f"Independence of parts: {entry['model']} ({entry['space']})", fontsize=9)
    fig.tight_layout()
    return save_fig(fig, path)
