"""`latentcomp probe report`: every experiment for one or more generators, one self-contained HTML page.

The page (report.html) embeds its plots and image grids as base64 PNGs, so it can be mailed or opened
anywhere; the same PNGs and each experiment's JSON sit beside it, plus report.json with the headline
numbers of every model.
"""

from __future__ import annotations

import html
import json
import math
import time
from pathlib import Path

import torch

from .common import Sizes, jsonable, log, model_label, png_base64, write_json

EXPERIMENTS = ("tradeoff", "independence", "parts", "rebalance", "navigate")


def _f(v, d: int = 3) -> str:
    if v is None or (isinstance(v, float) and (math.isnan(v) or math.isinf(v))):
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{d}f}" if abs(v) >= 10**-d or v == 0 else f"{v:.2e}"
    return html.escape(str(v))


def headline(results: dict) -> list[dict]:
    """One row of headline numbers per model."""
    rows: dict[str, dict] = {}
    for e in results.get("tradeoff", {}).get("models", []):
        r = rows.setdefault(e["model"], {"model": e["model"]})
        for m, v in e["methods"].items():
            r[f"{m} known L1"] = v.get("known_l1")
            r[f"{m} FID"] = v.get("fid")
            r[f"{m} coverage"] = v.get("coverage")
        r["samples FID"] = e["references"]["samples G(z)"].get("fid")
        r["re-encoded FID"] = e["references"]["re-encoded G(E(G(z)))"].get("fid")
    for e in results.get("independence", {}).get("models", []):
        r = rows.setdefault(e["model"], {"model": e["model"]})
        r["independence: median locality gain"] = e.get("median_locality_gain")
        r["independence: median regression leakage"] = e.get("median_regression_leakage")
        if "median_top_component_share" in e:
            r["independence: top component share (1/k = spread)"] = e["median_top_component_share"]
            carrying = f"{e['distinct_top_components']}/{e['components']}"
            r["independence: components carrying a part"] = carrying
        r["independence: parts more local with regression"] = (
            f"{e.get('parts_more_local_with_regression', 0)}/{e.get('parts_measured', 0)}"
        )
    for e in results.get("parts", {}).get("models", []):
        r = rows.setdefault(e["model"], {"model": e["model"]})
        r["parts: mIoU (Hungarian)"] = e.get("miou_hungarian")
        r["parts: best layer mIoU"] = max(e["miou_per_layer"].values()) if e.get("miou_per_layer") else None
    for e in results.get("rebalance", {}).get("models", []):
        r = rows.setdefault(e["model"], {"model": e["model"]})
        if "share_before" in e:
            r["rebalance: share before"] = e["share_before"]
            r["rebalance: FID before"] = e["realism_before"]["fid"]
        if "regression" in e:
            r["rebalance: share after"] = e["regression"]["share_after"]
            r["rebalance: FID after"] = e["regression"]["realism"]["fid"]
    for e in results.get("navigate", {}).get("models", []):
        if "summary" not in e:
            continue
        r = rows.setdefault(e["model"], {"model": e["model"]})
        for kind in ("plain", "conditional"):
            v = e["summary"].get(f"supervised_{kind}", {})
            r[f"navigate: flip rate ({kind})"] = v.get("flip_rate")
            r[f"navigate: others unchanged ({kind})"] = v.get("others_unchanged")
    return list(rows.values())


def _img(out: Path, name: str | None, caption: str = "") -> str:
    if not name or not (out / name).is_file():
        return ""
    cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
    return (
        f'<figure><img src="data:image/png;base64,{png_base64(out / name)}" alt="{html.escape(name)}">'
        f"{cap}</figure>"
    )


