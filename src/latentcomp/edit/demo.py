"""`latentcomp demo`: one HTML page that shows what the toolkit does, on the bundled toyfaces models.

Sections per model: automatic collages (sources, collage, regressor output, + refinement, Poisson, raw
collage), completions of masked images (several samples each), edits by example (add sunglasses, change
the mouth, the hair), and a table of figures measured in this run (composition accuracy via the
analyzer, error on the known pixels, time per image). Everything is seeded; `--quick` shrinks it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ..errors import LatentcompError
from .autocollage import toyfaces_collages
from .baselines import poisson_blend
from .evaluation import _accuracy
from .pipeline import Pipeline
from .refine import OptimConfig, masked_l1, optimise_latent
from .report import Page, mask_image, masked_view

DEFAULT_MODELS = ("toyfaces", "toyfaces-stylegan2")


@dataclass
class DemoSize:
    show: int  # collages shown
    measure: int  # collages measured for the table
    refine_steps: int
    completions: int  # masked inputs
    k: int  # completions per input
    edits: int


FULL = DemoSize(show=6, measure=96, refine_steps=20, completions=4, k=4, edits=4)
QUICK = DemoSize(show=3, measure=16, refine_steps=5, completions=2, k=3, edits=2)


def run_demo(
    out: str | Path = "out/demo",
    quick: bool = False,
    models: list[str] | None = None,
    seed: int = 0,
    log: Callable[[str], None] = print,
) -> Path:
    t_start = time.perf_counter()
    size = QUICK if quick else FULL
    names = list(models) if models else list(DEFAULT_MODELS[:1] if quick else DEFAULT_MODELS)
    pipes, missing = [], []
    for name in names:
        try:
            pipes.append(Pipeline.from_pretrained(name))
        except LatentcompError as e:
            missing.append(str(e))
    if not pipes:
        raise LatentcompError(
            "the demo needs the bundled toyfaces models, which are not installed: " + "; ".join(missing)
        )
    try:
        from ..metrics.analyzer import load_analyzer

        analyzer = load_analyzer("builtin:toyfaces-analyzer")
    except (LatentcompError, ImportError) as e:
        analyzer = None
        missing.append(f"analyzer: {e}")
    page = Page(out, "latentcomp demo: latent space regression on toyfaces")
    page.note(
        "A regressor E maps a masked image to the latent code of a frozen GAN G; G(E(x)) is a coherent image "
        "that keeps what is known and fills in the rest, in one forward pass. Every image on this page was "
        f"made by `latentcomp demo{' --quick' if quick else ''}` (seed {seed}); the figures at the end "
        "were measured in this run."
    )
    for msg in missing:
        page.note(f"Skipped: {msg}")
    figures: list[list] = []
    for pipe in pipes:
        label = f"{pipe.source} ({pipe.space})"
        log(f"demo: {label}: collages")
        _collages(page, pipe, analyzer, size, seed, label, figures)
        log(f"demo: {label}: completions")
        _completions(page, pipe, size, seed, label, figures)
        log(f"demo: {label}: edits by example")
        _edits(page, pipe, analyzer, size, seed, label, figures)
    page.h2("Figures measured in this run")
    page.table(["model", "what", "composition accuracy", "known-pixel L1", "ms / image", "notes"], figures)
    total = time.perf_counter() - t_start
    page.note(
        f"Total time {total:.1f} s on {torch.get_num_threads()} thread(s). Composition accuracy: the "
        "analyzer finds the pasted part's attribute in the output, averaged over parts (pairs where the "
        "part is visible). Known-pixel L1: mean absolute error on the collage's known pixels, images in "
        "[-1, 1]. Poisson: OpenCV "
        "seamlessClone part by part, parts under 10% of the image skipped (as in the paper's evaluation). "
        "Time per image: batched, this machine, this run."
    )
    return page.write()


def _time_ms(seconds: float, n: int) -> float:
    return seconds / max(n, 1) * 1000


def _collages(page: Page, pipe: Pipeline, analyzer, size: DemoSize, seed: int, label: str, figures) -> None:
    if pipe.channels != 3:
        page.note(f"{label}: automatic toyfaces collages need a 3-channel generator; skipped.")
        return
    n = max(size.show, size.measure)
    coll = toyfaces_collages(n, pipe.resolution, seed=seed)
    images, masks = coll.parts()
    collage, known, visible = coll.collage()
    G, E, space = pipe.generator, pipe.regressor, pipe.space
    t0 = time.perf_counter()
    with torch.no_grad():
        latent = E(collage, known)
        reg = G(latent, space=space).clamp(-1, 1)
    t_reg = time.perf_counter() - t0
    t0 = time.perf_counter()
    poi = poisson_blend(images, masks)
    t_poi = time.perf_counter() - t0
    k = size.show
    t0 = time.perf_counter()
    r = optimise_latent(G, E, space, collage[:k], known[:k], latent[:k], OptimConfig(steps=size.refine_steps))
    with torch.no_grad():
        ref = G(r.latent, space=space).clamp(-1, 1)
    t_ref = time.perf_counter() - t0 + t_reg / n * k

    page.h2(f"Collages -> {label}")
    page.note(
        "Each collage pastes the parts (background, skin, hair, eyes, eyebrows, nose, mouth, glasses) of 3-4 "
        "toyfaces renders in a fixed order; the grey area is unknown. The regressor turns the collage "
        f"into one face; refinement adds {size.refine_steps} Adam steps on the latent; Poisson and the raw "
        "collage are "
        "the non-GAN baselines."
    )
    rows, caps = [], []
    for i in range(k):
        srcs = [coll.source_images[i, s] for s in range(int(coll.n_sources[i]))]
        srcs += [None] * (coll.source_images.shape[1] - len(srcs))
        rows.append(srcs + [masked_view(collage[i], known[i]), reg[i], ref[i], poi[i], collage[i]])
        sl = slice(i, i + 1)
        l1s = [float(masked_l1(img[sl], collage[sl], known[sl])) for img in (reg, ref, poi)]
        caps.append(f"known-pixel L1: regressor {l1s[0]:.3f}, refined {l1s[1]:.3f}, Poisson {l1s[2]:.3f}")
    cols = [f"source {s + 1}" for s in range(coll.source_images.shape[1])]
    page.grid(cols + ["collage", "regressor", "+ refine", "Poisson", "raw collage"], rows, caps)

    acc = {}
    if analyzer is not None:
        counted = coll.counted(visible, analyzer)
        for name, imgs in (("regressor", reg), ("Poisson", poi), ("raw collage", collage)):
            acc[name] = _accuracy(analyzer.predict(imgs, logits=False).attrs, coll, counted)[
                "composition_accuracy"
            ]
        sub = coll[:k]
        acc["regressor + refine"] = _accuracy(
            analyzer.predict(ref, logits=False).attrs, sub, sub.counted([v[:k] for v in visible], analyzer)
        )["composition_accuracy"]
    nan = math.nan
    note_n = f"{n} collages" if analyzer is not None else f"{n} collages; no analyzer, accuracy n/a"
    figures += [
        [
            label,
            "collage: regressor",
            acc.get("regressor", nan),
            float(masked_l1(reg, collage, known).mean()),
            _time_ms(t_reg, n),
            note_n,
        ],
        [
            label,
            f"collage: regressor + {size.refine_steps} refine steps",
            acc.get("regressor + refine", nan),
            float(r.known_l1.mean()),
            _time_ms(t_ref, k),
            f"{k} collages",
        ],
        [
            label,
            "collage: Poisson",
            acc.get("Poisson", nan),
            float(masked_l1(poi, collage, known).mean()),
            _time_ms(t_poi, n),
            note_n,
        ],
        [label, "collage: raw", acc.get("raw collage", nan), 0.0, 0.0, note_n],
    ]


def _demo_masks(n: int, res: int, seed: int) -> torch.Tensor:
    from ..masks import noise_masks

    m = torch.ones(n, 1, res, res)
    g = torch.Generator().manual_seed(seed)
    kinds = ["lower", "noise", "centre", "right"]
    for i in range(n):
        kind = kinds[i % len(kinds)]
        if kind == "lower":
            m[i, :, res // 2 :] = 0
        elif kind == "noise":
            m[i] = noise_masks(1, res, generator=g, cutoff=0.5)[0]
        elif kind == "centre":
            m[i, :, res // 4 : 3 * res // 4, res // 5 : 4 * res // 5] = 0
        else:
            m[i, :, :, res // 2 :] = 0
    return m


def _completions(page: Page, pipe: Pipeline, size: DemoSize, seed: int, label: str, figures) -> None:
    n, k = size.completions, size.k
    x = _inputs(pipe, n, seed + 101)
    m = _demo_masks(n, pipe.resolution, seed)
    res = pipe.inpaint(x, m, n=k, seed=seed)
    page.h2(f"Completions -> {label}")
    page.note(
        f"Each input is hidden where the mask is black; {k} completions each. Completion 1 is the "
        "regressor's "
        "own answer; the others fill the hidden region with a random GAN sample before regressing ("
        f"method '{res.method}'), so they differ in the hidden region and keep the known one."
    )
    rows, caps = [], []
    for i in range(n):
        rows.append(
            [x[i], masked_view(res.input[i], res.mask[i]), mask_image(res.mask[i])]
            + [res.images[i, j] for j in range(k)]
        )
        caps.append(
            f"diversity (pairwise L1 in the hidden region) {float(res.diversity[i]):.3f}; "
            f"known-pixel L1 {float(res.known_error[i].mean()):.3f}"
        )
    page.grid(["original", "input", "mask"] + [f"completion {j + 1}" for j in range(k)], rows, caps)
    figures.append(
        [
            label,
            f"completion: {k} samples",
            math.nan,
            float(res.known_error.mean()),
            _time_ms(res.seconds, n * k),
            f"diversity {float(torch.nanmean(res.diversity)):.3f} (pairwise L1, hidden region)",
        ]
    )


def _inputs(pipe: Pipeline, n: int, seed: int) -> torch.Tensor:
    """n toyfaces renders at the pipeline's size (3 channels), else generator samples."""
    if pipe.channels == 3:
        from ..data.toyfaces import RESOLUTIONS, ToyFaces

        if pipe.resolution in RESOLUTIONS:
            return ToyFaces(pipe.resolution, seed=seed).render_batch(list(range(n)))[0]
    return pipe.sample(n, seed=seed).cpu()


