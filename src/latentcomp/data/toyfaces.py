"""toyfaces: a procedural cartoon-face data set with ground truth.

Every image comes with its true part map (one class per pixel) and the categorical attribute of every
part, so that composition can be *measured*: paste the mouth of image B into image A and ask whether
the output shows B's mouth expression. Images are drawn with signed distance functions and analytic
coverage (a pixel's alpha is the fraction of it inside the shape, from the distance to the edge), which
anti-aliases without supersampling and renders a whole batch with a few tensor operations.

Continuous variation (position, scale, rotation, face size, lighting) keeps it from being memorised.
Deterministic: the parameters of image i depend only on (seed, i).
"""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import torch

from ..errors import LatentcompError

PARTS = ["background", "skin", "hair", "eyes", "eyebrows", "nose", "mouth", "glasses"]
PART_ID = {name: i for i, name in enumerate(PARTS)}

ATTRIBUTES: OrderedDict[str, list[str]] = OrderedDict(
    background_colour=["sky", "mint", "peach", "lilac", "grey", "sand"],
    face_shape=["round", "oval", "wide"],
    skin_tone=["pale", "light", "tan", "brown", "dark"],
    hair_style=["bald", "short", "bob", "long", "bun"],
    hair_colour=["black", "brown", "blonde", "red", "grey", "blue"],
    eye_colour=["brown", "blue", "green", "violet"],
    eyebrow_style=["flat", "raised", "angry"],
    nose_shape=["button", "long", "wide"],
    mouth_expression=["smile", "neutral", "open", "frown"],
    glasses=["none", "round", "square", "sunglasses"],
)
ATTRIBUTE_NAMES = list(ATTRIBUTES)
ATTRIBUTE_PART = {
    "background_colour": "background",
    "face_shape": "skin",
    "skin_tone": "skin",
    "hair_style": "hair",
    "hair_colour": "hair",
    "eye_colour": "eyes",
    "eyebrow_style": "eyebrows",
    "nose_shape": "nose",
    "mouth_expression": "mouth",
    "glasses": "glasses",
}
# every part whose pixels an attribute can change (the nose is shaded from the skin tone)
ATTRIBUTE_PARTS = {name: (part,) for name, part in ATTRIBUTE_PART.items()}
ATTRIBUTE_PARTS["skin_tone"] = ("skin", "nose")
RESOLUTIONS = (32, 64, 128)

# colours in [0, 1]
_BACKGROUND = [
    (0.55, 0.75, 0.95),
    (0.60, 0.90, 0.75),
    (0.98, 0.78, 0.65),
    (0.78, 0.68, 0.92),
    (0.62, 0.62, 0.65),
    (0.90, 0.84, 0.62),
]
_SKIN = [(0.99, 0.88, 0.80), (0.95, 0.76, 0.62), (0.82, 0.60, 0.42), (0.60, 0.40, 0.26), (0.38, 0.24, 0.16)]
_HAIR = [
    (0.08, 0.07, 0.07),
    (0.40, 0.24, 0.12),
    (0.95, 0.82, 0.40),
    (0.80, 0.30, 0.10),
    (0.75, 0.75, 0.78),
    (0.20, 0.35, 0.85),
]
_EYE = [(0.35, 0.20, 0.08), (0.15, 0.45, 0.95), (0.10, 0.62, 0.25), (0.55, 0.20, 0.75)]
_FACE_RADII = [(0.46, 0.54), (0.40, 0.58), (0.52, 0.50)]  # (rx, ry) in face units
_EYE_WHITE = (0.98, 0.98, 0.98)
_BROW = (0.18, 0.12, 0.10)
_MOUTH = (0.62, 0.12, 0.16)
_MOUTH_INSIDE = (0.35, 0.05, 0.08)
_FRAME = (0.10, 0.10, 0.12)
_LENS = (0.12, 0.12, 0.16)
# face-local boxes (u0, v0, u1, v1) that hold every pixel the small parts can cover, anti-aliased edges
# included: the eyes, eyebrows and glasses; the nose and mouth. Those parts are drawn only in the pixel
# window of their box, 18-30% of a 64 px canvas (tests check that this changes no pixel).
_UPPER_BOX = (-0.40, -0.36, 0.40, 0.12)
_LOWER_BOX = (-0.30, -0.08, 0.30, 0.50)


