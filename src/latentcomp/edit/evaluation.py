"""Composition evaluation on automatic toyfaces collages (`latentcomp evaluate composition`).

For every method (regressor, regressor + refine, optimisation only, Poisson, raw collage), on the same
collages of 3-4 sources (fixed seed):
- composition accuracy: the analyzer finds the pasted part's attribute in the output; counted per
  (collage, attribute) where the part is visible in the collage and not hidden by the expected
  attributes (eyes behind sunglasses); pooled per part, then averaged over parts;
- realism: the analyzer's mean confidence, and the domain FID (Frechet distance of analyzer features)
  of the outputs against generator samples and against fresh toyfaces renders, next to the FID of plain
  samples against renders (the reference) and of two independent sample sets (the noise floor);
- masked L1 on the collage's known pixels;
- time per image (batched, same run), and for optimisation only, the time it needs to reach the
  regressor's error on the known pixels.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

import numpy as np
import torch

from ..errors import LatentcompError
from .autocollage import AutoCollages, toyfaces_collages
from .baselines import poisson_blend
from .refine import OptimConfig, masked_l1, optimise_latent

METHODS = ("regressor", "regressor+refine", "optimisation", "poisson", "raw")


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """FID between two feature sets (N, D): |mu_a - mu_b|^2 + Tr(Sa + Sb - 2 sqrt(Sa Sb)), scipy sqrtm
    (a 1e-6 diagonal offset where the root is not finite). Fallback for latentcomp.metrics.fid."""
    from scipy import linalg

    a64, b64 = a.double().cpu().numpy(), b.double().cpu().numpy()
    if a64.shape[0] < 2 or b64.shape[0] < 2:
        return math.nan
    mu1, mu2 = a64.mean(0), b64.mean(0)
    s1, s2 = np.cov(a64, rowvar=False), np.cov(b64, rowvar=False)
    covmean = np.asarray(linalg.sqrtm(s1 @ s2))
    if not np.isfinite(covmean).all():
        eps = np.eye(s1.shape[0]) * 1e-6
        covmean = np.asarray(linalg.sqrtm((s1 + eps) @ (s2 + eps)))
    covmean = covmean.real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def _fid(a, b) -> float:
    try:  # the metrics helper's implementation, where it exists
        from ..metrics.fid import frechet_distance as fd  # type: ignore[attr-defined]

        return float(fd(a, b))
    except (ImportError, AttributeError, TypeError):
        return frechet_distance(a, b)


def _accuracy(pred: torch.Tensor, coll: AutoCollages, counted: torch.Tensor) -> dict:
    correct = (pred.cpu() == coll.expected_attrs) & counted
    per_attr, per_part = {}, {}
    for j, a in enumerate(coll.attribute_names):
        c = int(counted[:, j].sum())
        per_attr[a] = float(correct[:, j].sum()) / c if c else math.nan
    for part in coll.part_names:
        cols = [j for j, a in enumerate(coll.attribute_names) if coll.attribute_part[a] == part]
        if not cols:
            continue
        c = int(counted[:, cols].sum())
        per_part[part] = float(correct[:, cols].sum()) / c if c else math.nan
    vals = [v for v in per_part.values() if not math.isnan(v)]
    return {
        "composition_accuracy": float(np.mean(vals)) if vals else math.nan,
        "per_part": per_part,
        "per_attribute": per_attr,
        "pairs": int(counted.sum()),
    }


def evaluate_composition(
    pipe,
    n: int = 500,
    seed: int = 0,
    methods: Sequence[str] = METHODS,
    analyzer="builtin:toyfaces-analyzer",
    refine_steps: int = 30,
    opt_steps: int = 200,
    batch: int = 50,
    source: str = "renders",
    n_sources: tuple[int, ...] = (3, 4),
    keep_examples: int = 8,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> dict:
    """Run the evaluation and return a JSON-ready dict (plus `_examples`: tensors for a figure)."""
    from ..metrics.analyzer import load_analyzer

    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise LatentcompError(f"unknown method(s) {', '.join(unknown)}; accepted: {', '.join(METHODS)}")
    if n < 2:
        raise LatentcompError(f"--n must be at least 2 (FID needs two images); got {n}")
    if batch < 1:
        raise LatentcompError(f"--batch must be at least 1; got {batch}")
    an = load_analyzer(analyzer) if isinstance(analyzer, str) else analyzer
    an.to(pipe.device)
    if pipe.channels != 3:
        raise LatentcompError("composition evaluation needs a 3-channel toyfaces generator")
    from ..data.toyfaces import ATTRIBUTES

    if list(an.attribute_names) != list(ATTRIBUTES):
        raise LatentcompError("the analyzer's attributes differ from toyfaces'; use a toyfaces analyzer")
    t_start = time.perf_counter()
    coll = toyfaces_collages(
        n, pipe.resolution, seed=seed, n_sources=n_sources, source=source, pipe=pipe, analyzer=an
    )
    G, E, space = pipe.generator, pipe.regressor, pipe.space
    outs: dict[str, dict[str, list]] = {m: {"pred": [], "conf": [], "feat": [], "l1": []} for m in methods}
    secs = {m: 0.0 for m in methods}
    counted_all, reg_l1_all, match_steps, opt_step_time = [], [], [], []
    examples: dict[str, list[torch.Tensor]] = {"collage": [], "mask": [], **{m: [] for m in methods}}
    chunks = range(0, n, batch)
    if progress:
        from tqdm import tqdm

        chunks = tqdm(chunks, desc="evaluate composition", unit="chunk")
    for start in chunks:
        c = coll[start : start + batch]
        images, masks = c.parts()
        collage, known, visible = c.collage()
        collage, known = collage.to(pipe.device), known.to(pipe.device)
        counted_all.append(c.counted(visible, an))
        results: dict[str, torch.Tensor] = {}
        latent = None
        if "regressor" in methods or "regressor+refine" in methods or "optimisation" in methods:
            t0 = time.perf_counter()
            with torch.no_grad():
                latent = E(collage, known)
                reg_out = G(latent, space=space).clamp(-1, 1)
            dt = time.perf_counter() - t0
            reg_l1 = masked_l1(reg_out, collage, known)
            reg_l1_all.append(reg_l1.cpu())
            if "regressor" in methods:
                results["regressor"], secs["regressor"] = reg_out, secs["regressor"] + dt
        if "regressor+refine" in methods:
            t0 = time.perf_counter()
            r = optimise_latent(G, E, space, collage, known, latent, OptimConfig(steps=refine_steps))
            with torch.no_grad():
                results["regressor+refine"] = G(r.latent, space=space).clamp(-1, 1)
            secs["regressor+refine"] += time.perf_counter() - t0 + dt
        if "optimisation" in methods:
            init = pipe.mean_latent().expand(collage.shape[0], *pipe.mean_latent().shape[1:]).clone()
            t0 = time.perf_counter()
            r = optimise_latent(
                G, E, space, collage, known, init, OptimConfig(steps=opt_steps), track=True, default_lr=0.05
            )
            with torch.no_grad():
                results["optimisation"] = G(r.latent, space=space).clamp(-1, 1)
            el = time.perf_counter() - t0
            secs["optimisation"] += el
            opt_step_time.append(el / max(opt_steps, 1) / collage.shape[0])
            hist = r.history  # (steps + 1, N)
            reached = hist <= reg_l1.cpu().unsqueeze(0)
            first = torch.where(
                reached.any(0), reached.float().argmax(0), torch.full_like(reached[0], -1, dtype=torch.long)
            )
            match_steps.append(first)
        if "poisson" in methods:
            t0 = time.perf_counter()
            results["poisson"] = poisson_blend(images, masks).to(pipe.device)
            secs["poisson"] += time.perf_counter() - t0
        if "raw" in methods:
            results["raw"] = collage
        for m, img in results.items():
            pred = an.predict(img, logits=False)
            outs[m]["pred"].append(pred.attrs.cpu())
            outs[m]["conf"].append(pred.confidence.cpu())
            outs[m]["feat"].append(an.features(img).cpu())
            outs[m]["l1"].append(masked_l1(img, collage, known).cpu())
        have = sum(x.shape[0] for x in examples["collage"])
        if have < keep_examples:
            k = keep_examples - have
            examples["collage"].append(collage[:k].cpu())
            examples["mask"].append(known[:k].cpu())
            for m, img in results.items():
                examples[m].append(img[:k].cpu())
    counted = torch.cat(counted_all)

    # references: generator samples (two independent sets) and fresh renders
    from ..data.toyfaces import ToyFaces

    samp = torch.cat(
        [pipe.sample(min(batch * 4, n - i), seed=10_000 + seed * 1000 + i) for i in range(0, n, batch * 4)]
    )
    samp2 = torch.cat(
        [pipe.sample(min(batch * 4, n - i), seed=20_000 + seed * 1000 + i) for i in range(0, n, batch * 4)]
    )
    renders = ToyFaces(resolution=pipe.resolution, seed=987_654 + seed).render_batch(list(range(n)))[0]
    f_samp, f_samp2, f_rend = an.features(samp).cpu(), an.features(samp2).cpu(), an.features(renders).cpu()
    ref = {
        "samples": {
            "fid_vs_renders": _fid(f_samp, f_rend),
            "fid_vs_samples": _fid(f_samp2, f_samp),
            "confidence": float(an.predict(samp, logits=False).confidence.mean()),
        },
        "renders": {
            "confidence": float(an.predict(renders, logits=False).confidence.mean()),
            "fid_vs_samples": _fid(f_rend, f_samp),
        },
    }
    res_methods = {}
    for m in methods:
        o = outs[m]
        pred = torch.cat(o["pred"])
        feat = torch.cat(o["feat"])
        entry = _accuracy(pred, coll, counted)
        entry.update(
            confidence=float(torch.cat(o["conf"]).mean()),
            fid_vs_samples=_fid(feat, f_samp),
            fid_vs_renders=_fid(feat, f_rend),
            known_l1=float(torch.cat(o["l1"]).mean()),
            seconds_per_image=secs[m] / n,
        )
        res_methods[m] = entry
    speed: dict = {}
    if "regressor" in methods:
        speed["regressor_seconds_per_image"] = secs["regressor"] / n
        speed["regressor_single_image_ms"] = _single_latency(pipe, coll) * 1000
    if match_steps:
        steps_needed = torch.cat(match_steps)
        ok = steps_needed >= 0
        step_t = float(np.mean(opt_step_time))
        speed["optimisation_seconds_per_step_per_image"] = step_t
        speed["optimisation_reached_regressor_error"] = float(ok.float().mean())
        if ok.any():
            med_steps = float(steps_needed[ok].float().median())
            speed["optimisation_median_steps_to_regressor_error"] = med_steps
            speed["optimisation_median_seconds_to_regressor_error"] = med_steps * step_t
            if "regressor" in methods and secs["regressor"] > 0:
                speed["speedup_vs_optimisation"] = med_steps * step_t / (secs["regressor"] / n)
        speed["note"] = (
            "optimisation time to reach the regressor's known-pixel L1 per image, counted over images that "
            f"reached it within {opt_steps} steps (batched Adam, time per step per image); full measurement "
            "in benchmarks/"
        )
    checks = {}
    if "regressor" in methods:
        reg = res_methods["regressor"]
        checks["composition_accuracy >= 0.80"] = bool(reg["composition_accuracy"] >= 0.8)
        checks["fid_vs_renders <= 2 x samples"] = bool(
            reg["fid_vs_renders"] <= 2 * ref["samples"]["fid_vs_renders"]
        )
        if "speedup_vs_optimisation" in speed:
            checks["speedup >= 100"] = bool(speed["speedup_vs_optimisation"] >= 100)
    result = {
        "model": str(pipe.source or pipe.generator.spec),
        "generator": pipe.generator.spec,
        "space": space,
        "n": n,
        "seed": seed,
        "source": source,
        "sources_per_collage": list(n_sources),
        "settings": {
            "refine_steps": refine_steps,
            "optimisation_steps": opt_steps,
            "batch": batch,
            "analyzer": str(analyzer) if isinstance(analyzer, str) else "custom",
            "threads": torch.get_num_threads(),
            "device": str(pipe.device),
        },
        "methods": res_methods,
        "reference": ref,
        "speed": speed,
        "checks": checks,
        "seconds_total": time.perf_counter() - t_start,
        "_examples": {k: torch.cat(v) for k, v in examples.items() if v},
    }
    return result


def _single_latency(pipe, coll: AutoCollages, k: int = 10) -> float:
    """Median seconds of E + G on one collage at a time (k collages)."""
    c = coll[: min(k, len(coll))]
    collage, known, _ = c.collage()
    collage, known = collage.to(pipe.device), known.to(pipe.device)
    times = []
    with torch.no_grad():
        for i in range(collage.shape[0]):
            t0 = time.perf_counter()
            pipe.generator(pipe.run_regressor(collage[i : i + 1], known[i : i + 1]), space=pipe.space)
            times.append(time.perf_counter() - t0)
    return float(np.median(times))


def markdown_table(res: dict) -> str:
    """A markdown summary of `evaluate_composition`'s result."""
    methods = res["methods"]
    parts = []
    for m in methods.values():
        parts = list(m["per_part"])
        break
    head = [
        "method",
        "composition acc.",
        *parts,
        "confidence",
        "FID vs samples",
        "FID vs renders",
        "known-pixel L1",
        "s / image",
    ]

    def f(v, d=3):
        return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{d}f}"

    lines = [
        f"Composition on {res['n']} automatic toyfaces collages "
        f"({'-'.join(map(str, res['sources_per_collage']))} "
        f"sources, seed {res['seed']}), model `{res['model']}` ({res['space']}).",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for name, m in methods.items():
        row = [name, f(m["composition_accuracy"])] + [f(m["per_part"][p]) for p in parts]
        row += [
            f(m["confidence"]),
            f(m["fid_vs_samples"], 2),
            f(m["fid_vs_renders"], 2),
            f(m["known_l1"]),
            f(m["seconds_per_image"], 4),
        ]
        lines.append("| " + " | ".join(row) + " |")
    ref = res["reference"]
    lines += [
        "",
        f"Reference: generator samples FID vs renders {f(ref['samples']['fid_vs_renders'], 2)}, "
        f"two sample sets {f(ref['samples']['fid_vs_samples'], 2)}, sample confidence "
        f"{f(ref['samples']['confidence'])}, render confidence {f(ref['renders']['confidence'])}.",
    ]
    sp = res.get("speed", {})
    if sp:
        lines.append("")
        items = [f"{k}: {f(v, 4) if isinstance(v, float) else v}" for k, v in sp.items() if k != "note"]
        lines.append("Speed: " + "; ".join(items) + ".")
    if res.get("checks"):
        lines.append("")
        lines.append(
            "Checks: " + ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in res["checks"].items()) + "."
        )
    return "\n".join(lines) + "\n"
