"""Editing directions in a generator's latent space: unsupervised (PCA / GANSpace, SeFa), supervised
(linear boundaries on classifier-labelled samples) and conditional (project out other directions).

A `Direction` is a unit vector in one latent space of one generator:

- space "z": a vector of `prod(G.latent_shape)` entries, added to z;
- space "w": a vector of `prod(G.space_shape("w"))` entries (`G.w_dim`, or k x w_dim for a latent of k
  components such as a GANsformer's), added to w (every layer);
- space "w+": a vector of `G.w_dim` entries, added only to the w+ rows in `layers` (None = all rows).

Strengths are measured in standard deviations of the generator's own latent distribution along the
direction (`Direction.std`, measured on samples when the direction is computed), so that "strength 3"
means a comparable step in every space and for every method.

    dirs = pca_directions(G, k=10)                       # GANSpace: PCA of w (StyleGAN2) or of early
                                                          # activations lifted back to z (DCGAN)
    dirs = sefa_directions(G, k=10, layers=[0, 1])       # closed form from the first layer's weights
    lat, attrs, vis = label_samples(G, analyzer, 1000)   # latents labelled by a classifier
    d = supervised_direction(lat, labels)                # LinearSVC / logistic regression normal
    n = conditional_direction(d1, [d2, d3])              # d1 minus its projection onto span(d2, d3)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import nn

from ..errors import LatentcompError

SPACES = ("z", "w", "w+")
#: per attribute, the target value that `latentcomp directions compute --method supervised` and the
#: evaluation use by default: values that both bundled toyfaces GANs produce often enough (10-60% of
#: samples) to fit a boundary and to find samples to flip ("any" = every value but the first, e.g.
#: glasses=any is none vs any glasses; the bundled GANs rarely draw faces without glasses)
#: strength of the L2 penalty (inverse) of the boundaries; on the toyfaces GANs 0.01 beats 0.1 and 1
DEFAULT_C = 0.01
DEFAULT_TARGETS = {
    "background_colour": "sand",
    "face_shape": "wide",
    "skin_tone": "dark",
    "hair_style": "bald",
    "hair_colour": "blonde",
    "eye_colour": "blue",
    "eyebrow_style": "angry",
    "nose_shape": "wide",
    "mouth_expression": "open",
    "glasses": "sunglasses",
}


@dataclass
class Direction:
    """One unit direction. `vector` (D,) float32; see the module doc for what D is in each space."""

    name: str
    vector: torch.Tensor
    space: str
    generator: str = ""
    layers: tuple[int, ...] | None = None
    method: str = ""
    std: float = 1.0  # std of the generator's latents along `vector`: the unit of a strength
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.space not in SPACES:
            raise LatentcompError(
                f"direction {self.name!r}: unknown space {self.space!r}; accepted: z, w, w+"
            )
        v = torch.as_tensor(self.vector, dtype=torch.float32).detach().cpu().reshape(-1)
        if not torch.isfinite(v).all() or float(v.norm()) == 0:
            raise LatentcompError(f"direction {self.name!r} is zero or not finite")
        self.vector = v / v.norm()
        if self.layers is not None:
            self.layers = tuple(int(i) for i in self.layers)
            if self.space != "w+":
                raise LatentcompError(f"direction {self.name!r}: layers are only meaningful in space w+")
        self.std = float(self.std)

    @property
    def dim(self) -> int:
        return int(self.vector.numel())

    def negated(self, name: str | None = None) -> Direction:
        return replace(self, name=name or f"-{self.name}", vector=-self.vector, meta=dict(self.meta))

    def describe(self) -> str:
        where = self.space + (f" layers {format_layers(self.layers)}" if self.layers is not None else "")
        extra = ""
        if "attribute" in self.meta:
            extra = f", {self.meta['attribute']}={self.meta.get('target', '?')}"
            if self.meta.get("accuracy") is not None:
                extra += f" (boundary accuracy {self.meta['accuracy']:.2f})"
        if self.meta.get("conditions"):
            extra += f", conditioned on {', '.join(self.meta['conditions'])}"
        if self.meta.get("transform") and self.meta.get("per_unit"):
            extra += (
                f", {self.meta['transform']} walk: {float(self.meta['per_unit']):.3g} latent units per "
                f"unit ({self.meta.get('unit', '?')})"
            )
        return f"{self.name}: {self.method} in {where}, dim {self.dim}, std {self.std:.3g}{extra}"


# ------------------------------------------------------------------------------------------- helpers
def parse_layers(spec: str | Sequence[int] | None, num_ws: int | None = None) -> tuple[int, ...] | None:
    """'0-3' | '0,2,5' | '0-3,8' | [0, 1] | None -> sorted tuple of w+ row indices (None stays None)."""
    if spec is None or (isinstance(spec, str) and spec.strip().lower() in ("", "all")):
        return None
    if isinstance(spec, str):
        out: set[int] = set()
        for part in spec.split(","):
            part = part.strip()
            try:
                if "-" in part:
                    a, b = part.split("-", 1)
                    lo, hi = int(a), int(b)
                    if hi < lo:
                        raise ValueError
                    out.update(range(lo, hi + 1))
                else:
                    out.add(int(part))
            except ValueError:
                raise LatentcompError(
                    f"layers {spec!r} not understood; accepted: ranges and lists such as 0-3, 0,2,5 or 0-3,8"
                ) from None
        layers = tuple(sorted(out))
    else:
        layers = tuple(sorted({int(i) for i in spec}))
    if not layers:
        raise LatentcompError("layers must name at least one w+ row")
    if num_ws is not None and (layers[0] < 0 or layers[-1] >= num_ws):
        raise LatentcompError(
            f"layers {format_layers(layers)} out of range; this generator has w+ rows 0-{num_ws - 1}"
        )
    return layers


def format_layers(layers: Sequence[int] | None) -> str:
    if layers is None:
        return "all"
    layers = sorted(layers)
    parts, start = [], layers[0]
    for a, b in zip(layers, layers[1:] + [None], strict=False):
        if b is None or b != a + 1:
            parts.append(f"{start}" if start == a else f"{start}-{a}")
            start = b
    return ",".join(parts)


def default_space(G) -> str:
    """Where directions live by default: w where the generator has it (StyleGAN), else z."""
    return "w" if "w" in G.latent_spaces else "z"


def _check_space(G, space: str) -> None:
    if space not in SPACES:
        raise LatentcompError(f"unknown latent space {space!r}; accepted: z, w, w+")
    if space not in G.latent_spaces:
        raise LatentcompError(
            f"space {space!r} is not offered by {type(G).__name__}; accepted: {', '.join(G.latent_spaces)}"
        )


@torch.no_grad()
def sample_latents(
    G, n: int, seed: int = 0, space: str = "z", batch: int = 256
) -> tuple[torch.Tensor, torch.Tensor]:
    """n latents from G's prior: (z (n, *latent_shape), latent in `space` flattened to (n, D) on the CPU).
    For w and w+ the latent is w = mapping(z) (one row; w+ rows are all equal for sampled latents)."""
    _check_space(G, space)
    g = torch.Generator().manual_seed(int(seed))
    z = G.sample_latent(n, generator=g).cpu()
    if space == "z":
        return z, z.reshape(n, -1).float()
    ws = [G.mapping(z[i : i + batch].to(G.device)).cpu() for i in range(0, n, batch)]
    return z, torch.cat(ws).reshape(n, -1).float()


def projection_std(latents: torch.Tensor, vector: torch.Tensor) -> float:
    """Standard deviation of latents (N, D) along a unit vector (D,)."""
    p = latents.double() @ (vector.double() / vector.double().norm())
    return float(p.std()) if p.numel() > 1 else 1.0


# ------------------------------------------------------------------------------------------- linear maths
def orthonormal_basis(vectors: torch.Tensor | Sequence[torch.Tensor], tol: float = 1e-6) -> torch.Tensor:
    """Gram-Schmidt (modified, twice) of the rows of `vectors` (K, D) -> (K', D) orthonormal rows;
    rows that are (numerically) in the span of the earlier ones are dropped."""
    if not isinstance(vectors, torch.Tensor):
        vectors = torch.stack([torch.as_tensor(v).reshape(-1) for v in vectors]) if len(vectors) else None
    if vectors is None or vectors.numel() == 0:
        return torch.zeros(0, 0)
    V = vectors.double().reshape(vectors.shape[0], -1)
    basis: list[torch.Tensor] = []
    for v in V:
        scale = float(v.norm())
        if scale == 0:
            continue
        u = v.clone()
        for _ in range(2):
            for b in basis:
                u = u - (u @ b) * b
        if float(u.norm()) > tol * scale:
            basis.append(u / u.norm())
    return torch.stack(basis).float() if basis else torch.zeros(0, V.shape[1])


def conditional_direction(
    primary: torch.Tensor | Direction, conditions: Sequence[torch.Tensor | Direction] | torch.Tensor
) -> torch.Tensor:
    """Conditional manipulation: n1 - sum_i (n1 . e_i) e_i for an orthonormal basis e of the conditions
    (for one condition n2: n1 - (n1 . n2) n2 / |n2|^2), renormalised to unit length. Moving along the
    result leaves every condition's projection unchanged."""
    n1 = primary.vector if isinstance(primary, Direction) else torch.as_tensor(primary)
    n1 = n1.double().reshape(-1)
    conds = [c.vector if isinstance(c, Direction) else torch.as_tensor(c) for c in conditions]
    if len(conds) == 0:
        return (n1 / n1.norm()).float()
    C = torch.stack([c.double().reshape(-1) for c in conds])
    if C.shape[1] != n1.numel():
        raise LatentcompError(
            f"condition directions have {C.shape[1]} entries but the primary direction has {n1.numel()}"
        )
    E = orthonormal_basis(C).double()
    out = n1 - E.T @ (E @ n1)
    if float(out.norm()) < 1e-6 * float(n1.norm()):
        raise LatentcompError(
            "the primary direction lies in the span of the conditions; nothing is left to move"
        )
    return (out / out.norm()).float()


def conditioned(
    primary: Direction,
    conditions: Sequence[Direction],
    latents: torch.Tensor | None = None,
    name: str | None = None,
) -> Direction:
    """A new Direction: `primary` with the conditions projected out (`conditional_direction`)."""
    for c in conditions:
        if c.space != primary.space and {c.space, primary.space} != {"w", "w+"}:
            raise LatentcompError(
                f"cannot condition {primary.name} ({primary.space}) on {c.name} ({c.space})"
            )
    v = conditional_direction(primary, conditions)
    meta = dict(primary.meta)
    meta["conditions"] = [c.name for c in conditions]
    meta["cosine_to_unconditioned"] = float(v @ primary.vector)
    std = projection_std(latents, v) if latents is not None else primary.std
    return replace(
        primary,
        name=name or f"{primary.name}_cond",
        vector=v,
        std=std,
        meta=meta,
        method=primary.method + "+cond",
    )


def pca(latents: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """PCA of rows (N, D): (components (k, D) unit rows by decreasing variance, variances (k,), mean (D,)).
    Signs are fixed so that each component's largest-magnitude entry is positive (reproducible)."""
    X = latents.double().reshape(latents.shape[0], -1)
    if X.shape[0] < 2:
        raise LatentcompError("PCA needs at least 2 samples")
    mean = X.mean(0)
    Xc = X - mean
    _, S, Vh = torch.linalg.svd(Xc, full_matrices=False)
    k = min(int(k), Vh.shape[0])
    comps = Vh[:k]
    idx = comps.abs().argmax(1)
    signs = torch.sign(comps[torch.arange(k), idx])
    comps = comps * signs[:, None]
    var = S[:k] ** 2 / (X.shape[0] - 1)
    return comps.float(), var.float(), mean.float()


def lift_to_latent(latents: torch.Tensor, coords: torch.Tensor, ridge: float = 1e-6) -> torch.Tensor:
    """GANSpace's transfer: the least-squares map U (k, D) with latents - mean ~ coords @ U, where coords
    (N, k) are PCA coordinates of activations. Row i of U is the latent direction that moves the i-th
    activation component; returned as given (normalise for unit directions)."""
    Z = latents.double().reshape(latents.shape[0], -1)
    Z = Z - Z.mean(0)
    X = coords.double()
    X = X - X.mean(0)
    A = X.T @ X + ridge * torch.eye(X.shape[1], dtype=X.dtype) * X.pow(2).sum() / max(X.shape[1], 1)
    return torch.linalg.solve(A, X.T @ Z).float()


def sefa_from_weight(
    weight: torch.Tensor, k: int, normalize: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed-form factorisation: the top-k eigenvectors (k, in) of A^T A for A = weight (out, in), i.e. the
    unit inputs that the linear map moves most. With `normalize` every output row of A is scaled to unit
    norm first (as SeFa does). Returns (directions, eigenvalues)."""
    A = weight.double().reshape(weight.shape[0], -1)
    if normalize:
        A = A / A.norm(dim=1, keepdim=True).clamp(min=1e-12)
    evals, evecs = torch.linalg.eigh(A.T @ A)
    order = torch.argsort(evals, descending=True)[: min(int(k), A.shape[1])]
    vecs = evecs[:, order].T
    idx = vecs.abs().argmax(1)
    vecs = vecs * torch.sign(vecs[torch.arange(vecs.shape[0]), idx])[:, None]
    return vecs.float(), evals[order].float()


# ------------------------------------------------------------------------------------------- unsupervised
def _latent_dim(G, space: str) -> int:
    return int(math.prod(G.latent_shape)) if space == "z" else int(math.prod(G.space_shape("w")))


def pca_directions(
    G,
    k: int = 10,
    n: int = 2000,
    space: str | None = None,
    layer: str | None = None,
    layers: Sequence[int] | str | None = None,
    seed: int = 0,
    batch: int = 128,
    max_features: int = 8192,
) -> list[Direction]:
    """GANSpace-style PCA. Without `layer`: PCA of n sampled latents in `space` (w for StyleGAN; for an
    isotropic z this finds nothing meaningful, so z defaults to the first feature layer instead). With
    `layer` (a name from `G.feature_layers()`): PCA of that layer's activations, lifted back to the latent
    space by least squares (GANSpace). `layers` (w+ only) restricts where the directions act."""
    space = space or default_space(G)
    _check_space(G, space)
    if space == "w+":
        layers = parse_layers(layers, G.num_ws)
    elif layers is not None:
        raise LatentcompError("--layers needs --space w+")
    if layer is None and space == "z" and G.prior == "normal":
        names = list(G.feature_layers())
        if not names:
            raise LatentcompError(
                f"{type(G).__name__} lists no feature layers; give --layer or use a w space"
            )
        layer = names[0]
    z, lat = sample_latents(G, n, seed, "z" if space == "z" else "w", batch)
    if layer is None or layer == "latent":
        comps, var, _ = pca(lat, k)
        tot = float(lat.double().var(0).sum())
        source = "latent"
    else:
        feats = []
        sel = None
        g = torch.Generator().manual_seed(int(seed) + 1)
        with torch.no_grad():
            for i in range(0, n, batch):
                f = G.features(z[i : i + batch].to(G.device), str(layer), space="z").reshape(
                    len(z[i : i + batch]), -1
                )
                if sel is None and f.shape[1] > max_features:
                    sel = torch.randperm(f.shape[1], generator=g)[:max_features].sort().values
                feats.append((f[:, sel.to(f.device)] if sel is not None else f).cpu().float())
        F = torch.cat(feats)
        fc, var, fmean = pca(F, k)
        coords = (F - fmean) @ fc.T
        U = lift_to_latent(lat, coords)
        comps = U / U.norm(dim=1, keepdim=True)
        tot = float(F.double().var(0).sum())
        source = f"features {layer}"
    # the unit of strength from fresh samples: the fitted ones overstate the spread along their own PCs
    _, fresh = sample_latents(G, max(n, 2), int(seed) + 7919, "z" if space == "z" else "w", batch)
    out = []
    for i in range(comps.shape[0]):
        out.append(
            Direction(
                name=f"pca{i}",
                vector=comps[i],
                space=space,
                generator=G.spec,
                layers=layers,
                method="pca",
                std=projection_std(fresh, comps[i]),
                meta={
                    "component": i,
                    "explained_variance": float(var[i]) / tot if tot > 0 else None,
                    "source": source,
                    "samples": n,
                    "seed": seed,
                },
            )
        )
    return out


_MOD_NAMES = ("modulation", "affine")


@torch.no_grad()
def _style_layers(G) -> list[tuple[str, nn.Module, int]]:
    """The style affine layers of a StyleGAN-like generator in call order: (module name, module, w+ row).
    Found by name (`*.modulation` rosinality, `*.affine` NVlabs) and mapped to their w+ row by running the
    generator once with distinct rows."""
    mods = [(n, m) for n, m in G.named_modules() if n.split(".")[-1] in _MOD_NAMES and hasattr(m, "weight")]
    if not mods or "w+" not in G.latent_spaces:
        return []
    num_ws, w_dim = int(G.num_ws), int(G.w_dim)
    probe = torch.arange(num_ws, dtype=torch.float32)[None, :, None].repeat(1, 1, w_dim).to(G.device)
    seen: dict[str, int] = {}
    handles = []
    for name, m in mods:

        def hook(mod, inp, _out, name=name):
            x = inp[0]
            if x.dim() == 2 and x.shape[-1] == w_dim:
                seen.setdefault(name, int(round(float(x[0, 0]))))

        handles.append(m.register_forward_hook(hook))
    try:
        G(probe, space="w+")
    except Exception:  # noqa: BLE001 - a generator that rejects the probe simply has no usable style layers
        return []
    finally:
        for h in handles:
            h.remove()
    out = [(n, m, seen[n]) for n, m in mods if n in seen]
    return [t for t in out if 0 <= t[2] < num_ws]


def _affine_weight(m: nn.Module) -> torch.Tensor:
    w = m.weight.detach().float()
    scale = getattr(m, "scale", None) or getattr(m, "weight_gain", None) or 1.0
    return w * float(scale)


@torch.no_grad()
def first_layer_weight(G) -> tuple[str, torch.Tensor]:
    """The linear map that first consumes z, as a matrix A (out, z_dim): found by running G once and taking
    the first module with a weight whose input has z_dim features (Linear-like: weight (out, in);
    ConvTranspose2d: weight (in, out, k, k) -> (out*k*k, in); Conv2d: (out, in, k, k) -> (out*k*k, in))."""
    d = int(math.prod(G.latent_shape))
    calls: list[tuple[str, nn.Module]] = []
    handles = []
    for name, m in G.named_modules():
        w = getattr(m, "weight", None)
        if isinstance(w, torch.Tensor) and w.dim() >= 2:

            def hook(mod, inp, _out, name=name):
                x = inp[0] if inp and isinstance(inp[0], torch.Tensor) else None
                if x is not None and x.dim() >= 2 and x.shape[1] == d:
                    calls.append((name, mod))

            handles.append(m.register_forward_hook(hook))
    try:
        G(G.sample_latent(2, generator=torch.Generator().manual_seed(0)), space="z")
    finally:
        for h in handles:
            h.remove()
    if not calls:
        raise LatentcompError(
            f"SeFa: no layer of {type(G).__name__} takes the {d}-dimensional latent directly; "
            "use --method pca or supervised"
        )
    name, m = calls[0]
    w = m.weight.detach().float()
    if isinstance(m, nn.ConvTranspose2d):
        A = w.reshape(w.shape[0], -1).T
    elif w.dim() == 2:
        A = _affine_weight(m)
    else:
        A = w.transpose(0, 1).reshape(w.shape[1], -1).T
    if A.shape[1] != d:
        raise LatentcompError(
            f"SeFa: layer {name} has weight {tuple(w.shape)}, which does not take {d} inputs"
        )
    return name, A


def sefa_directions(
    G,
    k: int = 10,
    space: str | None = None,
    layers: Sequence[int] | str | None = None,
    normalize: bool = True,
    n_std: int = 2000,
    seed: int = 0,
) -> list[Direction]:
    """SeFa: top eigenvectors of A^T A for the weights A that first act on the latent.

    StyleGAN (space w / w+): A = the style affine (modulation) weights of the chosen w+ rows stacked
    (default: all rows); in w+ the directions then act only on those rows. Otherwise (space z): the first
    layer that consumes z (DCGAN: the first ConvTranspose2d weight reshaped to (out*4*4, z_dim))."""
    space = space or default_space(G)
    _check_space(G, space)
    if space in ("w", "w+"):
        styles = _style_layers(G)
        if not styles:
            raise LatentcompError(
                f"SeFa in {space}: no style (modulation) layers found in {type(G).__name__}"
            )
        chosen = parse_layers(layers, G.num_ws) if layers is not None else None
        if chosen is not None and space == "w":
            space = "w+"  # a subset of rows is a w+ edit
        rows = set(chosen) if chosen is not None else {r for _, _, r in styles}
        used = [(n, m) for n, m, r in styles if r in rows]
        if not used:
            raise LatentcompError(f"SeFa: no style layer reads w+ rows {format_layers(chosen)}")
        A = torch.cat([_affine_weight(m) for _, m in used], 0)
        source = f"{len(used)} style layers (w+ rows {format_layers(sorted(rows))})"
        lat_space = "w"
    else:
        if layers is not None:
            raise LatentcompError("--layers needs a w+ space")
        chosen = None
        name, A = first_layer_weight(G)
        source = f"first layer {name}"
        lat_space = "z"
    vecs, evals = sefa_from_weight(A, k, normalize=normalize)
    _, lat = sample_latents(G, n_std, seed, lat_space)
    return [
        Direction(
            name=f"sefa{i}",
            vector=vecs[i],
            space=space,
            generator=G.spec,
            layers=chosen,
            method="sefa",
            std=projection_std(lat, vecs[i]),
            meta={"component": i, "eigenvalue": float(evals[i]), "source": source, "normalize": normalize},
        )
        for i in range(vecs.shape[0])
    ]


# ------------------------------------------------------------------------------------------- supervised
def supervised_direction(
    latents: torch.Tensor,
    labels: torch.Tensor,
    method: str = "svm",
    C: float = DEFAULT_C,
    holdout: float = 0.2,
    seed: int = 0,
) -> tuple[torch.Tensor, dict]:
    """Normal of a linear boundary separating labels 1 from 0 (InterFaceGAN): LinearSVC ("svm") or
    LogisticRegression ("logreg") with balanced class weights on centred latents. Returns (unit vector (D,)
    pointing towards label 1, info: accuracy / balanced accuracy on a held-out split, counts)."""
    from ..extras import require

    LogisticRegression = require("sklearn.linear_model", "supervised directions").LogisticRegression
    LinearSVC = require("sklearn.svm", "supervised directions").LinearSVC

    X = latents.double().reshape(latents.shape[0], -1).numpy()
    y = torch.as_tensor(labels).reshape(-1).numpy().astype(bool)
    if X.shape[0] != y.shape[0]:
        raise LatentcompError(f"{X.shape[0]} latents but {y.shape[0]} labels")
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos < 2 or n_neg < 2:
        raise LatentcompError(
            f"a boundary needs at least 2 samples of each class; got {n_pos} positive, {n_neg} negative"
        )
    X = (X - X.mean(0)) / max(float(X.std()), 1e-12)
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(y))
    n_test = int(round(len(y) * holdout)) if holdout > 0 else 0
    test, train = idx[:n_test], idx[n_test:]
    if len(set(y[train])) < 2:
        test, train = idx[:0], idx

    def fit(rows):
        if method == "svm":
            clf = LinearSVC(C=C, class_weight="balanced", max_iter=20000, dual="auto", random_state=seed)
        elif method in ("logreg", "logistic"):
            clf = LogisticRegression(C=C, class_weight="balanced", max_iter=5000)
        else:
            raise LatentcompError(f"unknown boundary method {method!r}; accepted: svm, logreg")
        return clf.fit(X[rows], y[rows])

    info: dict = {"positives": n_pos, "negatives": n_neg, "classifier": method, "C": C}
    if len(test):
        clf = fit(train)
        pred = clf.predict(X[test]).astype(bool)
        info["accuracy"] = float((pred == y[test]).mean())
        tpr = float(pred[y[test]].mean()) if y[test].any() else float("nan")
        tnr = float((~pred[~y[test]]).mean()) if (~y[test]).any() else float("nan")
        info["balanced_accuracy"] = float(np.nanmean([tpr, tnr]))
    clf = fit(idx)  # the final boundary uses every sample
    v = torch.from_numpy(np.asarray(clf.coef_, dtype=np.float64).reshape(-1))
    if float(v.norm()) == 0:
        raise LatentcompError("the boundary is degenerate (zero normal); the labels carry no linear signal")
    return (v / v.norm()).float(), info


def parse_target(spec: str, attribute_values: dict[str, list[str]]) -> tuple[str, list[int], str]:
    """'glasses=any' | 'mouth_expression=smile' | 'hair_colour=red,blonde' | 'glasses' (its default target)
    -> (attribute, positive value ids, canonical value text). 'any' = every value but the first."""
    attr, _, val = spec.partition("=")
    attr, val = attr.strip(), val.strip()
    if attr not in attribute_values:
        raise LatentcompError(f"unknown attribute {attr!r}; known: {', '.join(attribute_values)}")
    values = attribute_values[attr]
    if not val:
        val = DEFAULT_TARGETS.get(attr, "any")
        if val != "any" and val not in values:
            val = "any"
    if val == "any":
        return attr, list(range(1, len(values))), "any"
    ids = []
    for v in val.split(","):
        if v not in values:
            raise LatentcompError(f"unknown value {v!r} of {attr}; accepted: {', '.join(values)} or any")
        ids.append(values.index(v))
    if len(set(ids)) == len(values):
        raise LatentcompError(f"target {spec!r} names every value of {attr}; nothing to separate")
    return attr, sorted(set(ids)), ",".join(values[i] for i in sorted(set(ids)))


def default_targets(attribute_values: dict[str, list[str]]) -> list[str]:
    return [f"{a}={parse_target(a, attribute_values)[2]}" for a in attribute_values]


@dataclass
class LabelledSamples:
    """Latents of n samples with the classifier's reading of their images."""

    z: torch.Tensor  # (N, *latent_shape)
    latents: torch.Tensor  # (N, D) in `space` (w for w / w+)
    space: str
    attrs: torch.Tensor  # (N, n_attr) long
    visible: torch.Tensor  # (N, n_attr) bool
    images: torch.Tensor | None = None


@torch.no_grad()
def generate(G, latents: torch.Tensor, space: str, batch: int = 64, layers=None) -> torch.Tensor:
    """Images (CPU) of flattened latents (N, D) in `space` ('w' rows are used as w)."""
    out = []
    for i in range(0, latents.shape[0], batch):
        lat = latents[i : i + batch].to(G.device)
        if space == "z":
            lat = lat.reshape(-1, *G.latent_shape)
            out.append(G(lat, space="z").clamp(-1, 1).cpu())
        elif space == "w" or lat.dim() == 2:
            out.append(G(lat.reshape(-1, *G.space_shape("w")), space="w").clamp(-1, 1).cpu())
        else:
            out.append(G(lat, space="w+").clamp(-1, 1).cpu())
    return torch.cat(out)


@torch.no_grad()
def label_samples(
    G,
    analyzer,
    n: int = 1000,
    seed: int = 0,
    space: str | None = None,
    batch: int = 64,
    keep_images: bool = False,
    progress: bool = False,
) -> LabelledSamples:
    """Sample n latents, generate, and let `analyzer` (anything with `.predict(images) -> .attrs` and
    optionally `.visible`) read each image's attributes."""
    space = space or default_space(G)
    lat_space = "z" if space == "z" else "w"
    z, lat = sample_latents(G, n, seed, lat_space)
    attrs, vis, imgs = [], [], []
    rng = range(0, n, batch)
    if progress:
        from tqdm import tqdm

        rng = tqdm(rng, desc="label samples", unit="batch")
    for i in rng:
        x = generate(G, lat[i : i + batch], lat_space, batch)
        a = _predict(analyzer, x)
        attrs.append(a[0])
        vis.append(a[1])
        if keep_images:
            imgs.append(x)
    return LabelledSamples(
        z=z,
        latents=lat,
        space=space,
        attrs=torch.cat(attrs),
        visible=torch.cat(vis),
        images=torch.cat(imgs) if keep_images else None,
    )


def _predict(analyzer, images: torch.Tensor, partmap: bool = False):
    dev = getattr(analyzer, "device", None)
    x = images.to(dev) if isinstance(dev, torch.device) else images
    try:
        out = analyzer.predict(x, logits=False)
    except TypeError:
        out = analyzer.predict(x)
    attrs = out.attrs.cpu().long()
    vis = getattr(out, "visible", None)
    vis = torch.ones_like(attrs, dtype=torch.bool) if vis is None else vis.cpu().bool()
    if partmap:
        return attrs, vis, out.partmap.cpu()
    return attrs, vis


def attribute_directions(
    samples: LabelledSamples,
    attribute_values: dict[str, list[str]],
    targets: Sequence[str] | None = None,
    method: str = "svm",
    C: float = DEFAULT_C,
    generator: str = "",
    layers: Sequence[int] | None = None,
    seed: int = 0,
) -> list[Direction]:
    """One supervised direction per target ('attr=value'; default: `DEFAULT_TARGETS`), pointing from
    'not target' to 'target', fitted on the samples where the attribute is visible."""
    names = list(attribute_values)
    targets = list(targets) if targets else default_targets(attribute_values)
    out = []
    for spec in targets:
        attr, ids, val = parse_target(spec, attribute_values)
        j = names.index(attr)
        keep = samples.visible[:, j]
        pos = torch.isin(samples.attrs[:, j], torch.tensor(ids))
        lat, lab = samples.latents[keep], pos[keep]
        try:
            v, info = supervised_direction(lat, lab, method=method, C=C, seed=seed)
        except LatentcompError as e:
            raise LatentcompError(f"direction {attr}={val}: {e} (label more samples with --n)") from None
        out.append(
            Direction(
                name=f"{attr}={val}",
                vector=v,
                space=samples.space if layers is None else "w+",
                generator=generator,
                layers=tuple(layers) if layers is not None else None,
                method=f"supervised-{method}",
                std=projection_std(samples.latents, v),
                meta={
                    "attribute": attr,
                    "target": val,
                    "target_ids": ids,
                    **info,
                    "samples": int(keep.sum()),
                },
            )
        )
    return out


def condition_pool(
    samples: LabelledSamples,
    attribute_values: dict[str, list[str]],
    directions: Sequence[Direction],
    conditions: Sequence[str] | None = None,
    **fit,
) -> list[Direction]:
    """Directions to condition on that `directions` lack, fitted on the same samples
    (`attribute_directions(samples, attribute_values, ..., **fit)`).

    `conditions` None means "all attributes": the default target of every attribute that no direction
    in `directions` covers, so that one target conditioned on "all" is conditioned on every other
    attribute rather than on nothing. Named conditions that are not in `directions` are fitted when they
    are ATTR=VALUE targets. A default target with too few samples to fit is skipped."""
    have = {d.name for d in directions}
    covered = {d.meta.get("attribute") for d in directions}
    if conditions is None:
        wanted = [t for t in default_targets(attribute_values) if t.partition("=")[0] not in covered]
        strict = False
    else:
        wanted = [c for c in conditions if c not in have and "=" in c]
        strict = True
    out = []
    for t in wanted:
        try:
            out += attribute_directions(samples, attribute_values, [t], **fit)
        except LatentcompError:
            if strict:
                raise
    return out


def conditional_set(
    directions: Sequence[Direction],
    latents: torch.Tensor | None = None,
    conditions: Sequence[str] | None = None,
    pool: Sequence[Direction] = (),
) -> list[Direction]:
    """For each direction, its conditional version given the others (all others, or the ones named in
    `conditions`; a direction is never conditioned on itself). `pool` adds directions that may serve as
    conditions without being conditioned themselves (see `condition_pool`)."""
    names = {d.name for d in directions}
    candidates = list(directions) + [p for p in pool if p.name not in names]
    by_name = {d.name: d for d in candidates}
    out = []
    for d in directions:
        if conditions:
            missing = [c for c in conditions if c not in by_name]
            if missing:
                raise LatentcompError(
                    f"unknown condition(s) {', '.join(missing)}; computed: {', '.join(by_name)}"
                )
            conds = [by_name[c] for c in conditions if c != d.name]
        else:
            conds = [c for c in candidates if c.name != d.name]
        if conds:
            out.append(conditioned(d, conds, latents))
    return out
