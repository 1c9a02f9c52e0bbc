"""The reconstruction-realism trade-off of composition methods (the paper's Fig. / Table on collages).

For each generator (a Pipeline: G + its regressor E) and each method, on the same automatic collages:

- regressor:         G(E(collage, known))
- regressor+refine:  the latent refined from E's output for `refine_steps` Adam steps (edit/refine.py)
- optimisation:      the same objective optimised from the mean latent for `opt_steps` steps
- poisson:           Poisson blending of the parts (OpenCV seamlessClone; edit/baselines.py)
- raw:               the collage itself

we measure the error to the collage on its known pixels (masked L1; masked LPIPS-alex too where its
weights are local) and the realism of the outputs: FID, KID and density / coverage (prdc, k = 5) of
their features against a reference set. A method that copies the collage (raw) is perfect on the known
pixels and unrealistic; a generator sample is realistic and ignores the collage; the paper's claim is
that regression sits near the good corner of both, and refinement trades a little realism for lower
error.

Collages (`collage_source`): "renders" (toyfaces renders with their true part maps; the default for
toyfaces generators, like the paper's real-image collages), "samples" (generator samples split by the
analyzer's part maps) or "kmeans" (generator samples split by unsupervised k-means part maps of
probe/parts.py: works for any generator, no labels). Realism reference: fresh toyfaces renders for
toyfaces generators (the real data), else the generator's own samples; features: the analyzer's (toyfaces
domain FID) or any `--features` spec. Two reference rows come with each generator: plain samples G(z)
and re-encoded samples G(E(G(z))).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from ..errors import LatentcompError
from .common import (
    Sizes,
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

METHODS = ("regressor", "regressor+refine", "optimisation", "poisson", "raw")
COLLAGE_SOURCES = ("auto", "renders", "samples", "kmeans")
MARKERS = {
    "regressor": "o",
    "regressor+refine": "s",
    "optimisation": "^",
    "poisson": "D",
    "raw": "X",
    "samples G(z)": "*",
    "re-encoded G(E(G(z)))": "P",
}


def kmeans_collages(pipe, n: int, seed: int = 0, k: int = 6, n_sources=(3, 4), fit_n: int = 200, batch=50):
    """Automatic collages for any generator: samples split into parts by k-means part maps."""
    from ..edit.autocollage import AutoCollages
    from .parts import fit_parts

    model = fit_parts(pipe.generator, k=k, n=fit_n, seed=seed + 17, batch=batch)
    s_max = max(n_sources)
    imgs, z = sample_with_latents(pipe, n * s_max, seed + 23, batch)
    pm = model.predict(pipe.generator, z, batch=batch)
    counts = np.zeros(n, dtype=np.int64)
    assign = np.zeros((n, k), dtype=np.int64)
    for i in range(n):
        rng = np.random.default_rng([int(seed), i, 11])
        s = int(rng.choice(np.array(n_sources)))
        order = rng.permutation(k)
        a = np.empty(k, dtype=np.int64)
        a[order[:s]] = rng.permutation(s)
        a[order[s:]] = rng.integers(0, s, size=k - s)
        counts[i], assign[i] = s, a
    return AutoCollages(
        part_names=model.names,
        source_images=imgs.view(n, s_max, *imgs.shape[1:]),
        source_partmaps=pm.view(n, s_max, *pm.shape[1:]),
        source_attrs=torch.zeros(n, s_max, 0, dtype=torch.long),
        n_sources=torch.from_numpy(counts),
        part_source=torch.from_numpy(assign),
        expected_attrs=torch.zeros(n, 0, dtype=torch.long),
        attribute_names=[],
        attribute_part={},
    )


def make_collages(pipe, analyzer, n: int, seed: int, source: str = "auto", batch: int = 50, fit_n: int = 200):
    from ..edit.autocollage import toyfaces_collages

    if source not in COLLAGE_SOURCES:
        raise LatentcompError(f"unknown collage source {source!r}; accepted: {', '.join(COLLAGE_SOURCES)}")
    toy = toyfaces_compatible(pipe, analyzer)
    if source == "auto":
        source = "renders" if toy else "kmeans"
    if source in ("renders", "samples") and not toy:
        raise LatentcompError(
            f"collage source {source!r} needs a 3-channel toyfaces generator and the toyfaces "
            "analyzer; use --collage-source kmeans for other generators"
        )
    if source == "kmeans":
        return kmeans_collages(pipe, n, seed, fit_n=fit_n, batch=batch), source
    return toyfaces_collages(
        n, pipe.resolution, seed=seed, source=source, pipe=pipe, analyzer=analyzer
    ), source


def _features_for(spec, analyzer, device):
    from ..metrics.features import analyzer_features, load_features

    if not isinstance(spec, str):
        return spec
    if spec == "analyzer":
        if analyzer is None:
            raise LatentcompError(
                "realism features 'analyzer' need the toyfaces analyzer (--analyzer SPEC); for "
                "other domains pass --features inception|pixels|MODULE:FN"
            )
        return analyzer_features(analyzer, device=device)
    return load_features(spec, device=device)


def run_methods(pipe, coll, methods, sizes: Sizes):
    """Outputs of every method on the collages -> {method: images}, seconds, known masks and collages."""
    from ..edit.baselines import poisson_blend
    from ..edit.refine import OptimConfig, optimise_latent

    G, E, space = pipe.generator, pipe.regressor, pipe.space
    outs = {m: [] for m in methods}
    secs = dict.fromkeys(methods, 0.0)
    collages, knowns = [], []
    for start in range(0, len(coll), sizes.batch):
        c = coll[start : start + sizes.batch]
        images, masks = c.parts()
        collage, known, _ = c.collage()
        collage, known = collage.to(pipe.device), known.to(pipe.device)
        collages.append(collage.cpu())
        knowns.append(known.cpu())
        t0 = time.perf_counter()
        with torch.no_grad():
            latent = E(collage, known)
            reg = G(latent, space=space).clamp(-1, 1)
        dt = time.perf_counter() - t0
        if "regressor" in methods:
            outs["regressor"].append(reg.cpu())
            secs["regressor"] += dt
        if "regressor+refine" in methods:
            t0 = time.perf_counter()
            r = optimise_latent(G, E, space, collage, known, latent, OptimConfig(steps=sizes.refine_steps))
            with torch.no_grad():
                outs["regressor+refine"].append(G(r.latent, space=space).clamp(-1, 1).cpu())
            secs["regressor+refine"] += time.perf_counter() - t0 + dt
        if "optimisation" in methods:
            init = pipe.mean_latent().expand(collage.shape[0], *pipe.mean_latent().shape[1:]).clone()
            t0 = time.perf_counter()
            r = optimise_latent(
                G, E, space, collage, known, init, OptimConfig(steps=sizes.opt_steps), default_lr=0.05
            )
            with torch.no_grad():
                outs["optimisation"].append(G(r.latent, space=space).clamp(-1, 1).cpu())
            secs["optimisation"] += time.perf_counter() - t0
        if "poisson" in methods:
            t0 = time.perf_counter()
            outs["poisson"].append(poisson_blend(images, masks).cpu())
            secs["poisson"] += time.perf_counter() - t0
        if "raw" in methods:
            outs["raw"].append(collage.cpu())
    return ({m: torch.cat(v) for m, v in outs.items()}, secs, torch.cat(collages), torch.cat(knowns))


def run_tradeoff(
    pipes,
    out: Path,
    analyzer=None,
    sizes: Sizes | None = None,
    seed: int = 0,
    methods=METHODS,
    collage_source: str = "auto",
    features="analyzer",
    lpips: str = "auto",
    device=None,
) -> dict:
    """Run the trade-off for every pipeline; writes tradeoff.json, tradeoff.png, tradeoff_examples_<i>.png."""
    from ..metrics.masked import lpips_available, masked_l1, masked_lpips

    sizes = sizes or Sizes.default()
    out = Path(out)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise LatentcompError(f"unknown method(s) {', '.join(unknown)}; accepted: {', '.join(METHODS)}")
    use_lpips = lpips_available("alex") if lpips == "auto" else lpips in ("alex", "vgg")
    net = "alex" if lpips in ("auto", "alex") else lpips
    res: dict = {
        "experiment": "tradeoff",
        "seed": seed,
        "methods": list(methods),
        "models": [],
        "sizes": {k: getattr(sizes, k) for k in ("tradeoff_n", "refine_steps", "opt_steps", "reference_n")},
    }
    for mi, pipe in enumerate(pipes):
        t_model = time.perf_counter()
        label = model_label(pipe)
        ex = _features_for(features, analyzer if toyfaces_compatible(pipe, analyzer) else None, device)
        coll, source = make_collages(
            pipe, analyzer, sizes.tradeoff_n, seed, collage_source, sizes.batch, sizes.parts_fit
        )
        log(f"tradeoff: {label}: {len(coll)} collages ({source}), methods {', '.join(methods)}")
        outs, secs, collage, known = run_methods(pipe, coll, methods, sizes)
        toy = toyfaces_compatible(pipe, analyzer)
        samples, z = sample_with_latents(pipe, sizes.reference_n, seed + 1000, sizes.batch)
        if toy:
            ref_imgs = renders(pipe.resolution, sizes.reference_n, seed)[0]
            ref_name = "toyfaces renders"
        else:
            ref_imgs = sample_with_latents(pipe, sizes.reference_n, seed + 2000, sizes.batch)[0]
            ref_name = "generator samples (another seed)"
        f_ref = ex(ref_imgs)
        with torch.no_grad():
            rec = torch.cat(
                [
                    pipe.reconstruct(samples[i : i + sizes.batch]).cpu()
                    for i in range(0, samples.shape[0], sizes.batch)
                ]
            )
        entry = {
            "model": label,
            "generator": pipe.generator.spec,
            "space": pipe.space,
            "collage_source": source,
            "n": len(coll),
            "reference": ref_name,
            "features": ex.name,
            "methods": {},
            "references": {},
        }
        for m in methods:
            img = outs[m]
            row = {
                "known_l1": float(masked_l1(img, collage, known).nanmean()),
                "seconds_per_image": secs[m] / len(coll),
            }
            if use_lpips:
                row[f"known_lpips_{net}"] = float(masked_lpips(img, collage, known, net=net).mean())
            row.update(realism(ex(img), f_ref))
            entry["methods"][m] = row
        for name, img in (("samples G(z)", samples), ("re-encoded G(E(G(z)))", rec)):
            row = realism(ex(img), f_ref)
            if name.startswith("re-encoded"):
                row["known_l1"] = float(masked_l1(rec, samples).mean())
            entry["references"][name] = row
        entry["seconds"] = time.perf_counter() - t_model
        show = min(6, len(coll))
        grid_rows = [torch.stack([collage[i]] + [outs[m][i] for m in methods]) for i in range(show)]
        grid = save_grid(grid_rows, out / f"tradeoff_examples_{mi}.png", scale=max(1, 96 // pipe.resolution))
        entry["examples"] = grid.name
        entry["examples_note"] = "columns: collage, " + ", ".join(methods)
        res["models"].append(entry)
    res["plot"] = plot_tradeoff(res, out / "tradeoff.png").name
    write_json(out / "tradeoff.json", res)
    return res


def plot_tradeoff(res: dict, path: Path) -> Path:
    """Every generator-method point: known-pixel L1 (x) vs FID / density / coverage (y)."""
    p = plt()
    fig, axes = p.subplots(1, 3, figsize=(13, 4))
    colours = p.get_cmap("tab10")
    panels = (
        ("fid", "FID vs reference (lower = more realistic)"),
        ("density", "density (higher = better)"),
        ("coverage", "coverage (higher = better)"),
    )
    for mi, entry in enumerate(res["models"]):
        c = colours(mi % 10)
        for ax, (key, title) in zip(axes, panels, strict=True):
            for m, row in entry["methods"].items():
                if row.get(key) is None:
                    continue
                ax.scatter(
                    row["known_l1"],
                    row[key],
                    color=c,
                    marker=MARKERS.get(m, "o"),
                    s=60,
                    edgecolor="black",
                    linewidth=0.5,
                )
            ref = entry["references"]["samples G(z)"].get(key)
            if ref is not None:
                ax.axhline(ref, color=c, linestyle="--", linewidth=0.8)
            ax.set_title(title, fontsize=9)
            ax.set_xlabel("masked L1 to the collage (known pixels)")
    # legends: methods by marker, generators by colour
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], marker=MARKERS[m], linestyle="", color="grey", label=m) for m in res["methods"]]
    handles += [
        Line2D([], [], color=colours(i % 10), linestyle="--", label=f"{e['model']} (dashed: samples)")
        for i, e in enumerate(res["models"])
    ]
    fig.suptitle(
        "Composition: reconstruction of the collage vs realism, per generator and method", fontsize=10
    )
    fig.tight_layout(rect=(0, 0.12, 1, 0.95))
    fig.legend(handles=handles, fontsize=7, loc="lower center", ncol=min(4, len(handles)), frameon=False)
    return save_fig(fig, path)