# (title, toyfaces part, attribute, value of the example, value of the target)
_EDITS = [
    ("add sunglasses", "glasses", "glasses", 3, 0),
    ("open the mouth", "mouth", "mouth_expression", 2, 0),
    ("change the hair", "hair", "hair_colour", 3, 0),
    ("add round glasses", "glasses", "glasses", 1, 0),
]


def _edits(page: Page, pipe: Pipeline, analyzer, size: DemoSize, seed: int, label: str, figures) -> None:
    if pipe.channels != 3:
        return
    from ..data.toyfaces import ATTRIBUTES, PART_ID, RESOLUTIONS, ToyFaces

    if pipe.resolution not in RESOLUTIONS:
        return
    ds = ToyFaces(pipe.resolution, seed=seed + 303)
    rows, caps, hits, counted, secs = [], [], 0, 0, 0.0
    for e, (title, part, attr, ex_val, tgt_val) in enumerate(_EDITS[: size.edits]):
        overrides_t = {attr: tgt_val}
        overrides_x = {attr: ex_val}
        if attr == "hair_colour":  # hair needs a visible style on the example
            overrides_x["hair_style"] = 3
        tgt, tgt_parts, _ = ds.render_batch([2 * e], overrides=overrides_t)
        ex, ex_parts, ex_attrs = ds.render_batch([2 * e + 1], overrides=overrides_x)
        region = ((ex_parts == PART_ID[part]) | (tgt_parts == PART_ID[part])).float().unsqueeze(1)
        region = F.max_pool2d(region, 3, 1, 1)  # a 1-pixel margin around the part
        res = pipe.edit(tgt, ex, region)
        secs += res.seconds
        cap = title
        if analyzer is not None:
            j = list(ATTRIBUTES).index(attr)
            got = int(analyzer.predict(res.image, logits=False).attrs[0, j])
            want = int(ex_attrs[0, j])
            hits += int(got == want)
            counted += 1
            cap += f": analyzer sees {attr} = {ATTRIBUTES[attr][got]} (example: {ATTRIBUTES[attr][want]})"
        rows.append([tgt[0], ex[0], mask_image(region[0]), res.collage[0], res.image[0]])
        caps.append(cap)
    page.h2(f"Edits by example -> {label}")
    page.note(
        "The region (white) of the example is pasted onto the target and the collage is regressed as a "
        "whole: "
        "the GAN adapts the pasted content (and its surroundings) to the target."
    )
    page.grid(["target", "example", "region", "collage", "output"], rows, caps)
    acc = hits / counted if counted else math.nan
    figures.append(
        [
            label,
            f"edit by example ({len(rows)})",
            acc,
            math.nan,
            _time_ms(secs, len(rows)),
            "accuracy = analyzer finds the example's attribute",
        ]
    )
