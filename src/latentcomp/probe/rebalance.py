"""Rebalancing generated data by example-based composition.

A generator reproduces, and often sharpens, imbalances: toyfaces draws every glasses value equally
often, but a small GAN may make one kind of glasses most of the time. The rare values (default: those
the generator makes less often than the data has them, as read by the analyzer on samples vs the true
attributes of renders; or `rare=[...]`) get their share raised to `target_share` (default: their share
in the data). To raise the share of the rare values in a generated set, take n samples, pick
enough of those without it, paste the attribute's part (e.g. the glasses region, dilated by a pixel)
from an example that has it, and regress the collage: G(E(collage)) (`Pipeline.edit`). Examples come from
other generator samples the analyzer reads as rare (or, where the generator makes too few, from toyfaces
renders with their true part maps).

Reported per generator: the share of the rare values (read by the analyzer) before and after; the
success rate of the edits (edited images read as rare); the realism of the whole set before and after
(FID / KID / density / coverage of analyzer features against toyfaces renders) for regression and for
plain pasting (the raw collage); and, where the sample pool holds enough rare samples, "selection": the
same set with the edited images replaced by real rare samples, the realism an ideal method would keep.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from ..errors import LatentcompError
from .common import (
    Sizes,
    dilate,
    log,
    model_label,
    plt,
    realism,
    renders,
    sample_with_latents,
    save_fig,
    save_grid,
    toyfaces_compatible,
    write_json,
)

MIN_PART_FRACTION = 0.003


def _rare_values(
    values: list[str], counts: np.ndarray, data_counts: np.ndarray, rare: list[str] | None
) -> list[int]:
    """The given values, else those the generator under-represents against the data (toyfaces renders),
    else all but the most common."""
    if rare:
        bad = [v for v in rare if v not in values]
        if bad:
            raise LatentcompError(f"unknown value(s) {', '.join(bad)}; accepted: {', '.join(values)}")
        return [values.index(v) for v in rare]
    share = counts / max(1, counts.sum())
    data_share = data_counts / max(1, data_counts.sum())
    under = [i for i in range(len(values)) if share[i] < data_share[i]]
    if under and len(under) < len(values):
        return under
    major = int(np.argmax(counts))
    return [i for i in range(len(values)) if i != major]


def run_rebalance(
    pipes,
    out: Path,
    analyzer=None,
    sizes: Sizes | None = None,
    seed: int = 0,
    attribute: str = "glasses",
    rare: list[str] | None = None,
    target_share: float | None = None,
) -> dict:
    """The rebalancing experiment: rebalance.json, rebalance.png, rebalance_examples_<i>.png."""
    from ..metrics.features import analyzer_features

    sizes = sizes or Sizes.default()
    out = Path(out)
    if target_share is not None and not 0 < target_share < 1:
        raise LatentcompError(f"target share must be between 0 and 1; got {target_share}")
    res: dict = {
        "experiment": "rebalance",
        "seed": seed,
        "attribute": attribute,
        "target_share": target_share,
        "models": [],
    }
    for mi, pipe in enumerate(pipes):
        label = model_label(pipe)
        if not toyfaces_compatible(pipe, analyzer):
            res["models"].append(
                {"model": label, "skipped": "needs the toyfaces analyzer to read attributes"}
            )
            continue
        names = list(analyzer.attribute_names)
        if attribute not in names:
            raise LatentcompError(f"unknown attribute {attribute!r}; accepted: {', '.join(names)}")
        col = names.index(attribute)
        values = list(analyzer.attribute_values[attribute])
        part_id = list(analyzer.part_names).index(analyzer.attribute_part.get(attribute, attribute))
        n = sizes.rebalance_n
        X, _ = sample_with_latents(pipe, n, seed + 500, sizes.batch)
        pred_x = analyzer.predict(X, logits=False)
        counts = np.bincount(pred_x.attrs[:, col].cpu().numpy(), minlength=len(values))
        ref_imgs, _, rattr_ref = renders(pipe.resolution, sizes.reference_n, seed)
        data_counts = np.bincount(rattr_ref[:, col].numpy(), minlength=len(values))
        rare_ids = _rare_values(values, counts, data_counts, rare)
        is_rare = torch.isin(pred_x.attrs[:, col].cpu(), torch.tensor(rare_ids))
        share_before = float(is_rare.float().mean())
        # example bank: generator samples read as rare with a visible part; else renders
        P, _ = sample_with_latents(pipe, n, seed + 600, sizes.batch)
        pred_p = analyzer.predict(P, logits=False)
        pm_p = pred_p.partmap.cpu()
        ok_p = torch.isin(pred_p.attrs[:, col].cpu(), torch.tensor(rare_ids)) & (
            (pm_p == part_id).float().flatten(1).mean(1) >= MIN_PART_FRACTION
        )
        bank_src = "generator samples"
        bank_imgs, bank_pm = P[ok_p], pm_p[ok_p]
        if bank_imgs.shape[0] < 4:
            R, rpm, rattr = renders(pipe.resolution, 4 * n, seed + 7)
            okr = torch.isin(rattr[:, col], torch.tensor(rare_ids)) & (
                (rpm == part_id).float().flatten(1).mean(1) >= MIN_PART_FRACTION
            )
            bank_imgs, bank_pm, bank_src = R[okr], rpm[okr], "toyfaces renders (true part maps)"
        entry: dict = {
            "model": label,
            "n": n,
            "rare_values": [values[i] for i in rare_ids],
            "predicted_counts": dict(zip(values, counts.tolist(), strict=True)),
            "share_before": share_before,
            "examples_from": bank_src,
            "example_bank": int(bank_imgs.shape[0]),
        }
        share_data = float(torch.isin(rattr_ref[:, col], torch.tensor(rare_ids)).float().mean())
        target = min(0.95, share_data) if target_share is None else target_share
        entry["target_share"] = target
        need = int(math.ceil(target * n)) - int(is_rare.sum())
        candidates = (~is_rare).nonzero().flatten()
        m = max(0, min(need, candidates.numel()))
        entry["edited"] = m
        ex = analyzer_features(analyzer)
        f_ref = ex(ref_imgs)
        entry["share_in_renders"] = share_data
        entry["realism_before"] = realism(ex(X), f_ref)
        if m == 0 or bank_imgs.shape[0] == 0:
            entry["note"] = (
                "the share already meets the target" if m == 0 else "no example with the attribute"
            )
            res["models"].append(entry)
            log(f"rebalance: {label}: nothing to edit ({entry['note']})")
            continue
        log(
            f"rebalance: {label}: share {share_before:.3f} -> target {target:.3f}, editing {m} images "
            f"with {bank_imgs.shape[0]} examples from {bank_src}"
        )
        rng = np.random.default_rng([seed, 31])
        tgt = candidates[torch.from_numpy(rng.choice(candidates.numel(), m, replace=False))]
        exi = torch.from_numpy(rng.integers(0, bank_imgs.shape[0], size=m))
        regions = dilate((bank_pm[exi] == part_id).float().unsqueeze(1), 1)
        edited, pasted = [], []
        for i in range(0, m, sizes.batch):
            r = pipe.edit(
                X[tgt[i : i + sizes.batch]], bank_imgs[exi[i : i + sizes.batch]], regions[i : i + sizes.batch]
            )
            edited.append(r.image)
            pasted.append(r.collage)
        edited, pasted = torch.cat(edited).cpu(), torch.cat(pasted).cpu()
        sets = {}
        for name, imgs in (("regression", edited), ("paste", pasted)):
            Y = X.clone()
            Y[tgt] = imgs
            sets[name] = Y
        if ok_p.sum() >= m:  # selection: real rare samples in place of the edited ones
            Y = X.clone()
            Y[tgt] = P[ok_p][:m]
            sets["selection"] = Y
        for name, Y in sets.items():
            pred = analyzer.predict(Y, logits=False).attrs[:, col].cpu()
            rare_y = torch.isin(pred, torch.tensor(rare_ids))
            entry[name] = {
                "share_after": float(rare_y.float().mean()),
                "edit_success": float(rare_y[tgt].float().mean()),
                "realism": realism(ex(Y), f_ref),
            }
        show = min(6, m)
        rows = [
            torch.stack(
                [
                    X[tgt[i]],
                    bank_imgs[exi[i]],
                    regions[i].expand(X.shape[1], -1, -1) * 2 - 1,
                    pasted[i],
                    edited[i],
                ]
            )
            for i in range(show)
        ]
        entry["examples"] = save_grid(
            rows, out / f"rebalance_examples_{mi}.png", scale=max(1, 64 // int(pipe.resolution))
        ).name
        entry["examples_note"] = "columns: target, example, region, pasted collage, regression output"
        res["models"].append(entry)
    if any("regression" in e for e in res["models"]):
        res["plot"] = plot_rebalance(res, out / "rebalance.png").name
    write_json(out / "rebalance.json", res)
    return res


def plot_rebalance(res: dict, path: Path) -> Path:
    p = plt()
    models = [e for e in res["models"] if "regression" in e]
    fig, axes = p.subplots(1, 2, figsize=(10, 3.6))
    kinds = ["before", "regression", "paste", "selection"]
    width = 0.8 / len(kinds)
    for ki, kind in enumerate(kinds):
        shares, fids = [], []
        for e in models:
            if kind == "before":
                shares.append(e["share_before"])
                fids.append(e["realism_before"]["fid"])
            elif kind in e:
                shares.append(e[kind]["share_after"])
                fids.append(e[kind]["realism"]["fid"])
            else:
                shares.append(np.nan)
                fids.append(np.nan)
        x = np.arange(len(models)) + ki * width
        axes[0].bar(x, shares, width, label=kind)
        axes[1].bar(x, [f if f is not None else np.nan for f in fids], width, label=kind)
    for ax, title in (
        (axes[0], f"share of {res['attribute']} in {', '.join(models[0]['rare_values'])}"),
        (axes[1], "FID vs toyfaces renders (lower = more realistic)"),
    ):
        ax.set_xticks(np.arange(len(models)) + 0.4 - width / 2)
        ax.set_xticklabels([e["model"] for e in models], fontsize=7)
        ax.set_title(title, fontsize=9)
    for i, e in enumerate(models):  # dotted: each model's target share
        axes[0].hlines(e["target_share"], i - 0.1, i + 0.8, color="black", linestyle=":", linewidth=1)
    axes[0].legend(fontsize=7)
    fig.suptitle("Rebalancing generated data by example-based composition", fontsize=10)
    fig.tight_layout()
    return save_fig(fig, path)