def _table(rows: list[list], head: list[str]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join(
        "<tr>" + "".join(f"<td>{c if isinstance(c, str) else _f(c)}</td>" for c in r) + "</tr>" for r in rows
    )
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def render_html(results: dict, out: Path) -> str:
    meta = results["meta"]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>latentcomp probe report</title><style>",
        "body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}",
        "table{border-collapse:collapse;margin:0.5em 0 1.5em;font-size:0.85em}",
        "td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}th{background:#f3f3f3}",
        "td:first-child,th:first-child{text-align:left}img{max-width:100%;image-rendering:pixelated}",
        "figure{margin:0.5em 0 1.5em}figcaption{font-size:0.85em;color:#555}.warn{color:#a00}",
        "</style></head><body>",
        "<h1>Probing compositionality</h1>",
        f"<p>Models: {', '.join(html.escape(m) for m in meta['models'])}. Seed {meta['seed']}; "
        f"{'quick sizes (smoke test; numbers mean little)' if meta['quick'] else 'default sizes'}; "
        f"analyzer: {html.escape(str(meta['analyzer']))}; {meta['seconds']:.0f} s on {meta['device']} "
        f"({meta['threads']} threads).</p>",
    ]
    if any("untrained" in m for m in meta["models"]):
        parts.append("<p class='warn'>At least one model uses an untrained regressor: a smoke test.</p>")
    rows = headline(results)
    if rows:
        keys = [k for k in rows[0] if k != "model"]
        for r in rows[1:]:
            keys += [k for k in r if k != "model" and k not in keys]
        parts.append("<h2>Headline numbers</h2>")
        parts.append(
            _table([[k] + [r.get(k) for r in rows] for k in keys], ["metric"] + [r["model"] for r in rows])
        )
    tr = results.get("tradeoff")
    if tr:
        parts.append("<h2>Trade-off: reconstruction of the collage vs realism</h2>")
        parts.append(
            "<p>Each point is a generator and a method on the same automatic collages: x = L1 to the "
            "collage on its known pixels, y = realism of the outputs against the reference "
            "(dashed: plain samples).</p>"
        )
        parts.append(_img(out, tr.get("plot")))
        for e in tr["models"]:
            head = [
                "method",
                "known L1",
                "FID",
                "KID",
                "precision",
                "recall",
                "density",
                "coverage",
                "s / image",
            ]
            body = [
                [
                    m,
                    v.get("known_l1"),
                    v.get("fid"),
                    v.get("kid"),
                    v.get("precision"),
                    v.get("recall"),
                    v.get("density"),
                    v.get("coverage"),
                    v.get("seconds_per_image"),
                ]
                for m, v in list(e["methods"].items()) + list(e["references"].items())
            ]
            parts.append(
                f"<h3>{html.escape(e['model'])} ({e['space']}; {e['n']} collages from "
                f"{e['collage_source']}; reference {html.escape(e['reference'])}; features "
                f"{html.escape(e['features'])})</h3>"
            )
            parts.append(_table(body, head))
            parts.append(_img(out, e.get("examples"), e.get("examples_note", "")))
    ind = results.get("independence")
    if ind:
        parts.append("<h2>Independence of parts: regression vs latent interpolation</h2>")
        parts.append(
            "<p>Per part: how much the rest of the image changes (y) as the part moves towards another "
            "image's (x), for regression of a collage with the part pasted at growing opacity and for "
            "linear interpolation of the two codes. Gain = interpolation's outside change / "
            "regression's at the follow regression reaches (&gt; 1: regression is more local).</p>"
        )
        for e in ind["models"]:
            parts.append(f"<h3>{html.escape(e['model'])} (parts from {e['part_source']})</h3>")
            parts.append(_img(out, e.get("plot")))
            body = [
                [
                    p,
                    c.get("pairs"),
                    c.get("matched_follow"),
                    c.get("regression_outside"),
                    c.get("interpolation_outside"),
                    c.get("locality_gain"),
                ]
                for p, c in e["parts"].items()
            ]
            parts.append(
                _table(
                    body,
                    [
                        "part",
                        "pairs",
                        "matched follow",
                        "outside (regression)",
                        "outside (interpolation)",
                        "locality gain",
                    ],
                )
            )
            parts.append(_img(out, e.get("examples"), e.get("examples_note", "")))
    pa = results.get("parts")
    if pa:
        parts.append("<h2>Unsupervised part discovery (k-means on generator features)</h2>")
        parts.append(_img(out, pa.get("plot")))
        for e in pa["models"]:
            parts.append(f"<h3>{html.escape(e['model'])}: layer {', '.join(e['layers'])}, k = {e['k']}</h3>")
            if "miou_hungarian" in e:
                body = [
                    [p, v, e.get("per_part_many_to_one", {}).get(p)]
                    for p, v in e["per_part_hungarian"].items()
                ]
                body.append(["mean (mIoU)", e["miou_hungarian"], e["miou_many_to_one"]])
                parts.append(_table(body, ["part", "IoU (Hungarian)", "IoU (many-to-one)"]))
            parts.append(_img(out, e.get("grid"), e.get("note", "")))
    rb = results.get("rebalance")
    if rb:
        parts.append(f"<h2>Rebalancing: raising the share of {html.escape(rb['attribute'])}</h2>")
        parts.append(_img(out, rb.get("plot")))
        for e in rb["models"]:
            parts.append(f"<h3>{html.escape(e['model'])}</h3>")
            if "skipped" in e or "note" in e:
                parts.append(f"<p>{html.escape(e.get('skipped') or e.get('note'))}</p>")
            if "share_before" in e:
                body = [
                    [
                        "before",
                        e["share_before"],
                        None,
                        e["realism_before"]["fid"],
                        e["realism_before"].get("coverage"),
                    ]
                ]
                for k in ("regression", "paste", "selection"):
                    if k in e:
                        body.append(
                            [
                                k,
                                e[k]["share_after"],
                                e[k]["edit_success"],
                                e[k]["realism"]["fid"],
                                e[k]["realism"].get("coverage"),
                            ]
                        )
                parts.append(
                    f"<p>Rare values {', '.join(e['rare_values'])}; share in toyfaces renders "
                    f"{_f(e['share_in_renders'])}; target {_f(e.get('target_share'))}; "
                    f"{e.get('edited', 0)} of {e['n']} images edited with "
                    f"examples from {html.escape(e['examples_from'])}.</p>"
                )
                parts.append(_table(body, ["set", "share", "edit success", "FID", "coverage"]))
            parts.append(_img(out, e.get("examples"), e.get("examples_note", "")))
    nv = results.get("navigate")
    if nv:
        parts.append("<h2>Navigation: editing directions and how much they interfere</h2>")
        parts.append(
            "<p>Per attribute, a supervised direction (linear boundary on analyzer-labelled latents), its "
            "conditional version (the other attributes' directions projected out) and the best-matching "
            "unsupervised (PCA / SeFa) direction. Flip rate: share of samples that show the target after "
            "the edit; others unchanged: share of the other attributes' readings that stay the same. "
            "Edit by example: regression of a collage with the part pasted from an example; outside change "
            "is the mean |difference| outside the attribute's parts, navigation read at the same success "
            "rate.</p>"
        )
        if nv.get("skipped"):
            parts.append(f"<p>{html.escape(nv['skipped'])}</p>")
        for e in nv.get("models", []):
            if "summary" not in e:
                parts.append(f"<h3>{html.escape(e['model'])}</h3><p>{html.escape(e['skipped'])}</p>")
                continue
            parts.append(
                f"<h3>{html.escape(e['model'])} (directions in {e['space']}, "
                f"strength {e['strength']:g} std)</h3>"
            )
            body = [
                [k.replace("_", " "), v.get("flip_rate"), v.get("others_unchanged"),
                 v.get("others_unchanged_when_flipped")]
                for k, v in e["summary"].items()
            ]  # fmt: skip
            parts.append(_table(body, ["directions", "flip rate", "others unchanged", "… when flipped"]))
            g = e.get("geometry") or {}
            if g and "skipped" not in g:
                parts.append(
                    "<p>Geometric and colour walks (closed form from the first layer, Spingarn-Eliezer et "
                    "al.; steerability, Jahanian et al.; the image transform itself as the reference), read "
                    "from the analyzer's part maps: gain = achieved / asked for small amounts; reach = the "
                    "largest amount achieved before the face or the other attributes are lost; spread = how "
                    "much the samples vary on their own.</p>"
                )
                body = [
                    [
                        k,
                        w["method"],
                        w["gain"],
                        w["reach_negative"],
                        w["reach_positive"],
                        w["spread"],
                        w["unit"],
                    ]
                    for k, w in g.items()
                ]
                parts.append(_table(body, ["walk", "method", "gain", "reach −", "reach +", "spread", "unit"]))
            c = e.get("comparison") or {}
            if c.get("comparable"):
                parts.append(
                    f"<p>Edit by example vs navigation on {c['comparable']} comparable targets: navigation "
                    f"more local on {c['navigation_more_local']}; mean change outside the part "
                    f"{_f(c['navigation_matched_outside_change'])} (navigation, at edit by example's "
                    f"success {_f(c['example_success'])}) vs {_f(c['example_outside_change'])} "
                    "(edit by example).</p>"
                )
        parts.append(
            _img(out, nv.get("plot"), "Strips of edits (columns: strength in std); all targets' strips "
                 "are in navigate/strips/.")
        )  # fmt: skip
    parts.append("<h2>Settings</h2><pre>" + html.escape(json.dumps(jsonable(meta), indent=1)) + "</pre>")
    parts.append("</body></html>")
    return "\n".join(p for p in parts if p)


