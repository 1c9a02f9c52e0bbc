"""Geometric and colour edits: walks in latent space that zoom, shift, rotate or brighten the image.

Two ways to find them, both stored as ordinary `Direction`s (unit vector + `meta["transform"]`,
`meta["unit"]` and `meta["per_unit"]`, the latent distance that moves the image by one unit of the
transform):

- `closed_form_directions` (Spingarn-Eliezer et al. 2021, "GAN steerability without optimization"):
  the transform T is applied to the activations h of G's first feature layer, and the direction q is
  the least-squares solution of J q = T(h) - h, summed over sampled latents, where J = dh/dlatent. For a
  purely linear first layer h = W z + b this is the paper's q = pinv(W) (T - I) b (the z term averages
  out); taking the Jacobian at sampled latents also covers a first layer with a nonlinearity (DCGAN:
  transposed conv -> BatchNorm -> ReLU) or a style-modulated one (StyleGAN2, GANsformer). No training:
  one forward-mode pass per latent dimension, up to the first layer only.
- `steer_directions` (Jahanian, Chai & Isola 2020, "On the steerability of GANs"): a linear walk w
  optimised so that G(latent + a w) matches T_a(G(latent)) in L2 on the pixels T_a defines, for amounts
  a drawn uniformly from the transform's training range (Adam).

Transforms and their units (the `amount` of an edit):

    shift_x, shift_y   fraction of the image width / height (0.1 = content moves 10% right / down)
    zoom               log2 of the scale factor (1 = twice as large, -1 = half)
    rotate             degrees, positive = clockwise on screen (toyfaces' `angle` convention)
    brightness         added to the pixel values in [0, 1] units (0.1 = 10% brighter)

`face_geometry` reads, from a toyfaces part map, the face's centre, size and eye-line angle and the
image's brightness, so that `evaluate_geometry` can measure each edit against what was asked: the
achieved amount, the largest amount that still achieves at least half of what was asked (`limit`), and
the other attributes' stability (interference) read by the analyzer.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import LatentcompError
from .directions import Direction, _check_space, default_space, projection_std, sample_latents


@dataclass(frozen=True)
class Transform:
    name: str
    unit: str
    train_range: float  # steer: amounts drawn from U(-r, r)
    epsilon: float  # closed form: the amount whose feature-space target is solved for
    amounts: tuple[float, ...]  # evaluation sweep (positive side; the negatives are added)
    geometric: bool = True


TRANSFORMS: dict[str, Transform] = {
    "shift_x": Transform(
        "shift_x", "fraction of the image width", 0.1, 0.0625, (0.01, 0.02, 0.04, 0.08, 0.16)
    ),
    "shift_y": Transform(
        "shift_y", "fraction of the image height", 0.1, 0.0625, (0.01, 0.02, 0.04, 0.08, 0.16)
    ),
    "zoom": Transform("zoom", "log2 of the scale factor", 0.4, 0.25, (0.05, 0.1, 0.2, 0.4, 0.8)),
    "rotate": Transform("rotate", "degrees, clockwise", 16.0, 10.0, (2.0, 4.0, 8.0, 16.0, 32.0)),
    "brightness": Transform(
        "brightness", "pixel value in [0, 1] units", 0.2, 0.1, (0.02, 0.05, 0.1, 0.2, 0.4), geometric=False
    ),
}
GEOMETRIC = tuple(k for k, t in TRANSFORMS.items() if t.geometric)


def parse_transforms(spec: str | Sequence[str] | None, geometric_only: bool = False) -> list[str]:
    """'zoom,shift_x' | ['zoom'] | None (all) -> transform names, checked."""
    allowed = GEOMETRIC if geometric_only else tuple(TRANSFORMS)
    if spec is None or (isinstance(spec, str) and spec.strip().lower() in ("", "all")):
        return list(allowed)
    names = [s.strip() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    bad = [n for n in names if n not in allowed]
    if bad or not names:
        extra = (
            " (brightness is not a geometric transform: learn it with --method steer)"
            if (geometric_only and "brightness" in bad)
            else ""
        )
        raise LatentcompError(
            f"unknown transform(s) {', '.join(bad) or '(none)'}; accepted: {', '.join(allowed)}{extra}"
        )
    return list(dict.fromkeys(names))


# ------------------------------------------------------------------------------------------- transforms
def _amounts(amount, n: int, device) -> torch.Tensor:
    a = torch.as_tensor(amount, dtype=torch.float32, device=device).reshape(-1)
    return a.expand(n) if a.numel() == 1 else a


def _theta(kind: str, a: torch.Tensor) -> torch.Tensor:
    """(N, 2, 3) affine_grid matrices mapping output coordinates to input coordinates (x right, y down)."""
    n = a.shape[0]
    th = torch.zeros(n, 2, 3, device=a.device)
    if kind == "shift_x":
        th[:, 0, 0] = th[:, 1, 1] = 1
        th[:, 0, 2] = -2 * a
    elif kind == "shift_y":
        th[:, 0, 0] = th[:, 1, 1] = 1
        th[:, 1, 2] = -2 * a
    elif kind == "zoom":
        s = torch.pow(2.0, -a)
        th[:, 0, 0] = th[:, 1, 1] = s
    elif kind == "rotate":
        r = a * math.pi / 180
        c, s = torch.cos(r), torch.sin(r)
        th[:, 0, 0], th[:, 0, 1], th[:, 1, 0], th[:, 1, 1] = c, s, -s, c
    else:
        raise LatentcompError(f"{kind} is not a geometric transform; accepted: {', '.join(GEOMETRIC)}")
    return th


def transform_images(x: torch.Tensor, kind: str, amount) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply a transform to images (N, C, H, W) in [-1, 1] by `amount` (a number or (N,) per image).
    Returns (images, valid (N, 1, H, W)): valid = 1 where the output is defined (inside the source image);
    elsewhere the images repeat the source's border pixels."""
    if kind not in TRANSFORMS:
        raise LatentcompError(f"unknown transform {kind!r}; accepted: {', '.join(TRANSFORMS)}")
    a = _amounts(amount, x.shape[0], x.device)
    if kind == "brightness":
        return (x + 2 * a.view(-1, 1, 1, 1)).clamp(-1, 1), torch.ones_like(x[:, :1])
    grid = F.affine_grid(_theta(kind, a), list(x.shape), align_corners=False)
    # undefined pixels repeat the border (a background colour, not a black frame); `valid` marks them
    y = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    ones = torch.ones_like(x[:, :1])
    valid = F.grid_sample(ones, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return y, (valid > 0.999).float()


def transform_features(h: torch.Tensor, kind: str, amount) -> torch.Tensor:
    """The same geometric transform on feature maps (N, C, h, w), borders replicated."""
    a = _amounts(amount, h.shape[0], h.device)
    grid = F.affine_grid(_theta(kind, a), list(h.shape), align_corners=False)
    return F.grid_sample(h, grid, mode="bilinear", padding_mode="border", align_corners=False)


# ------------------------------------------------------------------------------------------- measuring
#: toyfaces parts that make up the face (hair left out: its style changes the outline)
FACE_PARTS = ("skin", "eyes", "eyebrows", "nose", "mouth", "glasses")
#: the inner features: their centroid and spread give the face's centre and size (the skin region also
#: holds the neck, which the image border cuts off as the face moves)
INNER_PARTS = ("eyes", "eyebrows", "nose", "mouth", "glasses")
EYE_PARTS = ("eyes", "glasses")


def face_geometry(partmap: torch.Tensor, images: torch.Tensor, part_names: Sequence[str]) -> dict:
    """Per image (N,): cx, cy (centroid of the inner features: eyes, eyebrows, nose, mouth, glasses;
    normalised coordinates in [-1, 1], y down), scale (log2 of the RMS distance of those pixels from
    their centroid), angle (degrees of the line from the left to the right eye centroid, clockwise
    positive), brightness (mean pixel value in [0, 1]) and found (a face, skin included, of at least 1%
    of the image with 8 or more inner-feature pixels). NaN where a value cannot be read."""
    names = list(part_names)
    n, H, W = partmap.shape

    def mask(parts):
        ids = torch.tensor([names.index(p) for p in parts if p in names], dtype=torch.long)
        return torch.isin(partmap.cpu(), ids).float()

    face, inner, eyes = mask(FACE_PARTS), mask(INNER_PARTS), mask(EYE_PARTS)
    ys = (torch.arange(H, dtype=torch.float32) + 0.5) / H * 2 - 1
    xs = (torch.arange(W, dtype=torch.float32) + 0.5) / W * 2 - 1
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    count = inner.flatten(1).sum(1)
    found = (face.flatten(1).sum(1) >= 0.01 * H * W) & (count >= 8)
    safe = count.clamp(min=1)
    cx = (inner * gx).flatten(1).sum(1) / safe
    cy = (inner * gy).flatten(1).sum(1) / safe
    d2 = (gx - cx.view(-1, 1, 1)) ** 2 + (gy - cy.view(-1, 1, 1)) ** 2
    spread = ((inner * d2).flatten(1).sum(1) / safe).clamp(min=1e-12).sqrt()
    nan = torch.full_like(cx, math.nan)
    left = eyes * (gx < cx.view(-1, 1, 1))
    right = eyes * (gx >= cx.view(-1, 1, 1))
    nl, nr = left.flatten(1).sum(1), right.flatten(1).sum(1)
    lx = (left * gx).flatten(1).sum(1) / nl.clamp(min=1)
    ly = (left * gy).flatten(1).sum(1) / nl.clamp(min=1)
    rx = (right * gx).flatten(1).sum(1) / nr.clamp(min=1)
    ry = (right * gy).flatten(1).sum(1) / nr.clamp(min=1)
    angle = torch.rad2deg(torch.atan2(ry - ly, rx - lx))
    eyes_ok = found & (nl >= 2) & (nr >= 2)
    return {
        "cx": torch.where(found, cx, nan),
        "cy": torch.where(found, cy, nan),
        "scale": torch.where(found, torch.log2(spread), nan),
        "angle": torch.where(eyes_ok, angle, nan),
        "brightness": ((images.float().cpu() + 1) / 2).mean((1, 2, 3)),
        "found": found,
    }


def achieved(kind: str, before: dict, after: dict) -> torch.Tensor:
    """(N,) the amount of `kind` between two `face_geometry` readings, in the transform's units."""
    if kind == "shift_x":
        return (after["cx"] - before["cx"]) / 2
    if kind == "shift_y":
        return (after["cy"] - before["cy"]) / 2
    if kind == "zoom":
        return after["scale"] - before["scale"]
    if kind == "rotate":
        d = after["angle"] - before["angle"]
        return (d + 180) % 360 - 180
    if kind == "brightness":
        return after["brightness"] - before["brightness"]
    raise LatentcompError(f"unknown transform {kind!r}; accepted: {', '.join(TRANSFORMS)}")


# ------------------------------------------------------------------------------------------- latents
def _lat_space(space: str) -> str:
    return "z" if space == "z" else "w"


def _as_latent(G, flat: torch.Tensor, space: str) -> torch.Tensor:
    """Flattened latents (N, D) from `sample_latents` -> what G takes in `space` ('z' or 'w')."""
    shape = G.latent_shape if space == "z" else G.space_shape("w")
    return flat.reshape(-1, *shape)


def _add(G, lat: torch.Tensor, space: str, vec: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """lat + a * vec, a (N,): z directions cover the whole z; w directions (w_dim) broadcast over a
    structured w (GANsformer's components) the way `move` does."""
    if space == "z":
        flat = lat.reshape(lat.shape[0], -1) + a.view(-1, 1) * vec.view(1, -1)
        return flat.reshape(lat.shape)
    shape = [lat.shape[0]] + [1] * (lat.dim() - 1)
    return lat + a.view(shape) * vec


def transform_move(G, latent: torch.Tensor, space: str, d: Direction, amount) -> torch.Tensor:
    """Move latents (N, ...) in `space` (z or w) along a walk by `amount` units of its transform
    (`amount` a number or (N,)); returns the moved latents in the same space."""
    per_unit = d.meta.get("per_unit")
    if per_unit is None:
        raise LatentcompError(
            f"direction {d.name!r} has no transform scale (meta per_unit); it was not made by "
            "--method geometric or steer"
        )
    if d.space != space and not (d.space in ("w", "w+") and space == "w"):
        raise LatentcompError(f"direction {d.name!r} lives in {d.space}; the latents are in {space}")
    if callable(getattr(d, "walk", None)):  # a non-linear walk (navigate.nonlinear) follows its own path
        return d.walk(latent, space, amount)
    a = _amounts(amount, latent.shape[0], latent.device) * float(per_unit)
    return _add(G, latent, space, d.vector.to(latent.device), a)


def _first_layer(G, layer: str | None) -> str:
    names = list(G.feature_layers())
    if layer is not None:
        if str(layer) not in names:
            raise LatentcompError(f"unknown feature layer {layer!r}; available: {', '.join(names)}")
        return str(layer)
    for name in names:
        if name != "mapping":
            return name
    raise LatentcompError(f"{type(G).__name__} lists no feature layers; give --layer")


class _Stop(Exception):
    pass


def _features_upto(G, lat: torch.Tensor, space: str, layer: str) -> torch.Tensor:
    """G's activation at `layer`, running G only up to it (a hook captures it and stops the forward)."""
    module = dict(G.named_modules())[G.feature_layers()[layer]]
    captured: list[torch.Tensor] = []

    def hook(_m, _i, out):
        captured.append(out[0] if isinstance(out, tuple) else out)
        raise _Stop

    handle = module.register_forward_hook(hook)
    try:
        G(lat, space=space)
    except _Stop:
        pass
    finally:
        handle.remove()
    if not captured:
        raise LatentcompError(f"feature layer {layer!r} was not reached by a forward pass")
    return captured[0]


# ------------------------------------------------------------------------------------------- closed form
def closed_form_directions(
    G,
    transforms: str | Sequence[str] | None = None,
    space: str | None = None,
    layer: str | None = None,
    n: int = 64,
    seed: int = 0,
    batch: int = 8,
    ridge: float = 1e-4,
    progress: bool = False,
) -> list[Direction]:
    """Geometric walks without training (Spingarn-Eliezer et al.): per transform, q = argmin sum_i
    ||J_i q - (T_eps(h_i) - h_i)||^2 + ridge * tr(sum J^T J) / D ||q||^2 over n sampled latents, h_i the
    activation of the first feature layer (or `layer`), J_i its Jacobian (forward mode). The direction
    is q / |q|; meta["per_unit"] = |q| / eps."""
    from torch.autograd import forward_ad as fwAD

    names = parse_transforms(transforms, geometric_only=True)
    space = space or default_space(G)
    _check_space(G, space)
    if space == "w+":
        raise LatentcompError("geometric directions live in z or w; use --space w for a w+ generator")
    layer = _first_layer(G, layer)
    z, flat = sample_latents(G, n, seed, _lat_space(space))
    D = flat.shape[1] if space == "z" else int(G.w_dim)
    JtJ = torch.zeros(D, D, dtype=torch.float64)
    Jtr = {k: torch.zeros(D, dtype=torch.float64) for k in names}
    shape = None
    rng = range(0, n, batch)
    if progress:
        from tqdm import tqdm

        rng = tqdm(rng, desc="closed-form Jacobians", unit="batch")
    basis = torch.eye(D, device=G.device)
    for i in rng:
        lat = _as_latent(G, flat[i : i + batch], space).to(G.device)
        b = lat.shape[0]
        # one dual forward per latent dimension, all in one batch: sample j, tangent e_k at row j * D + k
        rep = lat.repeat_interleave(D, 0)
        if space == "z":
            tan = basis.repeat(b, 1).reshape(rep.shape)
        else:  # a w direction moves every component of a structured w
            tan = basis.repeat(b, 1).view(b * D, *([1] * (rep.dim() - 2)), D).expand_as(rep).contiguous()
        with torch.no_grad(), fwAD.dual_level():
            h_dual = _features_upto(G, fwAD.make_dual(rep, tan), space, layer)
            h, jac = fwAD.unpack_dual(h_dual)
        if jac is None:
            raise LatentcompError(f"layer {layer!r} of {type(G).__name__} does not depend on the latent")
        shape = tuple(h.shape[1:])
        if len(shape) != 3:
            raise LatentcompError(f"layer {layer!r} gives {shape}; the closed form needs a (C, H, W) map")
        J = jac.reshape(b, D, -1).double().cpu()  # (b, D, P): row k = dh/dlatent_k
        h0 = h.reshape(b, D, *shape)[:, 0].float()
        JtJ += torch.einsum("bkp,blp->kl", J, J)
        for k in names:
            r = (transform_features(h0, k, TRANSFORMS[k].epsilon) - h0).reshape(b, -1).double().cpu()
            Jtr[k] += torch.einsum("bkp,bp->k", J, r)
    lam = ridge * float(torch.trace(JtJ)) / D
    A = JtJ + lam * torch.eye(D, dtype=torch.float64)
    _, lat_std = sample_latents(G, 2000, int(seed) + 7919, _lat_space(space))
    out = []
    for k in names:
        q = torch.linalg.solve(A, Jtr[k]).float()
        if not torch.isfinite(q).all() or float(q.norm()) == 0:
            raise LatentcompError(f"closed form for {k}: no latent direction moves layer {layer} that way")
        lat_std_k = lat_std if space == "z" else lat_std.reshape(lat_std.shape[0], -1, D)[:, 0]
        eps = TRANSFORMS[k].epsilon
        out.append(
            Direction(
                name=k,
                vector=q,
                space=space,
                generator=G.spec,
                method="closed-form",
                std=projection_std(lat_std_k, q),
                meta={
                    "transform": k,
                    "unit": TRANSFORMS[k].unit,
                    "per_unit": float(q.norm()) / eps,
                    "epsilon": eps,
                    "layer": layer,
                    "layer_shape": list(shape) if shape else None,
                    "samples": n,
                    "seed": seed,
                },
            )
        )
    return out


# ------------------------------------------------------------------------------------------- steerability

def walk_loss(G, k: str, space: str, batch: int, generator: torch.Generator, move) -> torch.Tensor:
    """The steerability objective on one batch: random amounts in transform `k`'s training range, and the
    masked mean squared error between G at the walked latent `move(lat, a)` and the transformed G(lat)."""
    z = G.sample_latent(batch, generator=generator)
    a = (torch.rand(batch, generator=generator) * 2 - 1).to(G.device) * TRANSFORMS[k].train_range
    with torch.no_grad():
        lat = z if space == "z" else G.mapping(z)
        target, valid = transform_images(G(lat, space=space), k, a)
    img = G(move(lat, a), space=space)
    err = ((img - target) ** 2 * valid).flatten(1).sum(1)
    return (err / (valid.flatten(1).sum(1).clamp(min=1) * img.shape[1])).mean()


def steer_directions(
    G,
    transforms: str | Sequence[str] | None = None,
    space: str | None = None,
    steps: int = 200,
    batch: int = 8,
    lr: float = 0.02,
    seed: int = 0,
    init: Sequence[Direction] | None = None,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> list[Direction]:
    """Linear walks learned by optimisation (Jahanian et al.): per transform, w minimises
    mean over latents and amounts a ~ U(-r, r) of ||(G(l + a w) - T_a(G(l))) * valid||^2 / |valid|.
    Adam on w for `steps` steps of `batch` fresh latents. `init`: start from these walks (same names),
    e.g. the closed form's; else from zero. The direction is w / |w|; meta["per_unit"] = |w|. (An L2
    objective undershoots where G cannot follow: a faint half-way change costs less than a sharp image in
    the wrong place; `evaluate_geometry` measures how much of each amount a walk delivers.)"""
    names = parse_transforms(transforms)
    space = space or default_space(G)
    _check_space(G, space)
    if space == "w+":
        raise LatentcompError("steerability walks live in z or w; use --space w for a w+ generator")
    if steps < 1 or batch < 1:
        raise LatentcompError(f"--steps and --batch must be at least 1; got {steps} and {batch}")
    D = int(math.prod(G.latent_shape)) if space == "z" else int(G.w_dim)
    starts = {d.name: d for d in (init or [])}
    _, lat_std = sample_latents(G, 2000, int(seed) + 7919, _lat_space(space))
    if space != "z":
        lat_std = lat_std.reshape(lat_std.shape[0], -1, D)[:, 0]
    out = []
    for k in names:
        t0 = time.perf_counter()
        tr = TRANSFORMS[k]
        if k in starts and starts[k].meta.get("per_unit"):
            w0 = starts[k].vector * float(starts[k].meta["per_unit"])
        else:
            w0 = torch.zeros(D)
        w = w0.clone().to(G.device).requires_grad_(True)
        opt = torch.optim.Adam([w], lr=lr)
        g = torch.Generator().manual_seed(int(seed) * 1000 + list(TRANSFORMS).index(k))
        rng = range(steps)
        if progress:
            from tqdm import tqdm

            rng = tqdm(rng, desc=f"steer {k}", unit="step", leave=False)
        losses = []
        for _ in rng:
            loss = walk_loss(G, k, space, batch, g, lambda lat, a, w=w: _add(G, lat, space, w, a))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
        v = w.detach().cpu()
        if float(v.norm()) == 0:
            raise LatentcompError(f"steer {k}: the walk stayed at zero (the loss has no gradient)")
        tail = losses[-max(1, steps // 10) :]
        if log is not None:
            log(
                f"  steer {k}: loss {np.mean(losses[: max(1, steps // 10)]):.4f} -> {np.mean(tail):.4f} "
                f"({time.perf_counter() - t0:.0f} s)"
            )
        out.append(
            Direction(
                name=k,
                vector=v,
                space=space,
                generator=G.spec,
                method="steer",
                std=projection_std(lat_std, v),
                meta={
                    "transform": k,
                    "unit": tr.unit,
                    "per_unit": float(v.norm()),
                    "train_range": tr.train_range,
                    "steps": steps,
                    "batch": batch,
                    "lr": lr,
                    "seed": seed,
                    "final_loss": float(np.mean(tail)),
                    "init": starts[k].method if k in starts else "zero",
                },
            )
        )
    return out


# ------------------------------------------------------------------------------------------- evaluation
def _read(analyzer, images: torch.Tensor, batch: int):
    from .directions import _predict

    attrs, vis, pms = [], [], []
    for i in range(0, images.shape[0], batch):
        a, v, pm = _predict(analyzer, images[i : i + batch], partmap=True)
        attrs.append(a)
        vis.append(v)
        pms.append(pm)
    pm = torch.cat(pms)
    geom = face_geometry(pm, images, analyzer.part_names)
    return torch.cat(attrs), torch.cat(vis), geom


def _nanmean(t: torch.Tensor) -> float:
    t = t[~torch.isnan(t)]
    return float(t.mean()) if t.numel() else math.nan


def _nanstd(t: torch.Tensor) -> float:
    t = t[~torch.isnan(t)]
    return float(t.std()) if t.numel() > 1 else math.nan


def _unchanged(a0, v0, a1, v1) -> float:
    """Mean over attributes of the share of images whose reading stayed (visible before and after)."""
    vals = []
    for j in range(a0.shape[1]):
        c = v0[:, j] & v1[:, j]
        if c.any():
            vals.append(float((a0[c, j] == a1[c, j]).float().mean()))
    return float(np.mean(vals)) if vals else math.nan


def _gain(rows: Sequence[dict]) -> float:
    """Achieved / asked at the smallest amount on each side, averaged."""
    small = min(abs(r["amount"]) for r in rows)
    vals = [r["ratio"] for r in rows if abs(r["amount"]) == small and not math.isnan(r["ratio"])]
    return float(np.mean(vals)) if vals else math.nan


def sweep_amounts(kind: str, amounts: Sequence[float] | None = None) -> list[float]:
    pos = sorted({abs(float(a)) for a in (amounts or TRANSFORMS[kind].amounts) if a != 0})
    return [-a for a in reversed(pos)] + pos


def edit_reach(rows: Sequence[dict], keep: float = 0.8, found: float = 0.9) -> dict:
    """How far the edit can be pushed before it fails: on each side, the largest achieved amount (in the
    asked direction) among the amounts, taken in order, up to the first that loses the face (readable in
    under `found` of the images) or the other attributes (unchanged in under `keep`)."""
    out = {}
    for sign, key in ((1, "positive"), (-1, "negative")):
        best, at = 0.0, 0.0
        for r in sorted((r for r in rows if r["amount"] * sign > 0), key=lambda r: abs(r["amount"])):
            ok_attr = math.isnan(r["others_unchanged"]) or r["others_unchanged"] >= keep
            if r["found"] < found or not ok_attr:
                break
            if not math.isnan(r["achieved"]) and r["achieved"] * sign > best:
                best, at = r["achieved"] * sign, abs(r["amount"])
        out[key] = best
        out[f"{key}_at"] = at
    return out


def edit_limit(rows: Sequence[dict], hold: float = 0.5, found: float = 0.9) -> dict:
    """Largest |amount| on each side such that it and every smaller amount on that side achieved at least
    `hold` of what was asked (and kept a readable face in `found` of the images); 0 if the smallest fails."""
    out = {}
    for sign, key in ((1, "positive"), (-1, "negative")):
        best = 0.0
        for r in sorted((r for r in rows if r["amount"] * sign > 0), key=lambda r: abs(r["amount"])):
            ok = not math.isnan(r["achieved"]) and r["achieved"] / r["amount"] >= hold and r["found"] >= found
            if not ok:
                break
            best = abs(r["amount"])
        out[key] = best
    return out


@torch.no_grad()
def evaluate_geometry(
    G,
    analyzer,
    directions: Sequence[Direction],
    n: int = 32,
    seed: int = 0,
    amounts: dict[str, Sequence[float]] | None = None,
    batch: int = 32,
    reference: bool = True,
    progress: bool = False,
) -> dict:
    """Sweep each walk (a Direction with meta transform / per_unit) over amounts of its transform on n
    fresh samples; read the analyzer's part maps and attributes. Per amount: achieved amount (mean, std,
    over images where it can be read), ratio achieved / asked, `found` (share of images with a readable
    face), attributes unchanged (mean over attributes, vs the unedited sample), pixel L1 against the
    transformed sample on the pixels the transform defines, and the other geometric quantities' mean
    absolute change. `reference`: the same readings of the image transform itself (T_a(G(l))), which
    shows what the measurement gives for a perfect edit."""
    walks = [d for d in directions if d.meta.get("transform") in TRANSFORMS and d.meta.get("per_unit")]
    if not walks:
        raise LatentcompError(
            "no geometric / colour walks among the directions (compute them with "
            "`latentcomp directions compute --method geometric` or `--method steer`)"
        )
    spaces = {d.space for d in walks}
    if len(spaces) > 1:
        raise LatentcompError(
            f"walks in several spaces ({', '.join(sorted(spaces))}); evaluate one at a time"
        )
    space = spaces.pop()
    ls = _lat_space(space)
    _, flat = sample_latents(G, n, int(seed) + 1, ls)
    lat = _as_latent(G, flat, ls)

    def render(latents):
        return torch.cat(
            [G(latents[i : i + batch].to(G.device), space=ls).clamp(-1, 1).cpu() for i in range(0, n, batch)]
        )

    x0 = render(lat)
    a0, v0, g0 = _read(analyzer, x0, batch)
    kinds = list(dict.fromkeys(d.meta["transform"] for d in walks))
    jobs = [(d.name, d.method, d.meta["transform"], d) for d in walks]
    if reference:
        jobs += [(f"{k} (image transform)", "reference", k, None) for k in kinds]
    it = jobs
    if progress:
        from tqdm import tqdm

        it = tqdm(jobs, desc="geometry sweep", unit="walk")
    results = {}
    for name, method, kind, d in it:
        rows = []
        for a in sweep_amounts(kind, (amounts or {}).get(kind)):
            if d is None:
                x1, _ = transform_images(x0, kind, a)
            else:
                x1 = render(transform_move(G, lat, ls, d, a))
            a1, v1, g1 = _read(analyzer, x1, batch)
            ach = achieved(kind, g0, g1)
            target, valid = transform_images(x0, kind, a)
            err = ((x1 - target).abs().mean(1, keepdim=True) * valid).flatten(1).sum(1) / valid.flatten(
                1
            ).sum(1).clamp(min=1)
            side = {k2: _nanmean(achieved(k2, g0, g1).abs()) for k2 in TRANSFORMS if k2 != kind}
            rows.append(
                {
                    "amount": a,
                    "achieved": _nanmean(ach),
                    "achieved_std": _nanstd(ach),
                    "ratio": _nanmean(ach) / a,
                    "found": float((g1["found"] & g0["found"]).float().mean()),
                    "others_unchanged": _unchanged(a0, v0, a1, v1),
                    "match_l1": float(err.mean()),
                    "side_effects": side,
                }
            )
        results[name] = {
            "transform": kind,
            "unit": TRANSFORMS[kind].unit,
            "method": method,
            "per_unit": d.meta.get("per_unit") if d is not None else None,
            "std": d.std if d is not None else None,
            "rows": rows,
            "gain": _gain(rows),
            "reach": edit_reach(rows),
            "limit": edit_limit(rows),
            "max_achieved": max(
                (r["achieved"] for r in rows if not math.isnan(r["achieved"])), default=math.nan
            ),
            "min_achieved": min(
                (r["achieved"] for r in rows if not math.isnan(r["achieved"])), default=math.nan
            ),
        }
    return {
        "generator": G.spec,
        "space": space,
        "n": n,
        "seed": seed,
        "found_unedited": float(g0["found"].float().mean()),
        "spread": sample_spread(g0),
        "walks": results,
    }


def sample_spread(geom: dict) -> dict[str, float]:
    """Std over images of each transform's quantity (in its units): how much the images vary on their own
    (for G's samples: what the generator learned from its data; walks tend to reach about that far)."""
    zero = {k: torch.zeros_like(v) if v.is_floating_point() else v for k, v in geom.items()}
    return {k: _nanstd(achieved(k, zero, geom)) for k in TRANSFORMS}


def geometry_markdown(res: dict, title: str | None = None) -> str:
    """Summary per walk (gain, reach) and the sweep (achieved, attributes unchanged) per amount."""
    lines = [
        f"### {title or res['generator']} (walks in {res['space']}, {res['n']} samples)",
        "",
        "| walk | method | gain | reach − / + (asked there) | samples' own spread (std) | "
        "attributes unchanged at ±smallest / ±largest |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in res["walks"].items():
        rc, rows = r["reach"], r["rows"]
        small = [row for row in rows if abs(row["amount"]) == min(abs(x["amount"]) for x in rows)]
        large = [row for row in rows if abs(row["amount"]) == max(abs(x["amount"]) for x in rows)]
        lines.append(
            f"| {name} | {r['method']} | {_fmt2(r['gain'])} | "
            f"{_fmt(-rc['negative'])} ({-rc['negative_at']:g}) / "
            f"{_fmt(rc['positive'])} ({rc['positive_at']:g}) | "
            f"{_fmt2(res.get('spread', {}).get(r['transform'], math.nan), 3)} | "
            f"{_pct(np.mean([x['others_unchanged'] for x in small]))} / "
            f"{_pct(np.mean([x['others_unchanged'] for x in large]))} |"
        )
    lines += [
        "",
        "gain: achieved / asked at the smallest amounts; reach: the largest achieved amount on each side "
        "before the face or the other attributes are lost (attributes unchanged < 80%), with the amount "
        "asked there (geometry.json also has `limit`: the largest amount asked that still achieved half).",
        "",
        "| walk | amount asked: achieved (attributes unchanged) |",
        "|---|---|",
    ]
    for name, r in res["walks"].items():
        cells = ", ".join(
            f"{row['amount']:+g}: {_fmt(row['achieved'])} ({_pct(row['others_unchanged'])})"
            for row in r["rows"]
        )
        lines.append(f"| {name} | {cells} |")
    lines += ["", "Units: " + "; ".join(f"{k}: {t.unit}" for k, t in TRANSFORMS.items()) + "."]
    return "\n".join(lines) + "\n"


def _fmt2(v: float, digits: int = 2) -> str:
    return "-" if v is None or math.isnan(v) else f"{v:.{digits}g}" if digits != 2 else f"{v:.2f}"


def _fmt(v: float) -> str:
    return "-" if v is None or math.isnan(v) else f"{v:+.3g}"


def _pct(v: float) -> str:
    return "-" if v is None or math.isnan(v) else f"{100 * v:.0f}%"


def geometry_strips(
    G, directions: Sequence[Direction], n: int = 2, seed: int = 0, amounts=None
) -> torch.Tensor:
    """(rows, S, C, H, W): per walk and sample, its images along the sweep (unedited in the middle)."""
    walks = [d for d in directions if d.meta.get("transform") in TRANSFORMS and d.meta.get("per_unit")]
    if not walks:
        raise LatentcompError("no walks to draw")
    space = walks[0].space
    ls = _lat_space(space)
    _, flat = sample_latents(G, n, int(seed) + 1, ls)
    lat = _as_latent(G, flat, ls).to(G.device)
    rows = []
    with torch.no_grad():
        for d in walks:
            sweep = sweep_amounts(d.meta["transform"], (amounts or {}).get(d.meta["transform"]))
            half = len(sweep) // 2
            sweep = sweep[:half] + [0.0] + sweep[half:]
            cols = [G(transform_move(G, lat, ls, d, a), space=ls).clamp(-1, 1).cpu() for a in sweep]
            rows.append(torch.stack(cols, 1))
    return torch.cat(rows)
