"""What a GAN cannot draw (`latentcomp probe omissions`), after Bau et al. 2019.

On toyfaces renders (true part maps and attributes known), compare two reconstructions of the same
budget: the latent one (regressor + Adam refinement of the latent) and the layer-wise one (regressor,
then the activation of an intermediate layer optimised; `edit.layerwise`). Both pass through the same
upper layers, so where the layer-wise one draws a part and the latent one does not, the part is beyond
what the generator's latent space reaches. Per part: L1 inside the true part region, and the part's
recall (share of its true pixels that the analyzer finds as that part in the reconstruction); per
attribute: the analyzer's reading against the truth. Omission = layer-wise recall - latent recall.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch

from ..errors import LatentcompError


def _log(log, msg):
    if log is not None:
        log(msg)


def omissions(
    pipe,
    analyzer,
    n: int = 32,
    layer: str | None = None,
    steps: int = 100,
    seed: int = 0,
    batch: int = 16,
    log: Callable[[str], None] | None = None,
) -> dict:
    """Per-part and per-attribute comparison of latent vs layer-wise reconstructions of n toyfaces renders."""
    from ..data import toyfaces as tf
    from ..edit.layerwise import check_layer, invert_layer
    from ..navigate.directions import _predict

    if pipe.channels != 3 or pipe.resolution not in tf.RESOLUTIONS:
        raise LatentcompError(
            f"probe omissions needs a toyfaces model (3 channels, {tf.RESOLUTIONS} px); got "
            f"{pipe.channels}x{pipe.resolution}px"
        )
    if n < 1 or batch < 1:
        raise LatentcompError(f"--n and --batch must be at least 1; got {n} and {batch}")
    t0 = time.perf_counter()
    layer = check_layer(pipe.generator, layer)
    x, pm, gt = tf.ToyFaces(pipe.resolution, seed=8_181_000 + seed).render_batch(range(n))
    lat_imgs, lay_imgs, known = [], [], []
    from tqdm import tqdm

    for i in tqdm(range(0, n, batch), desc=f"omissions ({layer})", unit="batch", disable=log is None):
        r = invert_layer(pipe, x[i : i + batch], None, layer=layer, steps=steps)
        lat_imgs.append(r.latent_image)
        lay_imgs.append(r.image)
        known.append(torch.stack([r.latent_known_l1, r.known_l1], 1))
    lat, lay = torch.cat(lat_imgs), torch.cat(lay_imgs)
    l1 = torch.cat(known)
    a_lat, v_lat, pm_lat = _predict(analyzer, lat, partmap=True)
    a_lay, v_lay, pm_lay = _predict(analyzer, lay, partmap=True)
    names = list(analyzer.part_names)
    parts = {}
    err_lat = (lat - x).abs().mean(1)
    err_lay = (lay - x).abs().mean(1)
    for pid, part in enumerate(tf.PARTS):
        region = pm == pid
        count = int(region.sum())
        if count == 0:
            continue
        aid = names.index(part) if part in names else -1
        parts[part] = {
            "images": int(region.flatten(1).any(1).sum()),
            "pixel_share": count / region.numel(),
            "l1_latent": float(err_lat[region].mean()),
            "l1_layer": float(err_lay[region].mean()),
            "recall_latent": float((pm_lat[region] == aid).float().mean()),
            "recall_layer": float((pm_lay[region] == aid).float().mean()),
        }
        p = parts[part]
        p["omission"] = p["recall_layer"] - p["recall_latent"]
        p["l1_gain"] = p["l1_latent"] - p["l1_layer"]
    attrs = {}
    for j, attr in enumerate(tf.ATTRIBUTES):
        attrs[attr] = {
            "right_latent": float((a_lat[:, j] == gt[:, j]).float().mean()),
            "right_layer": float((a_lay[:, j] == gt[:, j]).float().mean()),
        }
        attrs[attr]["omission"] = attrs[attr]["right_layer"] - attrs[attr]["right_latent"]
    ranked = sorted(parts, key=lambda k: -parts[k]["omission"])
    res = {
        "model": str(getattr(pipe, "source", "") or pipe.generator.spec),
        "generator": pipe.generator.spec,
        "layer": layer,
        "n": n,
        "steps": steps,
        "seed": seed,
        "known_l1_latent": float(l1[:, 0].mean()),
        "known_l1_layer": float(l1[:, 1].mean()),
        "parts": parts,
        "attributes": attrs,
        "omitted_most": ranked[:3],
        "seconds": time.perf_counter() - t0,
        "_images": {"input": x[:4], "latent": lat[:4], "layer": lay[:4]},
    }
    _log(log, f"  {res['model']}: {n} renders, layer {layer}, {res['seconds']:.0f} s")
    return res


def _p(v: float) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{100 * v:.0f}%"


def markdown(res: dict) -> str:
    lines = [
        f"### {res['model']}: latent vs layer-wise ({res['layer']}) reconstruction, {res['n']} renders, "
        f"{res['steps']} steps each",
        "",
        f"Whole image L1: latent {res['known_l1_latent']:.4f}, layer-wise {res['known_l1_layer']:.4f}. "
        "Omitted most (largest recall gain of the layer-wise reconstruction): "
        f"{', '.join(res['omitted_most'])}.",
        "",
        "| part | pixels | L1 latent | L1 layer-wise | recall latent | recall layer-wise | omission |",
        "|---|---|---|---|---|---|---|",
    ]
    for part, p in sorted(res["parts"].items(), key=lambda kv: -kv[1]["omission"]):
        lines.append(
            f"| {part} | {_p(p['pixel_share'])} | {p['l1_latent']:.3f} | {p['l1_layer']:.3f} | "
            f"{_p(p['recall_latent'])} | {_p(p['recall_layer'])} | {100 * p['omission']:+.0f} pt |"
        )
    lines += [
        "",
        "| attribute | read right: latent | layer-wise | omission |",
        "|---|---|---|---|",
    ]
    for attr, a in sorted(res["attributes"].items(), key=lambda kv: -kv[1]["omission"]):
        lines.append(
            f"| {attr} | {_p(a['right_latent'])} | {_p(a['right_layer'])} | {100 * a['omission']:+.0f} pt |"
        )
    return "\n".join(lines) + "\n"


def summary_rows(results: list[dict]) -> list[str]:
    """One line per model: the parts it omits most, with their recall gap."""
    out = []
    for r in results:
        worst = ", ".join(f"{k} {100 * r['parts'][k]['omission']:+.0f} pt" for k in r["omitted_most"])
        out.append(f"| {r['model']} | {r['layer']} | {worst} |")
    return out


def figure(results: list[dict], path):
    """Rows per model: input | latent | layer-wise, for the first images."""
    from .. import io
    from ..navigate.edit import strip_grid

    rows = []
    for r in results:
        im = r["_images"]
        for i in range(min(2, im["input"].shape[0])):
            rows.append(torch.stack([im["input"][i], im["latent"][i], im["layer"][i]]))
    return io.save_image(strip_grid(torch.stack(rows)), path)


__all__ = ["figure", "markdown", "omissions", "summary_rows"]