def num_combinations() -> int:
    return math.prod(len(v) for v in ATTRIBUTES.values())


# ---- signed distance functions on (B, H, W) coordinate tensors; params broadcast as (B, 1, 1) ----


def _ellipse(x, y, cx, cy, rx, ry):
    # a cheap, well-behaved approximation: distance scaled by the smaller radius
    k = torch.sqrt(((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2)
    return (k - 1) * torch.minimum(rx, ry) if torch.is_tensor(rx) else (k - 1) * min(rx, ry)


def _circle(x, y, cx, cy, r):
    return torch.sqrt((x - cx) ** 2 + (y - cy) ** 2) - r


def _box(x, y, cx, cy, hx, hy, radius=0.0):
    dx = (x - cx).abs() - hx + radius
    dy = (y - cy).abs() - hy + radius
    outside = torch.sqrt(dx.clamp(min=0) ** 2 + dy.clamp(min=0) ** 2)
    return outside + torch.maximum(dx, dy).clamp(max=0) - radius


def _segment(x, y, ax, ay, bx, by, r):
    px, py = x - ax, y - ay
    vx, vy = bx - ax, by - ay
    h = ((px * vx + py * vy) / (vx * vx + vy * vy)).clamp(0, 1)
    return torch.sqrt((px - vx * h) ** 2 + (py - vy * h) ** 2) - r


def _uniform_hash(seed: int, index: np.ndarray, count: int) -> np.ndarray:
    """Uniform [0, 1) numbers for (seed, index, k), k < count: splitmix64 of a combined counter.

    Vectorised and stateless, so image i's parameters never depend on which other indices are drawn.
    """
    with np.errstate(over="ignore"):
        k = np.arange(count, dtype=np.uint64)
        x = (
            (np.uint64(seed) * np.uint64(0x9E3779B97F4A7C15))
            ^ (index.astype(np.uint64)[:, None] * np.uint64(0xBF58476D1CE4E5B9))
            ^ (k[None, :] * np.uint64(0x94D049BB133111EB))
        )
        for shift, mult in ((30, 0xBF58476D1CE4E5B9), (27, 0x94D049BB133111EB)):
            x = (x ^ (x >> np.uint64(shift))) * np.uint64(mult)
        x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(11)).astype(np.float64) / float(2**53)


def _coverage(sdf, pixel):
    """Fraction of a pixel inside the shape, from the signed distance (analytic anti-aliasing)."""
    return (0.5 - sdf / pixel).clamp(0, 1)


class ToyFaces(torch.utils.data.Dataset):
    """Index -> (image (3,H,W) in [-1, 1], part map (H,W) long, attributes (n_attr,) long).

    `length` only sets `len()` for loaders; any non-negative index is valid.
    """

    def __init__(self, resolution: int = 64, seed: int = 0, length: int = 100_000):
        if resolution not in RESOLUTIONS:
            raise LatentcompError(
                f"toyfaces resolution {resolution} is not supported; use one of {RESOLUTIONS}"
            )
        self.resolution = resolution
        self.seed = int(seed)
        self.length = int(length)
        lin = (torch.arange(resolution, dtype=torch.float32) + 0.5) / resolution * 2 - 1
        self._gy, self._gx = torch.meshgrid(lin, lin, indexing="ij")
        self._pixel = 2.0 / resolution

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int):
        img, parts, attrs = self.render_batch([index])
        return img[0], parts[0], attrs[0]

    # ---- parameters ----
    def sample_params(self, indices) -> dict[str, torch.Tensor]:
        """Attributes and continuous variation for each index, from a counter-based hash of (seed, index)."""
        idx = np.asarray(list(indices), dtype=np.int64).reshape(-1)
        if (idx < 0).any():
            raise LatentcompError(f"toyfaces indices must be >= 0, got {int(idx.min())}")
        n_attr = len(ATTRIBUTES)
        u = _uniform_hash(self.seed, idx, n_attr + 8)  # (N, n_attr + 8) in [0, 1)
        sizes = np.array([len(v) for v in ATTRIBUTES.values()])
        cats = np.floor(u[:, :n_attr] * sizes).astype(np.float32)
        rows = np.concatenate([cats, u[:, n_attr:] * 2 - 1], axis=1)
        arr = torch.from_numpy(rows.astype(np.float32))
        n_attr = len(ATTRIBUTES)
        params = {name: arr[:, k].long() for k, name in enumerate(ATTRIBUTES)}
        c = arr[:, n_attr:]
        params.update(
            cx=c[:, 0] * 0.08,
            cy=c[:, 1] * 0.05 + 0.1,
            scale=1.15 + c[:, 2] * 0.08,
            angle=c[:, 3] * math.radians(8),
            light_angle=c[:, 4] * math.pi,
            light=0.06 + 0.06 * c[:, 5],
            brightness=1.0 + 0.05 * c[:, 6],
            mouth_width=1.0 + 0.12 * c[:, 7],
        )
        return params

    def attributes_of(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.stack([params[name] for name in ATTRIBUTES], dim=1)

    def render_batch(self, indices, overrides: dict[str, int] | None = None):
        params = self.sample_params(indices)
        for name, value in (overrides or {}).items():
            if name not in params:
                raise LatentcompError(f"unknown toyfaces parameter {name!r}; known: {', '.join(params)}")
            params[name] = torch.full_like(params[name], value)
        # chunks of 128 keep the temporaries in cache; larger batches are slower per image
        chunks = [
            self.render({k: v[i : i + 128] for k, v in params.items()})
            for i in range(0, len(params["cx"]), 128)
        ]
        img = torch.cat([c[0] for c in chunks])
        parts = torch.cat([c[1] for c in chunks])
        return img, parts, self.attributes_of(params)

    # ---- drawing ----
    #: draw the small parts in their pixel windows only (off: on the whole canvas, for tests)
    use_windows = True

    def _window(self, p: dict[str, torch.Tensor], box) -> tuple[slice, slice]:
        """Pixel rows and columns holding the face-local box of every face in the batch.

        A pixel outside them has its centre outside the box for every face, so the box's parts cover
        none of it: painting them only inside leaves the image bit for bit as on the whole canvas.
        """
        H = self.resolution
        if not self.use_windows:
            return slice(0, H), slice(0, H)
        u = torch.tensor([box[0], box[2], box[0], box[2]])
        v = torch.tensor([box[1], box[1], box[3], box[3]])
        s, cos, sin = p["scale"][:, None], torch.cos(p["angle"])[:, None], torch.sin(p["angle"])[:, None]
        # face-local -> image coordinates: the inverse of render's rotation and scale, plus the offset
        gx = p["cx"][:, None] + s * (cos * u - sin * v)
        gy = p["cy"][:, None] + s * (sin * u + cos * v)

        def span(g):  # image coordinates -> pixel index range whose centres cover [min, max], + 1 px
            lo = math.floor(float(g.min() + 1) * H / 2 - 0.5) - 1
            hi = math.ceil(float(g.max() + 1) * H / 2 - 0.5) + 2
            return slice(min(max(lo, 0), H), min(max(hi, 0), H))

        return span(gy), span(gx)

    def render(self, p: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        n = p["cx"].shape[0]
        H = self.resolution

        def col(v):  # (B,) -> (B, 1, 1)
            return v.view(n, 1, 1)

        # face-local coordinates: undo translation, rotation and scale
        s, a = col(p["scale"]), col(p["angle"])
        dx, dy = self._gx - col(p["cx"]), self._gy - col(p["cy"])
        cos, sin = torch.cos(a), torch.sin(a)
        x_all = (cos * dx + sin * dy) / s
        y_all = (-sin * dx + cos * dy) / s
        x, y = x_all, y_all  # the coordinates of the window being drawn (first the whole canvas)
        window = (slice(0, H), slice(0, H))
        pixel = self._pixel / s  # pixel size in face units

        def table(values, idx):  # colour table lookup -> (B, 3, 1, 1)
            return torch.tensor(values, dtype=torch.float32)[idx].view(n, 3, 1, 1)

        def pick(choice, options):  # per-sample selection among precomputed (B,H,W) tensors or None
            out = torch.full_like(x, 10.0)
            for k, sdf in enumerate(options):
                if sdf is not None:
                    out = torch.where(col(choice == k), sdf, out)
            return out

        canvas = table(_BACKGROUND, p["background_colour"]).expand(n, 3, H, H).clone()
        labels = torch.zeros(n, H, H, dtype=torch.long)

        def paint(sdf, colour, part):
            alpha = _coverage(sdf, pixel)
            rows, cols = window
            canvas[:, :, rows, cols].mul_(1 - alpha.unsqueeze(1)).add_(alpha.unsqueeze(1) * colour)
            labels[:, rows, cols].masked_fill_(alpha >= 0.5, PART_ID[part])

        def enter(box):  # draw from here on in the window of this face-local box
            nonlocal window, x, y
            window = self._window(p, box)
            x, y = x_all[:, window[0], window[1]], y_all[:, window[0], window[1]]

        radii = torch.tensor(_FACE_RADII)[p["face_shape"]]
        rx, ry = col(radii[:, 0]), col(radii[:, 1])
        hair_col = table(_HAIR, p["hair_colour"])
        skin_col = table(_SKIN, p["skin_tone"])
        style = p["hair_style"]

        # hair behind the face: bob (to the chin) and long (to the shoulders)
        # hair geometry does not depend on the face shape, so that each attribute moves only its own part
        hx, hy = 0.52, 0.56
        bob_back = _ellipse(x, y, 0.0, -0.05, hx + 0.14, hy + 0.02)
        long_back = torch.minimum(
            _box(x, y, 0.0, 0.32, hx + 0.14, 0.62, 0.12), _ellipse(x, y, 0.0, -0.1, hx + 0.14, hy + 0.08)
        )
        paint(pick(style, [None, None, bob_back, long_back, None]), hair_col, "hair")
        # neck and face
        paint(
            torch.minimum(_box(x, y, 0.0, ry + 0.1, 0.16, 0.3, 0.04), _ellipse(x, y, 0.0, 0.0, rx, ry)),
            skin_col,
            "skin",
        )
        # hair in front: a cap over the top of the head (+ a bun)
        cap = torch.maximum(_ellipse(x, y, 0.0, -0.08, hx + 0.06, hy + 0.02), y + 0.37)  # clear of the brows
        bun = torch.minimum(cap, _circle(x, y, 0.0, -hy - 0.2, 0.17))
        paint(pick(style, [None, cap, cap, cap, bun]), hair_col, "hair")
        # eyes: whites, then iris
        enter(_UPPER_BOX)
        ex, ey = 0.19, -0.07
        whites = torch.minimum(_ellipse(x, y, -ex, ey, 0.105, 0.075), _ellipse(x, y, ex, ey, 0.105, 0.075))
        paint(whites, torch.tensor(_EYE_WHITE).view(1, 3, 1, 1), "eyes")
        iris = torch.minimum(_circle(x, y, -ex, ey, 0.058), _circle(x, y, ex, ey, 0.058))
        paint(torch.maximum(iris, whites), table(_EYE, p["eye_colour"]), "eyes")
        # eyebrows: flat, raised (outer ends up), angry (inner ends down)
        by, t = ey - 0.15, 0.032
        brow_shapes = []
        for inner_dy, outer_dy in [(0.0, 0.0), (0.01, -0.06), (0.05, -0.03)]:
            left = _segment(x, y, -ex - 0.1, by + outer_dy, -ex + 0.09, by + inner_dy, t)
            right = _segment(x, y, ex + 0.1, by + outer_dy, ex - 0.09, by + inner_dy, t)
            brow_shapes.append(torch.minimum(left, right))
        paint(pick(p["eyebrow_style"], brow_shapes), torch.tensor(_BROW).view(1, 3, 1, 1), "eyebrows")
        # nose
        enter(_LOWER_BOX)
        ny = 0.12
        noses = [
            _circle(x, y, 0.0, ny, 0.055),
            _segment(x, y, 0.0, ny - 0.12, 0.0, ny + 0.02, 0.04),
            _ellipse(x, y, 0.0, ny, 0.11, 0.05),
        ]
        paint(pick(p["nose_shape"], noses), skin_col * 0.72, "nose")
        # mouth: smile (lower arc), neutral (line), open (dark ellipse), frown (upper arc)
        my, mw = 0.31, 0.16 * col(p["mouth_width"])
        smile = torch.maximum((_circle(x, y, 0.0, my - 0.12, mw + 0.02)).abs() - 0.035, -(y - my + 0.05))
        frown = torch.maximum((_circle(x, y, 0.0, my + 0.16, mw + 0.02)).abs() - 0.035, y - my - 0.02)
        neutral = _segment(x, y, -mw, my, mw, my, 0.035)
        opened = _ellipse(x, y, 0.0, my, mw * 0.62, 0.085 + 0 * mw)
        mouth_col = torch.where(
            p["mouth_expression"].view(n, 1, 1, 1) == 2,
            torch.tensor(_MOUTH_INSIDE).view(1, 3, 1, 1),
            torch.tensor(_MOUTH).view(1, 3, 1, 1),
        )
        paint(pick(p["mouth_expression"], [smile, neutral, opened, frown]), mouth_col, "mouth")
        # glasses: round frames, square frames, sunglasses (filled lenses); all with a bridge
        enter(_UPPER_BOX)
        bridge = _segment(x, y, -ex + 0.1, ey, ex - 0.1, ey, 0.022)
        rings = torch.minimum(_circle(x, y, -ex, ey, 0.125).abs(), _circle(x, y, ex, ey, 0.125).abs()) - 0.026
        squares = torch.minimum(
            _box(x, y, -ex, ey, 0.13, 0.1, 0.02).abs(), _box(x, y, ex, ey, 0.13, 0.1, 0.02).abs()
        )
        squares = squares - 0.026
        lenses = torch.minimum(
            _box(x, y, -ex, ey + 0.01, 0.135, 0.095, 0.05), _box(x, y, ex, ey + 0.01, 0.135, 0.095, 0.05)
        )
        glasses = pick(
            p["glasses"],
            [
                None,
                torch.minimum(rings, bridge),
                torch.minimum(squares, bridge),
                torch.minimum(lenses, bridge),
            ],
        )
        frame_col = torch.where(
            p["glasses"].view(n, 1, 1, 1) == 3,
            torch.tensor(_LENS).view(1, 3, 1, 1),
            torch.tensor(_FRAME).view(1, 3, 1, 1),
        )
        paint(glasses, frame_col, "glasses")

        # lighting: a soft directional gradient and a global brightness
        la = col(p["light_angle"])
        gradient = 1 + col(p["light"]) * (torch.cos(la) * self._gx + torch.sin(la) * self._gy)
        canvas = canvas * (gradient * col(p["brightness"])).unsqueeze(1)
        return canvas.clamp(0, 1) * 2 - 1, labels


def part_colours() -> list[tuple[int, int, int]]:
    """A fixed palette for saving part maps as indexed PNGs."""
    return [
        (0, 0, 0),
        (230, 180, 150),
        (120, 70, 20),
        (60, 130, 230),
        (90, 40, 20),
        (200, 120, 90),
        (220, 40, 60),
        (60, 220, 120),
    ]