def run_report(
    pipes,
    out: Path,
    analyzer=None,
    analyzer_spec: str = "",
    sizes: Sizes | None = None,
    seed: int = 0,
    quick: bool = False,
    experiments=EXPERIMENTS,
    features="analyzer",
    device=None,
) -> dict:
    """Run the experiments and write report.html + report.json (+ each experiment's files) into `out`."""
    from .. import io
    from .independence import run_independence
    from .navigation import run_navigation
    from .parts import run_parts
    from .rebalance import run_rebalance
    from .tradeoff import run_tradeoff

    sizes = sizes or (Sizes.quick() if quick else Sizes.default())
    out = io.ensure_dir(out)
    t0 = time.perf_counter()
    results: dict = {}
    timings, cpu = {}, {}
    c0 = time.process_time()
    for name in experiments:
        t, c = time.perf_counter(), time.process_time()
        if name == "tradeoff":
            results[name] = run_tradeoff(pipes, out, analyzer, sizes, seed, features=features, device=device)
        elif name == "independence":
            results[name] = run_independence(pipes, out, analyzer, sizes, seed)
        elif name == "parts":
            results[name] = run_parts(pipes, out, analyzer, sizes, seed)
        elif name == "rebalance":
            results[name] = run_rebalance(pipes, out, analyzer, sizes, seed)
        elif name == "navigate":
            results[name] = run_navigation(pipes, out, analyzer, quick=quick, seed=seed)
        timings[name] = time.perf_counter() - t
        cpu[name] = time.process_time() - c
        log(f"report: {name} done in {timings[name]:.0f} s")
    results["meta"] = {
        "models": [model_label(p) for p in pipes],
        "seed": seed,
        "quick": quick,
        "sizes": sizes.as_dict(),
        "analyzer": analyzer_spec or ("custom" if analyzer is not None else "none"),
        "device": str(pipes[0].device) if pipes else "cpu",
        "threads": torch.get_num_threads(),
        "seconds": time.perf_counter() - t0,
        "seconds_per_experiment": timings,
        "cpu_seconds": time.process_time() - c0,
        "cpu_seconds_per_experiment": cpu,
    }
    results["headline"] = headline(results)
    io.write_text(out / "report.html", render_html(results, out))
    write_json(out / "report.json", {"meta": results["meta"], "headline": results["headline"]})
    return results
