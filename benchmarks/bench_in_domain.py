"""In-domain inversion (Zhu et al. 2020) vs plain refinement on toyfaces renders with the lower half hidden.

    python benchmarks/bench_in_domain.py [--model toyfaces --model toyfaces-stylegan2] [--n 16]
        [--steps 30] [--weights 0.5,2] [--json OUT]

For each bundled model: n toyfaces renders (seed 123; real images to the GAN), lower half hidden. Methods:
the regressor alone, `refine` with Adam (the default objective), and `refine_method="in-domain"` at each
domain weight, all for the same steps. Figures per method (means over the images):

- known L1 / hidden L1: masked L1 of G(latent) against the render on the known / hidden pixels;
- attributes: fraction of the 10 toyfaces attributes the analyzer reads the same as the ground truth;
- gap: `Pipeline.domain_gap` = RMS of latent - E(G(latent)), how far the latent left the regressor's domain;
- editing: the latents moved along supervised directions (hair_style=bald, mouth_expression=open,
  glasses=sunglasses, skin_tone=dark; fitted on `--n-label` labelled samples) by 3 std: flip rate of
  the target (images that did not show it) and the fraction of the other attributes left unchanged.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

TARGETS = ("hair_style=bald", "mouth_expression=open", "glasses=sunglasses", "skin_tone=dark")


def run(
    models=("toyfaces", "toyfaces-stylegan2"),
    n: int = 16,
    steps: int = 30,
    weights=(0.5, 2.0),
    n_label: int = 400,
    strength: float = 3.0,
    log=print,
) -> dict:
    from latentcomp.data.toyfaces import ToyFaces
    from latentcomp.edit import Pipeline
    from latentcomp.edit.refine import masked_l1
    from latentcomp.metrics.analyzer import load_analyzer
    from latentcomp.navigate import attribute_directions, label_samples, parse_target
    from latentcomp.navigate.edit import move
    from latentcomp.navigate.evaluate import flip_metrics

    an = load_analyzer("builtin:toyfaces-analyzer")
    values = {k: list(v) for k, v in an.attribute_values.items()}
    names = list(values)
    out = {"n": n, "steps": steps, "weights": list(weights), "strength": strength, "models": {}}
    for model in models:
        pipe = Pipeline.from_pretrained(model)
        G = pipe.generator
        x, _, gt = ToyFaces(pipe.resolution, seed=123).render_batch(range(n))
        m = torch.ones(n, 1, pipe.resolution, pipe.resolution)
        m[..., pipe.resolution // 2 :, :] = 0
        t0 = time.perf_counter()
        samples = label_samples(G, an, n_label, seed=0)
        dirs = attribute_directions(samples, values, TARGETS, generator=G.spec)
        sec = time.perf_counter() - t0
        log(f"{model}: {len(dirs)} directions from {n_label} labelled samples ({sec:.0f} s)")
        runs = {"regressor": None, "adam": {"method": "adam"}}
        for w in weights:
            runs[f"in-domain w={w:g}"] = {"method": "in-domain", "domain_weight": float(w)}
        rows = {}
        for tag, kw in runs.items():
            t0 = time.perf_counter()
            lat = pipe.invert(x, m) if kw is None else pipe.refine(x, m, steps=steps, **kw).latent
            sec = (time.perf_counter() - t0) / n
            y = pipe.generate(lat).cpu()
            read = an.predict(y)
            a0 = read.attrs.cpu().long()
            v0 = getattr(read, "visible", None)
            v0 = torch.ones_like(a0, dtype=torch.bool) if v0 is None else v0.cpu().bool()
            flips, keeps = [], []
            for d in dirs:
                attr, ids, _ = parse_target(f"{d.meta['attribute']}={d.meta['target']}", values)
                j = names.index(attr)
                keep = v0[:, j] & ~torch.isin(a0[:, j], torch.tensor(ids))
                if not keep.any():
                    continue
                with torch.no_grad():
                    moved, sp = move(G, lat[keep].to(pipe.device), pipe.space, d, strength)
                    y2 = G(moved, space=sp).clamp(-1, 1).cpu()
                r2 = an.predict(y2)
                a1 = r2.attrs.cpu().long()
                v1 = getattr(r2, "visible", None)
                v1 = torch.ones_like(a1, dtype=torch.bool) if v1 is None else v1.cpu().bool()
                fm = flip_metrics((a0[keep], v0[keep]), (a1, v1), j, ids, names)
                flips.append(fm["flip_rate"])
                keeps.append(fm["others_unchanged"])
            rows[tag] = {
                "known_l1": float(masked_l1(y, x, m).mean()),
                "hidden_l1": float(masked_l1(y, x, 1 - m).mean()),
                "attributes_right": float((a0 == gt).float().mean()),
                "gap": float(pipe.domain_gap(lat).mean()),
                "edit_flip": sum(flips) / max(len(flips), 1),
                "edit_others_unchanged": sum(keeps) / max(len(keeps), 1),
                "seconds_per_image": sec,
            }
            r = rows[tag]
            log(
                f"  {tag:>16}: known L1 {r['known_l1']:.4f} hidden L1 {r['hidden_l1']:.4f} "
                f"attributes {r['attributes_right']:.3f} gap {r['gap']:.3f} edit flip {r['edit_flip']:.2f} "
                f"others {r['edit_others_unchanged']:.2f} ({sec:.2f} s/img)"
            )
        out["models"][model] = {"space": pipe.space, "rows": rows}
    return out


def table(res: dict) -> str:
    lines = [
        "| model | method | known L1 | hidden L1 | attributes right | gap ‖l − E(G(l))‖ | edit flip | "
        "others unchanged | s / image |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for model, r in res["models"].items():
        for tag, v in r["rows"].items():
            lines.append(
                f"| {model} ({r['space']}) | {tag} | {v['known_l1']:.4f} | {v['hidden_l1']:.4f} | "
                f"{100 * v['attributes_right']:.0f}% | {v['gap']:.3f} | {100 * v['edit_flip']:.0f}% | "
                f"{100 * v['edit_others_unchanged']:.0f}% | {v['seconds_per_image']:.2f} |"
            )
    return "\n".join(lines)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", help="toyfaces, toyfaces-stylegan2, ... (repeatable)")
    ap.add_argument("--n", type=int, default=16)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--weights", default="0.5,2")
    ap.add_argument("--n-label", type=int, default=400)
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    res = run(
        models=a.model or ("toyfaces", "toyfaces-stylegan2"),
        n=a.n,
        steps=a.steps,
        weights=[float(w) for w in a.weights.split(",") if w],
        n_label=a.n_label,
        log=lambda s: print(s, file=sys.stderr, flush=True),
    )
    print(table(res))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=2)


if __name__ == "__main__":
    main()
