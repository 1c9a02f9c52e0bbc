"""How well do directions edit one attribute and leave the others alone? (`latentcomp directions evaluate`)

On toyfaces, the analyzer reads every image, so everything is measured without human labels:

1. label `n_train` samples of G; fit one supervised direction per attribute target (one-vs-rest, or
   glasses none vs any) and its conditional version (the other targets' directions projected out);
2. on `n_eval` fresh samples whose attribute is not yet the target: move by `strength` (in standard
   deviations of the latents along the direction), read the edited images. **Flip rate** = fraction that
   now show the target; **others unchanged** = per other attribute, the fraction whose reading did not
   change (counted where the attribute is visible before and after), averaged, and the fraction of samples
   whose every other attribute stayed;
3. the same for the best-matching unsupervised direction (PCA / SeFa, either sign) per target, chosen by
   its flip rate on a separate selection set (part of the training samples), also with conditioning;
4. side by side with edit by example (`Pipeline.edit`: paste the part of an example image that has the
   target, regress the collage) on the same toyfaces renders, both through the regressor: success rate
   and **change outside the edited part** (mean absolute pixel change against the reconstruction G(E(x)),
   outside the attribute's parts in the analyzer's part maps of the reconstruction and of the output,
   dilated by 2 px), with navigation read at the strength where its success rate equals edit by example's
   (interpolated along a strength sweep).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import LatentcompError
from .directions import (
    Direction,
    LabelledSamples,
    _predict,
    attribute_directions,
    conditioned,
    default_space,
    default_targets,
    generate,
    label_samples,
    parse_target,
    pca_directions,
    projection_std,
    sample_latents,
    sefa_directions,
)
from .edit import edit_strip, move
from .geometry import (
    achieved,
    closed_form_directions,
    evaluate_geometry,
    face_geometry,
    geometry_markdown,
    steer_directions,
)

#: geometric quantities reported for every direction's edit (`face_moved`)
MOVED = ("shift_x", "shift_y", "zoom", "rotate")


def _has_face_parts(analyzer) -> bool:
    names = getattr(analyzer, "part_names", None) or []
    return "eyes" in names and "skin" in names


def face_moved(before: dict, after: dict) -> dict:
    """Mean absolute change of the face's position (fractions of the image), size (log2) and angle
    (degrees) between two `face_geometry` readings of the same images."""
    out = {}
    for k in MOVED:
        v = achieved(k, before, after).abs()
        v = v[~torch.isnan(v)]
        out[k] = float(v.mean()) if v.numel() else math.nan
    return out


@dataclass
class EvalSizes:
    """How much work `evaluate_navigation` does (defaults: a few minutes per toyfaces model, 2 CPU cores)."""

    n_train: int = 400  # labelled samples for the boundaries
    n_eval: int = 64  # fresh samples per direction edit
    n_select: int = 32  # samples (from the training set) that pick the best unsupervised direction
    unsupervised_k: int = 5  # PCA and SeFa components considered (each in both signs)
    n_compare: int = 48  # toyfaces renders for the side-by-side with edit by example
    compare_strengths: tuple[float, ...] = (1.0, 2.0, 3.0, 5.0)
    strip_samples: int = 3
    strip_strengths: tuple[float, ...] = (-4.0, -2.0, 0.0, 2.0, 4.0)
    batch: int = 64
    jacobian_n: int = 8  # latents the Jacobian directions average over (method jacobian)
    discovery_steps: int = 1000  # training steps of the unsupervised discovery (method unsupervised)

    @classmethod
    def quick(cls) -> EvalSizes:
        return cls(
            n_train=48,
            n_eval=12,
            n_select=8,
            unsupervised_k=2,
            n_compare=6,
            compare_strengths=(2.0, 4.0),
            strip_samples=2,
            strip_strengths=(-3.0, 0.0, 3.0),
            batch=16,
            jacobian_n=1,
            discovery_steps=20,
        )


def _log(log: Callable[[str], None] | None, msg: str) -> None:
    if log is not None:
        log(msg)


def _attr_info(analyzer) -> tuple[dict[str, list[str]], list[str]]:
    values = getattr(analyzer, "attribute_values", None)
    if not values:
        raise LatentcompError("the classifier must expose attribute_values (attribute name -> value names)")
    values = {k: list(v) for k, v in values.items()}
    return values, list(values)


# --------------------------------------------------------------------------------------- flip metrics
def flip_metrics(
    before: tuple[torch.Tensor, torch.Tensor],
    after: tuple[torch.Tensor, torch.Tensor],
    attr_index: int,
    target_ids: Sequence[int],
    names: Sequence[str],
) -> dict:
    """Metrics of one edit on samples that did not show the target before.

    before/after: (attrs (N, n_attr), visible (N, n_attr)). Returns flip_rate, others_unchanged (mean over
    the other attributes of the fraction unchanged), others_unchanged_count (the same times the number of
    other attributes), all_others_unchanged (fraction of samples), per_attribute, worst_other."""
    a0, v0 = before
    a1, v1 = after
    tid = torch.tensor(list(target_ids))
    hit = torch.isin(a1[:, attr_index], tid) & v1[:, attr_index]
    others = [j for j in range(len(names)) if j != attr_index]
    per: dict[str, float] = {}
    all_same = torch.ones(a0.shape[0], dtype=torch.bool)
    for j in others:
        counted = v0[:, j] & v1[:, j]
        same = a0[:, j] == a1[:, j]
        all_same &= same | ~counted
        per[names[j]] = float(same[counted].float().mean()) if counted.any() else math.nan
    vals = [v for v in per.values() if not math.isnan(v)]
    mean_same = float(np.mean(vals)) if vals else math.nan
    # the same, only over the samples that flipped: interference of the successful edits
    flipped = []
    for j in others:
        counted = v0[:, j] & v1[:, j] & hit
        if counted.any():
            flipped.append(float((a0[:, j] == a1[:, j])[counted].float().mean()))
    worst = min((v, k) for k, v in per.items() if not math.isnan(v)) if vals else (math.nan, "")
    return {
        "n": int(a0.shape[0]),
        "flip_rate": float(hit.float().mean()) if a0.shape[0] else math.nan,
        "others_unchanged": mean_same,
        "others_unchanged_count": mean_same * len(others) if vals else math.nan,
        "n_others": len(others),
        "all_others_unchanged": float(all_same.float().mean()) if a0.shape[0] else math.nan,
        "others_unchanged_when_flipped": float(np.mean(flipped)) if flipped else math.nan,
        "worst_other": worst[1],
        "worst_other_unchanged": worst[0],
        "per_attribute": per,
    }


@torch.no_grad()
def _edit_and_read(
    G,
    analyzer,
    latents: torch.Tensor,
    lat_space: str,
    d: Direction,
    strength: float,
    batch: int,
    partmap: bool = False,
):
    """Move flattened latents (N, D) in lat_space ('z' or 'w') along d, generate, read."""
    outs, imgs = [], []
    for i in range(0, latents.shape[0], batch):
        lat = latents[i : i + batch].to(G.device)
        if lat_space == "z":
            lat = lat.reshape(-1, *G.latent_shape)
        moved, sp = move(G, lat, lat_space, d, strength)
        x = G(moved, space=sp).clamp(-1, 1).cpu()
        imgs.append(x)
        outs.append(_predict(analyzer, x, partmap=partmap))
    res = tuple(torch.cat([o[k] for o in outs]) for k in range(len(outs[0])))
    return res, torch.cat(imgs)


def _eligible(attrs: torch.Tensor, visible: torch.Tensor, j: int, ids: Sequence[int]) -> torch.Tensor:
    return visible[:, j] & ~torch.isin(attrs[:, j], torch.tensor(list(ids)))


# --------------------------------------------------------------------------------------- main evaluation
UNSUPERVISED_METHODS = ("pca", "sefa", "jacobian", "unsupervised")


def unsupervised_candidates(G, method: str, sizes: EvalSizes, space: str, seed: int) -> list[Direction]:
    """`sizes.unsupervised_k` directions of one unsupervised method (the evaluation's sizes)."""
    k = sizes.unsupervised_k
    if method == "pca":
        return pca_directions(G, k=k, n=min(2000, max(sizes.n_train, 500)), space=space, seed=seed)
    if method == "sefa":
        return sefa_directions(G, k=k, space=space, seed=seed)
    if method == "jacobian":
        from .jacobian import jacobian_directions

        return jacobian_directions(G, k=k, space=space, n=sizes.jacobian_n, seed=seed)
    if method == "unsupervised":
        from .discovery import discover_directions

        return discover_directions(G, k=k, space=space, steps=sizes.discovery_steps, seed=seed)
    raise LatentcompError(
        f"unknown unsupervised method {method!r}; accepted: {', '.join(UNSUPERVISED_METHODS)}"
    )


def evaluate_navigation(
    pipe,
    analyzer,
    strength: float = 3.0,
    sizes: EvalSizes | None = None,
    targets: Sequence[str] | None = None,
    space: str | None = None,
    boundary: str = "svm",
    seed: int = 0,
    compare: bool = True,
    log: Callable[[str], None] | None = None,
    geometry: bool = False,
    geometry_steps: int = 100,
    unsupervised_methods: Sequence[str] = ("pca", "sefa"),
) -> dict:
    """Run the whole evaluation for one model (a Pipeline: generator + regressor). Returns a JSON-ready
    dict; tensors for figures are under keys starting with `_` (`_strips`, `_directions`).

    With a part-map analyzer (toyfaces) every direction's row also gets `face_moved`: how far the edit
    moves, scales and turns the face (mean absolute change; `geometry.face_geometry`). With `geometry`,
    zoom / shift / rotate / brightness walks (closed form and steerability, `geometry_steps` Adam steps)
    are computed and measured against the same ground truth (`res["geometry"]`).

    `unsupervised_methods` (of UNSUPERVISED_METHODS): the unsupervised directions that compete for the
    best match per target; with more than one, `res["unsupervised_by_method"]` also has each method's own
    best matches (mean flip rate and others unchanged over the targets)."""
    sizes = sizes or EvalSizes()
    t_start = time.perf_counter()
    G = pipe.generator
    values, names = _attr_info(analyzer)
    space = space or default_space(G)
    lat_space = "z" if space == "z" else "w"
    targets = list(targets) if targets else default_targets(values)

    # 1. labelled samples and supervised directions
    t0 = time.perf_counter()
    train = label_samples(G, analyzer, sizes.n_train, seed=seed, space=space, batch=sizes.batch)
    sup = attribute_directions(train, values, targets, method=boundary, generator=G.spec, seed=seed)
    cond = {d.name: conditioned(d, [c for c in sup if c.name != d.name], train.latents) for d in sup}
    _log(
        log,
        f"  {len(sup)} supervised directions from {sizes.n_train} labelled samples "
        f"({time.perf_counter() - t0:.0f} s)",
    )

    # 2. fresh evaluation samples
    _, ev_lat = sample_latents(G, sizes.n_eval, seed + 1, lat_space)
    ev_img = generate(G, ev_lat, lat_space, sizes.batch)
    geo_ok = _has_face_parts(analyzer)
    if geo_ok:
        *ev_read, ev_pm = _predict(analyzer, ev_img, partmap=True)
        ev_read = tuple(ev_read)
        ev_geom = face_geometry(ev_pm, ev_img, analyzer.part_names)
    else:
        ev_read = _predict(analyzer, ev_img)

    def table_row(d: Direction) -> dict:
        attr, ids, _ = parse_target(f"{d.meta['attribute']}={d.meta['target']}", values)
        j = names.index(attr)
        keep = _eligible(*ev_read, j, ids)
        if not keep.any():
            return {"n": 0, "flip_rate": math.nan, "others_unchanged": math.nan}
        after, imgs = _edit_and_read(
            G, analyzer, ev_lat[keep], lat_space, d, strength, sizes.batch, partmap=geo_ok
        )
        row = flip_metrics((ev_read[0][keep], ev_read[1][keep]), after[:2], j, ids, names)
        if geo_ok:
            before_g = {k: v[keep] for k, v in ev_geom.items()}
            row["face_moved"] = face_moved(before_g, face_geometry(after[2], imgs, analyzer.part_names))
        return row

    # control: a random direction of the same strength (what any move of that size does)
    gr = torch.Generator().manual_seed(int(seed) + 31)
    rnd = Direction(
        "random", torch.randn(train.latents.shape[1], generator=gr), space, generator=G.spec, method="random"
    )
    rnd.std = projection_std(train.latents, rnd.vector)
    rnd_after, _ = _edit_and_read(G, analyzer, ev_lat, lat_space, rnd, strength, sizes.batch)
    random_rows = {}
    for d in sup:
        attr, ids, _ = parse_target(f"{d.meta['attribute']}={d.meta['target']}", values)
        j = names.index(attr)
        keep = _eligible(*ev_read, j, ids)
        if keep.any():
            random_rows[d.name] = flip_metrics(
                (ev_read[0][keep], ev_read[1][keep]), (rnd_after[0][keep], rnd_after[1][keep]), j, ids, names
            )

    t0 = time.perf_counter()
    supervised = {}
    for d in sup:
        supervised[d.name] = {
            "attribute": d.meta["attribute"],
            "target": d.meta["target"],
            "boundary_accuracy": d.meta.get("balanced_accuracy"),
            "positives": d.meta.get("positives"),
            "cosine_cond_vs_plain": cond[d.name].meta.get("cosine_to_unconditioned"),
            "plain": table_row(d),
            "conditional": table_row(cond[d.name]),
        }
    _log(log, f"  supervised flip table ({time.perf_counter() - t0:.0f} s)")

    # 3. unsupervised candidates, best match per target on a selection set
    t0 = time.perf_counter()
    cands: list[Direction] = []
    for method in unsupervised_methods:
        try:
            found = unsupervised_candidates(G, method, sizes, space, seed)
        except LatentcompError as e:
            _log(log, f"  {method}: {e}")
            continue
        for d in found:
            cands += [d, d.negated(f"-{d.name}")]
    unsupervised: dict = {}
    by_method: dict = {}
    chosen: dict[str, Direction] = {}
    if cands:
        sel_lat = train.latents[: sizes.n_select]
        sel_read = (train.attrs[: sizes.n_select], train.visible[: sizes.n_select])
        reads = {
            c.name: _edit_and_read(G, analyzer, sel_lat, lat_space, c, strength, sizes.batch)[0]
            for c in cands
        }
        per_method_rows: dict[str, list[dict]] = {}
        for d in sup:
            attr, ids, _ = parse_target(f"{d.meta['attribute']}={d.meta['target']}", values)
            j = names.index(attr)
            keep = _eligible(*sel_read, j, ids)
            scored = []
            for c in cands:
                m = (
                    flip_metrics(
                        (sel_read[0][keep], sel_read[1][keep]),
                        (reads[c.name][0][keep], reads[c.name][1][keep]),
                        j,
                        ids,
                        names,
                    )
                    if keep.any()
                    else {"flip_rate": 0.0, "others_unchanged": 0.0}
                )
                # flip rate first; ties go to the edit that keeps more of the others
                score = (m["flip_rate"] if not math.isnan(m["flip_rate"]) else 0.0) + 1e-3 * np.nan_to_num(
                    m["others_unchanged"]
                )
                scored.append((score, c, m["flip_rate"]))
            best_score, best, best_sel = scored[0]
            for sc, c, sel in scored[1:]:
                if sc > best_score:
                    best, best_score, best_sel = c, sc, sel
            u = Direction(
                **{
                    **asdict_direction(best),
                    "meta": {**best.meta, "attribute": attr, "target": d.meta["target"]},
                }
            )
            chosen[d.name] = u
            ucond = conditioned(u, [c for c in sup if c.name != d.name], train.latents)
            unsupervised[d.name] = {
                "direction": best.name,
                "method": best.method,
                "selection_flip_rate": best_sel,
                "cosine_to_supervised": float(u.vector @ d.vector),
                "plain": table_row(u),
                "conditional": table_row(ucond),
            }
            if len(unsupervised_methods) > 1:  # each method's own best match, measured the same way
                for method in dict.fromkeys(c.method for c in cands):
                    own = max((x for x in scored if x[1].method == method), key=lambda x: x[0])[1]
                    own = Direction(
                        **{
                            **asdict_direction(own),
                            "meta": {**own.meta, "attribute": attr, "target": d.meta["target"]},
                        }
                    )
                    row = table_row(own)
                    per_method_rows.setdefault(method, []).append(row)
        keys = ("flip_rate", "others_unchanged")
        by_method = {k: {key: _mean(rows, key) for key in keys} for k, rows in per_method_rows.items()}
    _log(log, f"  unsupervised: {len(cands)} candidates ({time.perf_counter() - t0:.0f} s)")

    res = {
        "model": str(getattr(pipe, "source", "") or G.spec),
        "generator": G.spec,
        "space": space,
        "regressor_space": pipe.space,
        "strength": strength,
        "boundary": boundary,
        "seed": seed,
        "sizes": asdict(sizes),
        "targets": targets,
        "supervised": supervised,
        "unsupervised": unsupervised,
        "unsupervised_by_method": by_method,
        "random": random_rows,
        "summary": _summary(supervised, unsupervised, random_rows),
    }

    # 4. side by side with edit by example
    if compare:
        t0 = time.perf_counter()
        try:
            res["comparison"] = compare_with_example(
                pipe, analyzer, {d.name: cond[d.name] for d in sup}, sizes, seed=seed
            )
        except LatentcompError as e:
            res["comparison"] = {"skipped": str(e)}
        _log(log, f"  side by side with edit by example ({time.perf_counter() - t0:.0f} s)")

    # strips for figures (tensors, not JSON)
    s_lat = ev_lat[: sizes.strip_samples]
    if lat_space == "z":
        s_lat = s_lat.reshape(-1, *G.latent_shape)
    strips = {}
    for d in sup:
        strips[d.name] = {
            "plain": edit_strip(G, s_lat, lat_space, d, sizes.strip_strengths),
            "conditional": edit_strip(G, s_lat, lat_space, cond[d.name], sizes.strip_strengths),
        }
        if d.name in chosen:
            strips[d.name]["unsupervised"] = edit_strip(
                G, s_lat, lat_space, chosen[d.name], sizes.strip_strengths
            )
    res["_strips"] = strips
    if geometry:
        t0 = time.perf_counter()
        if not geo_ok:
            res["geometry"] = {"skipped": "the analyzer gives no toyfaces part maps"}
        else:
            walks = []
            for fn, tag in ((closed_form_directions, "closed form"), (steer_directions, "steer")):
                kw = {"steps": geometry_steps} if fn is steer_directions else {}
                try:
                    found = fn(G, space=lat_space, seed=seed, **kw)
                except LatentcompError as e:
                    _log(log, f"  {tag} walks: {e}")
                    continue
                for d in found:
                    d.name = f"{d.name} ({d.method})"
                walks += found
            res["geometry"] = evaluate_geometry(G, analyzer, walks, n=max(sizes.n_eval, 2), seed=seed)
            res["_walks"] = walks
        _log(log, f"  geometric walks ({time.perf_counter() - t0:.0f} s)")
    res["_directions"] = {
        "supervised": sup,
        "conditional": list(cond.values()),
        "unsupervised": list(chosen.values()),
    }
    res["seconds"] = time.perf_counter() - t_start
    return res


def asdict_direction(d: Direction) -> dict:
    return {
        "name": d.name,
        "vector": d.vector,
        "space": d.space,
        "generator": d.generator,
        "layers": d.layers,
        "method": d.method,
        "std": d.std,
        "meta": dict(d.meta),
    }


def _mean(rows: list[dict], key: str) -> float:
    vals = [r[key] for r in rows if r.get(key) is not None and not math.isnan(r[key])]
    return float(np.mean(vals)) if vals else math.nan


def _summary(supervised: dict, unsupervised: dict, random_rows: dict | None = None) -> dict:
    keys = (
        "flip_rate",
        "others_unchanged",
        "others_unchanged_count",
        "all_others_unchanged",
        "others_unchanged_when_flipped",
    )
    out = {}
    for label, table in (("supervised", supervised), ("unsupervised", unsupervised)):
        for kind in ("plain", "conditional"):
            rows = [r[kind] for r in table.values()]
            if rows:
                out[f"{label}_{kind}"] = {k: _mean(rows, k) for k in keys}
    if random_rows:  # the control: a random direction of the same strength
        out["random_direction"] = {k: _mean(list(random_rows.values()), k) for k in keys}
    return out


# --------------------------------------------------------------------------------------- edit by example
def _part_ids(analyzer, attr: str) -> list[int]:
    parts = list(getattr(analyzer, "part_names", []))
    try:
        from ..data.toyfaces import ATTRIBUTE_PARTS

        names = ATTRIBUTE_PARTS.get(attr)
    except ImportError:  # pragma: no cover
        names = None
    if not names:
        p = getattr(analyzer, "attribute_part", {}).get(attr)
        names = (p,) if p else ()
    return [parts.index(n) for n in names if n in parts]


def _dilate(mask: torch.Tensor, px: int) -> torch.Tensor:
    """(N, 1, H, W) {0,1} -> dilated by px pixels (square)."""
    if px <= 0:
        return mask
    return F.max_pool2d(mask.float(), 2 * px + 1, stride=1, padding=px)


def outside_change(out: torch.Tensor, ref: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """(N,) mean absolute change (channels averaged, images in [-1, 1]) over pixels where region == 0."""
    keep = 1 - region.float()
    diff = (out - ref).abs().mean(1, keepdim=True)
    return (diff * keep).flatten(1).sum(1) / keep.flatten(1).sum(1).clamp(min=1)


def _visible_overrides(analyzer, attr: str, values: dict[str, list[str]]) -> dict[str, int]:
    """Overrides that keep `attr` visible in a render (e.g. no sunglasses for an eye-colour example)."""
    rules = (getattr(analyzer, "config", None) or {}).get("hidden_when", {}) or {}
    out = {}
    for other, hiding in rules.get(attr, {}).items():
        if other in values:
            ok = [i for i, v in enumerate(values[other]) if v not in hiding]
            if ok:
                out[other] = ok[0]
    return out


@torch.no_grad()
def compare_with_example(
    pipe,
    analyzer,
    directions: dict[str, Direction],
    sizes: EvalSizes | None = None,
    seed: int = 0,
    dilate_px: int = 2,
) -> dict:
    """Navigation (through the regressor) vs edit by example on the same toyfaces renders. See module doc."""
    from ..data import toyfaces as tf

    sizes = sizes or EvalSizes()
    values, names = _attr_info(analyzer)
    if list(values) != list(tf.ATTRIBUTES) or pipe.channels != 3 or pipe.resolution not in tf.RESOLUTIONS:
        raise LatentcompError("edit-by-example comparison needs a toyfaces model and the toyfaces analyzer")
    G = pipe.generator
    n = sizes.n_compare
    ds = tf.ToyFaces(resolution=pipe.resolution, seed=5_151_000 + seed)
    x, pm_true, gt = ds.render_batch(list(range(n)))
    lat = torch.cat([pipe.invert(x[i : i + sizes.batch]).cpu() for i in range(0, n, sizes.batch)])
    recon = torch.cat([pipe.generate(lat[i : i + sizes.batch]).cpu() for i in range(0, n, sizes.batch)])
    r_attrs, r_vis, r_pm = _predict(analyzer, recon, partmap=True)
    out: dict = {
        "n_images": n,
        "dilate_px": dilate_px,
        "strengths": list(sizes.compare_strengths),
        "regressor_space": pipe.space,
        "targets": {},
    }
    for name, d in directions.items():
        attr, ids, _ = parse_target(f"{d.meta['attribute']}={d.meta['target']}", values)
        j = names.index(attr)
        pids = torch.tensor(_part_ids(analyzer, attr))
        keep = (~torch.isin(gt[:, j], torch.tensor(ids))) & _eligible(r_attrs, r_vis, j, ids)
        idx = keep.nonzero().flatten()
        if len(idx) == 0:
            out["targets"][name] = {"n": 0}
            continue
        xs, ls, rs = x[idx], lat[idx], recon[idx]
        before = (r_attrs[idx], r_vis[idx])

        def part_of(pm: torch.Tensor, ids_=pids) -> torch.Tensor:
            return torch.isin(pm, ids_).unsqueeze(1).float()

        # edit by example: the same face index of another seed, with the target value (kept visible)
        ov = {attr: ids[0], **_visible_overrides(analyzer, attr, values)}
        ex, ex_pm, _ = tf.ToyFaces(resolution=pipe.resolution, seed=6_161_000 + seed).render_batch(
            idx.tolist(), overrides=ov
        )
        region = _dilate(torch.clamp(part_of(pm_true[idx]) + part_of(ex_pm), max=1), 1)
        ex_out = torch.cat(
            [
                pipe.edit(xs[i : i + sizes.batch], ex[i : i + sizes.batch], region[i : i + sizes.batch]).image
                for i in range(0, len(idx), sizes.batch)
            ]
        )

        def score(imgs, before=before, j=j, ids=ids, pm0=r_pm[idx], rs=rs, xs=xs, part_of=part_of) -> dict:
            a1, v1, pm1 = _predict(analyzer, imgs, partmap=True)
            m = flip_metrics(before, (a1, v1), j, ids, names)
            reg = _dilate(torch.clamp(part_of(pm0) + part_of(pm1), max=1), dilate_px)
            oc = outside_change(imgs, rs, reg)
            oc_in = outside_change(imgs, xs, reg)
            return {
                "success": m["flip_rate"],
                "outside_change": float(oc.mean()),
                "outside_change_vs_input": float(oc_in.mean()),
                "others_unchanged": m["others_unchanged"],
            }

        ex_score = score(ex_out)
        curve = []
        nav_imgs = {}
        for s in sizes.compare_strengths:
            imgs = torch.cat(
                [
                    edit_strip(G, ls[i : i + sizes.batch].to(pipe.device), pipe.space, d, [s])[:, 0]
                    for i in range(0, len(idx), sizes.batch)
                ]
            )
            nav_imgs[s] = imgs
            curve.append({"strength": s, **score(imgs)})
        out["targets"][name] = {
            "n": int(len(idx)),
            "example": ex_score,
            "navigation": curve,
            "matched": match_success(curve, ex_score["success"]),
            "_images": {
                "input": xs[:2],
                "recon": rs[:2],
                "example": ex[:2],
                "edit_by_example": ex_out[:2],
                "navigation": nav_imgs[sizes.compare_strengths[-1]][:2],
            },
        }
    out["summary"] = _compare_summary(out["targets"])
    return out


def match_success(curve: list[dict], target: float) -> dict:
    """Navigation's outside change where its success equals `target`, by linear interpolation along the
    strength sweep (strength 0 = success 0, change 0). `reached` False: the sweep never gets there (the
    largest strength's numbers are returned)."""
    pts = [{"strength": 0.0, "success": 0.0, "outside_change": 0.0, "others_unchanged": 1.0}] + [
        {k: c[k] for k in ("strength", "success", "outside_change", "others_unchanged")} for c in curve
    ]
    if target is None or math.isnan(target):
        return {"reached": False, **pts[-1]}
    if target <= 0:
        return {"reached": True, **pts[0]}
    for a, b in zip(pts, pts[1:], strict=False):
        if b["success"] >= target:
            if b["success"] == a["success"]:
                t = 1.0
            else:
                t = min(max((target - a["success"]) / (b["success"] - a["success"]), 0.0), 1.0)
            return {"reached": True, **{k: a[k] + t * (b[k] - a[k]) for k in a}}
    return {"reached": False, **pts[-1]}


def more_local(t: dict) -> str:
    """'navigation' | 'example' | 'n/a' (no image, edit by example never succeeded, or navigation never
    reached its success rate: then there is no equal-success point to compare at)."""
    if not t.get("n") or not t["example"]["success"] or not t["matched"]["reached"]:
        return "n/a"
    return "navigation" if t["matched"]["outside_change"] < t["example"]["outside_change"] else "example"


def _compare_summary(targets: dict) -> dict:
    rows = [t for t in targets.values() if t.get("n")]
    comparable = [t for t in rows if more_local(t) != "n/a"]
    if not comparable:
        return {"targets": len(rows), "comparable": 0}
    return {
        "targets": len(rows),
        "comparable": len(comparable),
        "navigation_more_local": sum(1 for t in comparable if more_local(t) == "navigation"),
        "example_success": _mean([t["example"] for t in comparable], "success"),
        "example_outside_change": _mean([t["example"] for t in comparable], "outside_change"),
        "navigation_matched_outside_change": _mean([t["matched"] for t in comparable], "outside_change"),
        "navigation_reached": sum(1 for t in rows if t["matched"]["reached"] and t["example"]["success"]),
        "example_nonzero": sum(1 for t in rows if t["example"]["success"]),
    }


# --------------------------------------------------------------------------------------- reporting
def _f(v, pct: bool = True) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{100 * v:.0f}%" if pct else f"{v:.3f}"


def markdown_tables(res: dict) -> str:
    """Markdown: the supervised table, the unsupervised table, the summary and the side-by-side."""
    s = res["strength"]
    lines = [f"### {res['model']} (directions in {res['space']}, strength {s:g} std)", ""]
    lines += [
        f"Supervised directions: flip rate of the target at strength {s:g} and other attributes unchanged "
        "(mean fraction, and number of the others), without / with conditional manipulation.",
        "",
        "| target | boundary acc. | flip | others unchanged | flip (cond.) | others unchanged (cond.) |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in res["supervised"].items():
        p, c = r["plain"], r["conditional"]
        lines.append(
            f"| {name} | {_f(r.get('boundary_accuracy'))} | {_f(p.get('flip_rate'))} | "
            f"{_f(p.get('others_unchanged'))} ({_cnt(p)}) | {_f(c.get('flip_rate'))} | "
            f"{_f(c.get('others_unchanged'))} ({_cnt(c)}) |"
        )
    if res.get("unsupervised"):
        lines += [
            "",
            "Best-matching unsupervised direction per target (chosen by flip rate on a selection set):",
            "",
            "| target | direction | cos to supervised | flip | others unchanged | flip (cond.) | "
            "others unchanged (cond.) |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, r in res["unsupervised"].items():
            p, c = r["plain"], r["conditional"]
            lines.append(
                f"| {name} | {r['direction']} | {r['cosine_to_supervised']:+.2f} | "
                f"{_f(p.get('flip_rate'))} | "
                f"{_f(p.get('others_unchanged'))} ({_cnt(p)}) | {_f(c.get('flip_rate'))} | "
                f"{_f(c.get('others_unchanged'))} ({_cnt(c)}) |"
            )
    lines += [
        "",
        "| directions | mean flip | mean others unchanged | others unchanged, flipped samples only | "
        "samples with all others unchanged |",
        "|---|---|---|---|---|",
    ]
    for k, v in res["summary"].items():
        lines.append(
            f"| {k.replace('_', ' ')} | {_f(v['flip_rate'])} | {_f(v['others_unchanged'])} | "
            f"{_f(v.get('others_unchanged_when_flipped'))} | {_f(v['all_others_unchanged'])} |"
        )
    moved = [(name, r["conditional"].get("face_moved")) for name, r in res["supervised"].items()]
    if any(m for _, m in moved):
        lines += [
            "",
            f"How far the (conditional) supervised edits move the face at strength {s:g} (mean absolute "
            "change, read from the analyzer's part maps): position in fractions of the image, size in "
            "log2, angle in degrees.",
            "",
            "| target | shift x | shift y | zoom | rotate |",
            "|---|---|---|---|---|",
        ]
        for name, m in moved:
            if m:
                lines.append(
                    f"| {name} | {_f(m['shift_x'], False)} | {_f(m['shift_y'], False)} | "
                    f"{_f(m['zoom'], False)} | {_f(m['rotate'], False)} |"
                )
    comp = res.get("comparison")
    if comp and "targets" in comp:
        lines += [
            "",
            f"Side by side on {comp['n_images']} toyfaces renders (through the regressor, space "
            f"{comp['regressor_space']}): success rate and mean absolute change outside the edited part "
            "(pixels in [-1, 1], against the reconstruction); navigation = conditional supervised direction, "
            "read at edit by example's success rate.",
            "",
            "| target | images | example: success | example: outside change | navigation: strength | "
            "navigation: success | navigation: outside change | more local |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for name, t in comp["targets"].items():
            if not t.get("n"):
                lines.append(f"| {name} | 0 | - | - | - | - | - | - |")
                continue
            e, m = t["example"], t["matched"]
            win = more_local(t)
            lines.append(
                f"| {name} | {t['n']} | {_f(e['success'])} | {_f(e['outside_change'], False)} | "
                f"{m['strength']:.2f}{'' if m['reached'] else ' (not reached)'} | {_f(m['success'])} | "
                f"{_f(m['outside_change'], False)} | {win} |"
            )
        sm = comp.get("summary") or {}
        if sm.get("comparable"):
            lines += [
                "",
                f"At equal success, navigation is more local on {sm['navigation_more_local']} of the "
                f"{sm['comparable']} comparable targets (mean outside change "
                f"{sm['navigation_matched_outside_change']:.3f} vs {sm['example_outside_change']:.3f} for "
                f"edit by example, at its mean success {_f(sm['example_success'])}). Not comparable: "
                f"{sm['targets'] - sm['comparable']} targets (edit by example never succeeded on "
                f"{sm['targets'] - sm['example_nonzero']}; navigation never reached its "
                f"success on {sm['example_nonzero'] - sm['navigation_reached']}).",
            ]
    geo = res.get("geometry")
    if geo and "walks" in geo:
        lines += ["", "Geometric and colour walks against the toyfaces ground truth:", ""]
        lines += geometry_markdown(geo, title=f"{res['model']} walks").splitlines()
    elif geo:
        lines += ["", f"Geometric walks skipped: {geo.get('skipped')}"]
    return "\n".join(lines) + "\n"


def _cnt(m: dict) -> str:
    v = m.get("others_unchanged_count")
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.1f}/{m.get('n_others', '?')}"


def strip_figure(
    results: Sequence[dict],
    path,
    kinds: Sequence[str] = ("plain", "conditional"),
    sample: int = 0,
    attributes: Sequence[str] | None = None,
):
    """One PNG: for each model and target, a row per kind of direction, columns = strengths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .. import io
    from .edit import strip_grid

    rows, labels = [], []
    strengths = None
    for res in results:
        strengths = res["sizes"]["strip_strengths"]
        for name, st in res["_strips"].items():
            if attributes and name.split("=")[0] not in attributes:
                continue
            for kind in kinds:
                if kind in st:
                    rows.append(st[kind][sample : sample + 1])
                    short = res["model"].replace("builtin:", "")
                    labels.append(f"{short}  {name}  {'cond.' if kind == 'conditional' else kind}")
    if not rows:
        raise LatentcompError("no strips to draw")
    grid = strip_grid(torch.cat(rows), pad=2)
    img = ((grid.permute(1, 2, 0).clamp(-1, 1) + 1) / 2).numpy()
    h = img.shape[0] / 100 * 1.6
    fig, ax = plt.subplots(figsize=(img.shape[1] / 100 * 1.6 + 3.2, h))
    ax.imshow(img, interpolation="nearest")
    tile = img.shape[0] / len(rows)
    ax.set_yticks([tile * (i + 0.5) for i in range(len(rows))])
    ax.set_yticklabels(labels, fontsize=7)
    ncol = len(strengths)
    wt = img.shape[1] / ncol
    ax.set_xticks([wt * (i + 0.5) for i in range(ncol)])
    ax.set_xticklabels([f"{s:+g}" for s in strengths], fontsize=7)
    ax.set_xlabel("strength (std)", fontsize=8)
    for sp in ax.spines.values():
        sp.set_visible(False)
    ax.tick_params(length=0)

    def write(tmp):
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")

    io.atomic_write(path, write)
    plt.close(fig)
    return path


def comparison_figure(res: dict, path):
    """Input | reconstruction | example | edit by example | navigation, one row per target (first image)."""
    from .. import io
    from .edit import strip_grid

    comp = res.get("comparison") or {}
    rows = []
    for t in comp.get("targets", {}).values():
        im = t.get("_images")
        if im:
            rows.append(
                torch.stack(
                    [im[k][0] for k in ("input", "recon", "example", "edit_by_example", "navigation")]
                )
            )
    if not rows:
        return None
    return io.save_image(strip_grid(torch.stack(rows)), path)


def save_results(res: dict, out) -> dict:
    """results.json, results.md, strips/*.png, directions/*.safetensors under `out`."""
    import json
    from pathlib import Path

    from .. import io
    from .edit import strip_grid
    from .store import _jsonable, save_directions

    out = io.ensure_dir(out)
    tag = _slug(res["model"])
    written = {}
    io.write_text(out / f"{tag}.json", json.dumps(_jsonable(_strip_private(res)), indent=2) + "\n")
    io.write_text(out / f"{tag}.md", markdown_tables(res))
    written["json"] = out / f"{tag}.json"
    written["markdown"] = out / f"{tag}.md"
    sd = io.ensure_dir(out / "strips")
    for name, st in res["_strips"].items():
        rows = torch.cat([st[k] for k in ("plain", "conditional", "unsupervised") if k in st])
        io.save_image(strip_grid(rows), sd / f"{tag}_{_slug(name)}.png")
    written["strips"] = sd
    fig = comparison_figure(res, out / f"{tag}_edit_by_example.png")
    if fig is not None:
        written["comparison"] = Path(fig)
    dd = io.ensure_dir(out / "directions")
    dirs = res["_directions"]
    save_directions(
        dirs["supervised"] + dirs["conditional"],
        dd / f"{tag}_supervised",
        info={"strength": res["strength"], "sizes": res["sizes"]},
    )
    if res.get("_walks"):
        save_directions(res["_walks"], dd / f"{tag}_walks")
    if dirs["unsupervised"]:
        uniq = {}
        for d in dirs["unsupervised"]:
            uniq.setdefault(d.name, d)
        save_directions(list(uniq.values()), dd / f"{tag}_unsupervised")
    written["directions"] = dd
    return written


def _slug(s: str) -> str:
    keep = "".join(ch if ch.isalnum() or ch in "-_=" else "_" for ch in str(s).replace("builtin:", ""))
    return keep.replace("=", "-").strip("_") or "model"


def _strip_private(v):
    if isinstance(v, dict):
        return {k: _strip_private(x) for k, x in v.items() if not str(k).startswith("_")}
    if isinstance(v, list):
        return [_strip_private(x) for x in v]
    return v


__all__ = [
    "EvalSizes",
    "LabelledSamples",
    "compare_with_example",
    "evaluate_navigation",
    "flip_metrics",
    "markdown_tables",
    "match_success",
    "outside_change",
    "save_results",
    "strip_figure",
]
