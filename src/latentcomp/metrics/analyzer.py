"""The toyfaces analyzer: a small CNN that reads a toyfaces image back into its part map and attributes.

It is the measuring instrument of the embedded domain: attribute accuracy on generated or edited images,
part maps for automatic collages, and its penultimate features as the domain feature space for
FID / density / coverage.

    an = load_analyzer("builtin:toyfaces-analyzer")
    out = an.predict(images)            # AnalyzerOutput: partmap, part_logits, attrs, attr_probs, confidence
    feats = an.features(images)         # (N, feature_dim)
    an.attribute_accuracy(images, attrs), an.part_miou(images, partmaps)

Network (shapes for the working resolution 64): a U-Net-ish encoder-decoder with BN+ReLU.

    x (N,3,64,64) -> enc0 (w0,64,64) -> enc1 (w1,32,32) -> enc2 (w2,16,16) -> enc3 (w3,8,8)
    dec2 = conv([up(enc3), enc2]) (w2,16,16) -> dec1 (w1,32,32) -> dec0 (w0,64,64) -> seg 1x1 (P,64,64)
    part pooling: dec1 averaged inside each predicted part (softmax of the part logits, no gradient) -> P*w1
    pooled = [avg(enc3), max(enc3), part pooling] -> Linear -> BN -> ReLU = features (D)
    one Linear(D, n_values) head per attribute: small parts (eyebrows, nose) get their own feature slots

Inputs of another size (32, 128, ...) are resized to 64; part logits are resized back to the input size.
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import LatentcompError
from ..io import atomic_write, save_torch, write_text
from ..outputs import check_run_folder
from ..safe_pickle import load_weights_only

FORMAT = "latentcomp-analyzer"
FORMAT_VERSION = 1
WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
#: data set seed of the held-out evaluation renders; training refuses it
EVAL_SEED = 1_000_003
DEFAULT_WIDTHS = (16, 32, 64, 128)
#: attributes that cannot be seen in some images: attribute -> {other attribute: [values that hide it]}.
#: Sunglasses cover the eyes; a bald head shows no hair colour. Recorded in each analyzer's config.
DEFAULT_HIDDEN_WHEN = {"eye_colour": {"glasses": ["sunglasses"]}, "hair_colour": {"hair_style": ["bald"]}}
DEFAULT_FEATURE_DIM = 192


# --------------------------------------------------------------------------------------------- network
def _conv_bn(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)
    )


class AnalyzerNet(nn.Module):
    """Raw network. `forward(x64) -> (part_logits (N,P,64,64), [attr logits (N,V_a)], features (N,D))`."""

    def __init__(self, n_parts: int, attr_sizes: list[int], widths=DEFAULT_WIDTHS,
                 feature_dim: int = DEFAULT_FEATURE_DIM):
        super().__init__()
        w0, w1, w2, w3 = widths
        self.enc0 = nn.Sequential(_conv_bn(3, w0), _conv_bn(w0, w0))  # 64x64
        self.enc1 = nn.Sequential(_conv_bn(w0, w1, 2), _conv_bn(w1, w1))  # 32x32
        self.enc2 = nn.Sequential(_conv_bn(w1, w2, 2), _conv_bn(w2, w2))  # 16x16
        self.enc3 = nn.Sequential(_conv_bn(w2, w3, 2), _conv_bn(w3, w3))  # 8x8
        self.dec2 = _conv_bn(w3 + w2, w2)  # 16x16
        self.dec1 = _conv_bn(w2 + w1, w1)  # 32x32
        self.dec0 = _conv_bn(w1 + w0, w0)  # 64x64
        self.seg = nn.Conv2d(w0, n_parts, 1)
        self.embed = nn.Sequential(
            nn.Linear(2 * w3 + n_parts * w1, feature_dim, bias=False), nn.BatchNorm1d(feature_dim), nn.ReLU()
        )
        self.heads = nn.ModuleList([nn.Linear(feature_dim, v) for v in attr_sizes])

    @staticmethod
    def _up_cat(x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return torch.cat([F.interpolate(x, size=skip.shape[-2:], mode="nearest"), skip], 1)

    def forward(self, x: torch.Tensor):
        e0 = self.enc0(x)
        e1 = self.enc1(e0)
        e2 = self.enc2(e1)
        e3 = self.enc3(e2)
        d2 = self.dec2(self._up_cat(e3, e2))
        d1 = self.dec1(self._up_cat(d2, e1))
        d0 = self.dec0(self._up_cat(d1, e0))
        seg = self.seg(d0)
        # part pooling: mean of dec1 features inside each (soft) predicted part
        w = F.avg_pool2d(seg.detach(), 2).softmax(1).flatten(2)  # (N, P, h*w)
        parts = torch.bmm(w, d1.flatten(2).transpose(1, 2)) / (w.sum(2, keepdim=True) + 1.0)  # (N, P, w1)
        pooled = torch.cat([e3.mean((2, 3)), e3.amax((2, 3)), parts.flatten(1)], 1)
        feats = self.embed(pooled)
        return seg, [h(feats) for h in self.heads], feats


# --------------------------------------------------------------------------------------------- wrapper
@dataclass
class AnalyzerOutput:
    """What `Analyzer.predict` returns (all on the input's device).

    partmap: (N, H, W) long, class ids into `Analyzer.part_names`, at the input resolution.
    part_logits: (N, P, H, W) float at the input resolution (None with `logits=False`).
    attrs: (N, n_attr) long, value ids into `Analyzer.attribute_values[name]`.
    attr_probs: one (N, n_values) softmax per attribute, in `Analyzer.attribute_names` order.
    confidence: (N,) mean, over the attributes visible by the prediction, of the max probability.
    visible: (N, n_attr) bool, which attributes the predicted attributes leave visible (`Analyzer.visible`);
        a hidden attribute's prediction (eye colour behind sunglasses) is a guess.
    """

    partmap: torch.Tensor
    part_logits: torch.Tensor | None
    attrs: torch.Tensor
    attr_probs: list[torch.Tensor]
    confidence: torch.Tensor
    visible: torch.Tensor


class Analyzer(nn.Module):
    """A frozen toyfaces analyzer. Build it with `load_analyzer`; every method is batched and no_grad
    (except `forward`, which keeps gradients to the input)."""

    def __init__(self, config: dict, spec: str = ""):
        super().__init__()
        self.config = config
        self.spec = spec
        self.resolution = int(config["resolution"])
        self.part_names: list[str] = list(config["parts"])
        self.attribute_values: dict[str, list[str]] = {k: list(v) for k, v in config["attributes"].items()}
        self.attribute_names: list[str] = list(self.attribute_values)
        self.attribute_part: dict[str, str] = dict(config.get("attribute_part", {}))
        self.feature_dim = int(config["feature_dim"])
        # (attribute index, occluding attribute index, occluding value ids)
        self._hidden: list[tuple[int, int, list[int]]] = []
        for name, rule in config.get("hidden_when", {}).items():
            for other, values in rule.items():
                if name in self.attribute_values and other in self.attribute_values:
                    vals = self.attribute_values[other]
                    ids = [vals.index(v) for v in values if v in vals]
                    names = self.attribute_names
                    self._hidden.append((names.index(name), names.index(other), ids))
        self.net = AnalyzerNet(
            len(self.part_names),
            [len(v) for v in self.attribute_values.values()],
            widths=tuple(config["widths"]),
            feature_dim=self.feature_dim,
        )
        self.freeze()

    def freeze(self) -> Analyzer:
        self.net.eval()
        for p in self.net.parameters():
            p.requires_grad_(False)
        return self

    def train(self, mode: bool = True) -> Analyzer:  # the wrapper stays frozen; train `net` directly
        return super().train(False)

    @property
    def device(self) -> torch.device:
        return next(self.net.parameters()).device

    def visible(self, attrs: torch.Tensor) -> torch.Tensor:
        """(N, n_attr) bool: which attributes can be seen given attribute values `attrs` (N, n_attr), e.g.
        eye colour is hidden behind sunglasses (rules: `config["hidden_when"]`)."""
        attrs = torch.as_tensor(attrs).long()
        vis = torch.ones(attrs.shape, dtype=torch.bool, device=attrs.device)
        for a, o, ids in self._hidden:
            for v in ids:
                vis[:, a] &= attrs[:, o] != v
        return vis

    # ---------------------------------------------------------------- input handling
    def _prepare(self, images: torch.Tensor, what: str = "images") -> torch.Tensor:
        if not isinstance(images, torch.Tensor):
            raise LatentcompError(
                f"{what} must be a torch.Tensor (N, 3, H, W) in [-1, 1], got {type(images).__name__}"
            )
        if images.ndim == 3:
            images = images.unsqueeze(0)
        if images.ndim != 4 or images.shape[1] != 3:
            raise LatentcompError(f"{what} must have shape (N, 3, H, W), got {tuple(images.shape)}")
        if not images.is_floating_point():
            raise LatentcompError(f"{what} must be float in [-1, 1], got dtype {images.dtype}")
        return images

    def _to_work(self, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, torch.float32)
        r = self.resolution
        if x.shape[-2:] != (r, r):
            x = F.interpolate(x, size=(r, r), mode="bilinear", align_corners=False,
                              antialias=bool(x.shape[-1] > r or x.shape[-2] > r))
        return x

    def forward(self, images: torch.Tensor):
        """(part_logits (N,P,H,W) at the input size, [attr logits], features (N,D)); keeps gradients."""
        images = self._prepare(images)
        seg, attr_logits, feats = self.net(self._to_work(images))
        if seg.shape[-2:] != images.shape[-2:]:
            seg = F.interpolate(seg, size=images.shape[-2:], mode="bilinear", align_corners=False)
        return seg, attr_logits, feats

    def _batches(self, images: torch.Tensor, batch_size: int):
        images = self._prepare(images)
        for i in range(0, images.shape[0], batch_size):
            yield i, images[i : i + batch_size]

    # ---------------------------------------------------------------- public API
    @torch.no_grad()
    def predict(self, images: torch.Tensor, batch_size: int = 256, logits: bool = True) -> AnalyzerOutput:
        """Part map and attributes of images (N, 3, H, W) in [-1, 1]. Results on the input's device."""
        out_dev = images.device if isinstance(images, torch.Tensor) else torch.device("cpu")
        pm, pl, at, probs, conf, vis = [], [], [], [], [], []
        for _, x in self._batches(images, batch_size):
            seg, attr_logits, _ = self.forward(x)
            pm.append(seg.argmax(1).to(out_dev))
            if logits:
                pl.append(seg.to(out_dev))
            p = [a.softmax(1) for a in attr_logits]
            probs.append([q.to(out_dev) for q in p])
            a = torch.stack([q.argmax(1) for q in p], 1)
            v = self.visible(a)
            top = torch.stack([q.amax(1) for q in p], 1)
            at.append(a.to(out_dev))
            vis.append(v.to(out_dev))
            conf.append(((top * v).sum(1) / v.sum(1).clamp(min=1)).to(out_dev))
        if not pm:
            raise LatentcompError("images is empty (N = 0)")
        return AnalyzerOutput(
            partmap=torch.cat(pm),
            part_logits=torch.cat(pl) if logits else None,
            attrs=torch.cat(at),
            attr_probs=[torch.cat([b[k] for b in probs]) for k in range(len(self.attribute_names))],
            confidence=torch.cat(conf),
            visible=torch.cat(vis),
        )

    @torch.no_grad()
    def features(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """Penultimate features (N, feature_dim), float32 on the input's device."""
        out_dev = images.device if isinstance(images, torch.Tensor) else torch.device("cpu")
        feats = [self.net(self._to_work(x))[2].to(out_dev) for _, x in self._batches(images, batch_size)]
        if not feats:
            return torch.zeros(0, self.feature_dim, device=out_dev)
        return torch.cat(feats)

    @torch.no_grad()
    def attribute_accuracy(self, images: torch.Tensor, attrs: torch.Tensor, batch_size: int = 256,
                           visible_only: bool = True) -> dict[str, float]:
        """Fraction of correct predictions per attribute name, plus "mean" (mean over attributes).

        visible_only: count an attribute only in images where the true attributes leave it visible
        (eye colour is not scored behind sunglasses, hair colour not on a bald head)."""
        attrs = torch.as_tensor(attrs)
        n_attr = len(self.attribute_names)
        if attrs.ndim != 2 or attrs.shape[1] != n_attr or attrs.shape[0] != len(images):
            raise LatentcompError(
                f"attrs must have shape (N={len(images)}, {n_attr}) matching images, got {tuple(attrs.shape)}"
            )
        attrs = attrs.cpu().long()
        counted = self.visible(attrs) if visible_only else torch.ones(attrs.shape, dtype=torch.bool)
        correct = torch.zeros(n_attr, dtype=torch.long)
        for i, x in self._batches(images, batch_size):
            _, attr_logits, _ = self.forward(x)
            pred = torch.stack([a.argmax(1) for a in attr_logits], 1).cpu()
            correct += ((pred == attrs[i : i + len(x)]) & counted[i : i + len(x)]).sum(0)
        total = counted.sum(0)
        acc = {k: correct[j].item() / max(total[j].item(), 1) for j, k in enumerate(self.attribute_names)}
        acc["mean"] = sum(acc.values()) / n_attr
        return acc

    @torch.no_grad()
    def part_confusion(self, images: torch.Tensor, partmaps: torch.Tensor, batch_size: int = 256):
        """(P, P) confusion counts, rows = true class, columns = predicted class."""
        partmaps = torch.as_tensor(partmaps)
        if partmaps.ndim == 4 and partmaps.shape[1] == 1:
            partmaps = partmaps[:, 0]
        if partmaps.ndim != 3 or partmaps.shape[0] != len(images) or partmaps.shape[-2:] != images.shape[-2:]:
            raise LatentcompError(
                f"partmaps must have shape (N, H, W) matching images {tuple(images.shape)}, "
                f"got {tuple(partmaps.shape)}"
            )
        p = len(self.part_names)
        conf = torch.zeros(p * p, dtype=torch.long)
        for i, x in self._batches(images, batch_size):
            seg, _, _ = self.forward(x)
            pred = seg.argmax(1).cpu().reshape(-1)
            true = partmaps[i : i + len(x)].cpu().long().reshape(-1)
            conf += torch.bincount(true * p + pred, minlength=p * p)
        return conf.reshape(p, p)

    def part_miou(self, images: torch.Tensor, partmaps: torch.Tensor, batch_size: int = 256,
                  per_class: bool = False):
        """Mean intersection-over-union over part classes present in truth or prediction (IoU summed over
        the whole set per class). With per_class=True: dict part name -> IoU plus "mean"."""
        return iou_from_confusion(self.part_confusion(images, partmaps, batch_size), self.part_names,
                                  per_class)


def iou_from_confusion(conf: torch.Tensor, names: list[str], per_class: bool = False):
    conf = conf.double()
    inter = conf.diag()
    union = conf.sum(0) + conf.sum(1) - inter
    present = union > 0
    iou = torch.where(present, inter / union.clamp(min=1), torch.zeros_like(inter))
    mean = (iou[present].mean().item()) if present.any() else float("nan")
    if not per_class:
        return mean
    out = {n: (iou[k].item() if present[k] else float("nan")) for k, n in enumerate(names)}
    out["mean"] = mean
    return out


# --------------------------------------------------------------------------------------------- loading
def builtin_analyzers() -> list[str]:
    names = []
    for js in sorted(WEIGHTS_DIR.glob("*.json")):
        try:
            if json.loads(js.read_text()).get("format") == FORMAT:
                names.append(js.stem)
        except (OSError, ValueError):
            continue
    return names


def _resolve(spec: str | os.PathLike) -> tuple[Path, Path]:
    """spec -> (weights .safetensors, config .json)."""
    accepted = ("builtin:NAME (e.g. builtin:toyfaces-analyzer), a .safetensors file with its .json "
                "beside it, or a run folder of `latentcomp analyzer train`")
    s = str(spec)
    if s.startswith("builtin:"):
        name = s.split(":", 1)[1]
        w = WEIGHTS_DIR / f"{name}.safetensors"
        if not w.is_file():
            avail = ", ".join(f"builtin:{n}" for n in builtin_analyzers()) or "none bundled"
            raise LatentcompError(f"unknown builtin analyzer {s!r} (file {w} not found); available: {avail}")
        return w, w.with_suffix(".json")
    p = Path(s).expanduser()
    if p.is_dir():
        w = p / "analyzer.safetensors"
        if not w.is_file():
            raise LatentcompError(f"analyzer weights file not found: {w} (folder {p} has no finished run); "
                                  f"expected {accepted}")
        return w, w.with_suffix(".json")
    if not p.exists():
        raise LatentcompError(f"analyzer weights file not found: {p}; expected {accepted}")
    if p.suffix == ".json":
        return p.with_suffix(".safetensors"), p
    return p, p.with_suffix(".json")


def load_analyzer(spec: str | os.PathLike = "builtin:toyfaces-analyzer",
                  device: str | None = None) -> Analyzer:
    """Load a frozen analyzer from `builtin:NAME`, a `.safetensors` file (config: the `.json` beside it)
    or a training run folder."""
    from safetensors.torch import load_file

    from ..devices import parse_device

    device = parse_device(device)
    weights, cfg_path = _resolve(spec)
    if not weights.is_file():
        raise LatentcompError(f"analyzer weights file not found: {weights}")
    if not cfg_path.is_file():
        raise LatentcompError(
            f"analyzer config file not found: {cfg_path} (it must sit beside {weights.name})"
        )
    try:
        config = json.loads(cfg_path.read_text())
    except (OSError, ValueError) as e:
        raise LatentcompError(f"analyzer config {cfg_path} is not valid JSON: {e}") from None
    if not isinstance(config, dict) or config.get("format") != FORMAT:
        raise LatentcompError(f"analyzer config {cfg_path} is not a {FORMAT} config (missing \"format\": "
                              f"\"{FORMAT}\")")
    try:
        state = load_file(str(weights))
    except Exception as e:  # safetensors raises its own error types for corrupt headers
        raise LatentcompError(f"cannot read analyzer weights {weights}: {e}; expected a safetensors file "
                              "written by `latentcomp analyzer train`") from None
    try:
        an = Analyzer(config, spec=str(spec))
        an.net.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise LatentcompError(
            f"analyzer weights {weights} do not match config {cfg_path.name}: {msg}"
        ) from None
    an.freeze()
    if device is not None:
        an.to(device)
    return an


def save_analyzer(net: AnalyzerNet, config: dict, path: str | os.PathLike, half: bool = False) -> Path:
    """Write `path` (.safetensors) and the config beside it (.json), each atomically."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {}
    for k, v in net.state_dict().items():
        v = v.detach().cpu().contiguous()
        state[k] = v.half() if (half and v.is_floating_point() and "running_var" not in k) else v
    atomic_write(path, lambda tmp: save_file(state, str(tmp), metadata={"format": FORMAT}))
    write_text(path.with_suffix(".json"), json.dumps(config, indent=2) + "\n")
    return path


# --------------------------------------------------------------------------------------------- training
def augment(x: torch.Tensor, generator: torch.Generator, clean_fraction: float = 0.3) -> torch.Tensor:
    """Photometric degradations that GAN samples show: slight blur, down-up resampling, colour jitter,
    noise. Geometry is untouched, so part maps stay valid. x: (N,3,H,W) in [-1,1] on the CPU."""
    x0 = x
    n, c, h, w = x.shape
    clean = torch.rand(n, generator=generator) < clean_fraction  # keep some exact renders: sharp edges

    def u(lo, hi, *shape):
        return lo + (hi - lo) * torch.rand(shape or (n,), generator=generator)

    # gaussian blur for half the batch, sigma in [0.3, 1.0] (per-sample kernels via grouped conv)
    blur = torch.rand(n, generator=generator) < 0.5
    if blur.any():
        sigma = u(0.3, 1.0)
        t = torch.arange(-2, 3, dtype=torch.float32)
        k1 = torch.exp(-(t[None] ** 2) / (2 * sigma[:, None] ** 2))
        k1 = k1 / k1.sum(1, keepdim=True)
        k2 = (k1[:, :, None] * k1[:, None, :]).repeat_interleave(c, 0)[:, None]  # (n*c,1,5,5)
        y = F.conv2d(F.pad(x.reshape(1, n * c, h, w), (2, 2, 2, 2), mode="replicate"), k2, groups=n * c)
        x = torch.where(blur[:, None, None, None], y.reshape(n, c, h, w), x)
    # down-up resampling (what a 32x32 input resized to 64 looks like) for a quarter of the batch
    du = torch.rand(n, generator=generator) < 0.25
    if du.any() and h >= 32:
        y = F.interpolate(x, scale_factor=0.5, mode="bilinear", antialias=True, align_corners=False)
        y = F.interpolate(y, size=(h, w), mode="bilinear", align_corners=False)
        x = torch.where(du[:, None, None, None], y, x)
    # colour: contrast around the image mean, brightness shift, small per-channel gain
    mean = x.mean((1, 2, 3), keepdim=True)
    x = (x - mean) * u(0.9, 1.1)[:, None, None, None] + mean
    x = x + u(-0.06, 0.06)[:, None, None, None]
    x = x * u(0.96, 1.04, n, c)[:, :, None, None]
    # gaussian noise, std in [0, 0.04]
    x = x + torch.randn(x.shape, generator=generator) * u(0.0, 0.04)[:, None, None, None]
    return torch.where(clean[:, None, None, None], x0, x.clamp(-1, 1))


def _toyfaces():
    try:
        from ..data import toyfaces
    except ImportError as e:  # pragma: no cover - the data module ships with the package
        raise LatentcompError(f"the toyfaces data set is not available: {e}") from None
    return toyfaces


def default_config(widths=DEFAULT_WIDTHS, feature_dim: int = DEFAULT_FEATURE_DIM) -> dict:
    tf = _toyfaces()
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "domain": "toyfaces",
        "resolution": 64,
        "parts": list(tf.PARTS),
        "attributes": {k: list(v) for k, v in tf.ATTRIBUTES.items()},
        "attribute_part": dict(getattr(tf, "ATTRIBUTE_PART", {})),
        "hidden_when": getattr(tf, "ATTRIBUTE_HIDDEN_WHEN", DEFAULT_HIDDEN_WHEN),
        "widths": list(widths),
        "feature_dim": int(feature_dim),
    }


def _dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - mean over classes of the soft Dice score over the batch: small parts count as much as the
    background, which plain cross-entropy does not do."""
    probs = logits.softmax(1)
    onehot = F.one_hot(target, logits.shape[1]).permute(0, 3, 1, 2).to(probs.dtype)
    inter = (probs * onehot).sum((0, 2, 3))
    denom = probs.sum((0, 2, 3)) + onehot.sum((0, 2, 3))
    return 1 - ((2 * inter + 1) / (denom + 1)).mean()


def _lr_at(step: int, steps: int, lr: float, warmup: int) -> float:
    if step < warmup:
        return lr * (step + 1) / warmup
    t = (step - warmup) / max(1, steps - warmup)
    return lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(t, 1.0))))


def train_analyzer(out: str | os.PathLike, steps: int = 1600, batch: int = 48, seed: int = 0,
                   resume: bool = False, lr: float = 2e-3, widths=DEFAULT_WIDTHS,
                   feature_dim: int = DEFAULT_FEATURE_DIM, attr_weight: float = 1.0, dice_weight: float = 1.0,
                   ckpt_every: int = 250, eval_every: int = 1000, eval_n: int = 256,
                   progress: bool = True, tensorboard: bool = True, stop_after: int | None = None,
                   overwrite: bool = False) -> Path:
    """Train an analyzer on freshly rendered toyfaces (data seed `seed`, batch k = indices [kB, (k+1)B)).

    Writes OUT/checkpoint.pt (atomic, resumable: model, optimiser, step, config), OUT/log.jsonl, TensorBoard
    scalars in OUT/tb, and at the end OUT/analyzer.safetensors + OUT/analyzer.json (load with
    `load_analyzer(OUT)`). Returns OUT/analyzer.safetensors, or the checkpoint when `stop_after` (a step
    count) ends this call early; `resume=True` then continues the same run exactly. A non-empty OUT without
    a checkpoint to resume is refused unless `overwrite=True`.
    """
    from tqdm.auto import tqdm

    if seed == EVAL_SEED:
        raise LatentcompError(f"--seed {seed} is the held-out evaluation seed; pick another training seed")
    if steps < 1 or batch < 2:
        raise LatentcompError(f"need --steps >= 1 and --batch >= 2, got steps={steps} batch={batch}")
    tf = _toyfaces()
    out = Path(out)
    ckpt_path = out / "checkpoint.pt"
    if ckpt_path.exists() and not (resume or overwrite):
        raise LatentcompError(
            f"{ckpt_path} exists; pass --resume to continue it, --overwrite to start over, or choose a new "
            "--out"
        )
    check_run_folder(out, state_file=ckpt_path.name, resume=resume, overwrite=overwrite)
    if overwrite and not resume:
        ckpt_path.unlink(missing_ok=True)  # the old run's checkpoint must not be resumed later
    out.mkdir(parents=True, exist_ok=True)

    config = default_config(widths, feature_dim)
    with torch.random.fork_rng(devices=[]):  # seeded initial weights, global RNG left as it was
        torch.manual_seed(seed)
        net = AnalyzerNet(len(config["parts"]), [len(v) for v in config["attributes"].values()],
                          widths=tuple(config["widths"]), feature_dim=config["feature_dim"])
    net = net.to(memory_format=torch.channels_last)  # faster convolutions on CPU
    opt = torch.optim.Adam(net.parameters(), lr=lr, betas=(0.9, 0.99))
    start, elapsed = 0, 0.0
    hp = {"steps": steps, "batch": batch, "seed": seed, "lr": lr, "attr_weight": attr_weight,
          "dice_weight": dice_weight, "schedule": [[0, steps]]}
    if resume and ckpt_path.exists():
        ck = load_weights_only(ckpt_path, "analyzer checkpoint")
        if ck["config"]["widths"] != config["widths"] or ck["config"]["parts"] != config["parts"]:
            raise LatentcompError(f"{ckpt_path} was trained with another architecture or data set version")
        net.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        start, elapsed = int(ck["step"]), float(ck.get("elapsed", 0.0))
        for k in ("batch", "seed", "lr", "attr_weight", "dice_weight"):
            if ck["hparams"].get(k) != hp[k]:
                raise LatentcompError(f"{k} {hp[k]} differs from the run in {out} ({ck['hparams'].get(k)})")
        # --steps may change on resume (the cosine schedule then follows the new length from here on)
        hp["schedule"] = ck["hparams"].get("schedule", [[0, ck["hparams"]["steps"]]])
        if hp["schedule"][-1][1] != steps:
            hp["schedule"] = hp["schedule"] + [[start, steps]]
    ds = tf.ToyFaces(resolution=64, seed=seed)
    ev = tf.ToyFaces(resolution=64, seed=EVAL_SEED)
    writer = None
    if tensorboard:
        from ..extras import require

        SummaryWriter = require("torch.utils.tensorboard", "TensorBoard logs").SummaryWriter
        writer = SummaryWriter(str(out / "tb"), purge_step=start)
    log_path = out / "log.jsonl"
    if log_path.exists():  # drop records past the checkpoint (written after it by an interrupted call)
        keep = [ln for ln in log_path.read_text().splitlines() if ln and json.loads(ln)["step"] <= start]
        log_path.write_text("".join(ln + "\n" for ln in keep))
    log = open(log_path, "a")
    n_attr = len(config["attributes"])

    def save_ckpt(step):
        save_torch({"model": net.state_dict(), "opt": opt.state_dict(), "step": step,
                            "elapsed": elapsed, "config": config, "hparams": hp}, ckpt_path)

    def quick_eval():
        an = Analyzer(config)
        an.net.load_state_dict(net.state_dict())
        imgs, pms, ats = ev.render_batch(list(range(eval_n)))
        acc = an.attribute_accuracy(imgs, ats)
        return acc, an.part_miou(imgs, pms)

    net.train()
    bar = tqdm(total=steps, initial=start, desc="analyzer", disable=not progress, dynamic_ncols=True)
    t0 = time.time() - elapsed
    stop = steps if stop_after is None else max(start, min(steps, stop_after))
    for step in range(start, stop):
        images, partmaps, attrs = ds.render_batch(list(range(step * batch, (step + 1) * batch)))
        g = torch.Generator().manual_seed(seed * 1_000_003 + step)
        x = augment(images.float(), g).contiguous(memory_format=torch.channels_last)
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, steps, lr, warmup=min(200, steps // 10 + 1))
        seg, attr_logits, _ = net(x)
        loss_part = F.cross_entropy(seg, partmaps.long()) + dice_weight * _dice_loss(seg, partmaps.long())
        loss_attr = sum(F.cross_entropy(a, attrs[:, j].long()) for j, a in enumerate(attr_logits)) / n_attr
        loss = loss_part + attr_weight * loss_attr
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        elapsed = time.time() - t0
        bar.update(1)
        bar.set_postfix(part=f"{loss_part.item():.3f}", attr=f"{loss_attr.item():.3f}")
        done = step + 1
        rec = {"step": done, "loss_part": loss_part.item(), "loss_attr": loss_attr.item(),
               "lr": opt.param_groups[0]["lr"], "elapsed_s": round(elapsed, 1)}
        if writer is not None:
            writer.add_scalar("loss/part", rec["loss_part"], done)
            writer.add_scalar("loss/attr", rec["loss_attr"], done)
        if eval_every and (done % eval_every == 0 or done == steps):
            net.eval()
            acc, miou = quick_eval()
            net.train()
            rec.update(eval_attr_acc=acc["mean"], eval_part_miou=miou)
            bar.write(f"step {done}: held-out ({eval_n}) attribute accuracy {acc['mean']:.4f}, "
                      f"part mIoU {miou:.4f}")
            if writer is not None:
                writer.add_scalar("eval/attribute_accuracy", acc["mean"], done)
                writer.add_scalar("eval/part_miou", miou, done)
        if done % 10 == 0 or done == steps or "eval_attr_acc" in rec:
            log.write(json.dumps(rec) + "\n")
            log.flush()
        if done % ckpt_every == 0 or done == stop:
            save_ckpt(done)
    bar.close()
    log.close()
    if writer is not None:
        writer.close()
    if stop < steps:
        return ckpt_path
    net.eval()
    config = dict(config, training={**hp, "wall_time_s": round(elapsed, 1),
                                    "threads": torch.get_num_threads()})
    return save_analyzer(net, config, out / "analyzer.safetensors")


def evaluate_analyzer(analyzer: Analyzer, n: int = 2000, seed: int = EVAL_SEED, resolution: int = 64,
                      batch: int = 250, progress: bool = True, degrade: bool = False) -> dict:
    """Held-out scores on n fresh renders ToyFaces(resolution, seed)[0:n].

    attribute_accuracy: per attribute, over the images where it is visible (the headline number);
    attribute_accuracy_all: over all images (hidden attributes are guesses, e.g. eye colour behind
    sunglasses); part_iou per part and part_miou their mean; mean_confidence as in `predict`.
    degrade: apply the training degradations (blur, resampling, colour jitter, noise; every image, seeded)
    to the renders first, a stand-in for the artefacts of generated images."""
    from tqdm.auto import tqdm

    if n < 1 or batch < 1:
        raise LatentcompError(f"--n and --batch must be >= 1, got n={n} batch={batch}")
    tf = _toyfaces()
    ds = tf.ToyFaces(resolution=resolution, seed=seed)
    names = analyzer.attribute_names
    p = len(analyzer.part_names)
    correct = torch.zeros(len(names), dtype=torch.long)
    correct_vis = torch.zeros(len(names), dtype=torch.long)
    n_vis = torch.zeros(len(names), dtype=torch.long)
    conf = torch.zeros(p, p, dtype=torch.long)
    confidence = 0.0
    t0 = time.time()
    for i in tqdm(range(0, n, batch), desc="eval", disable=not progress, dynamic_ncols=True):
        imgs, pms, ats = ds.render_batch(list(range(i, min(n, i + batch))))
        if degrade:
            imgs = augment(imgs, torch.Generator().manual_seed(seed + i), clean_fraction=0.0)
        out = analyzer.predict(imgs, batch_size=batch)
        ats = ats.long()
        hit = out.attrs.cpu() == ats
        vis = analyzer.visible(ats)
        correct += hit.sum(0)
        correct_vis += (hit & vis).sum(0)
        n_vis += vis.sum(0)
        conf += torch.bincount(pms.long().reshape(-1) * p + out.partmap.cpu().reshape(-1),
                               minlength=p * p).reshape(p, p)
        confidence += out.confidence.sum().item()
    acc = {k: correct_vis[j].item() / max(n_vis[j].item(), 1) for j, k in enumerate(names)}
    acc_all = {k: correct[j].item() / n for j, k in enumerate(names)}
    ious = iou_from_confusion(conf, analyzer.part_names, per_class=True)
    miou = ious.pop("mean")
    return {
        "analyzer": analyzer.spec, "n": n, "seed": seed, "resolution": resolution, "degraded": degrade,
        "attribute_accuracy": acc, "mean_attribute_accuracy": sum(acc.values()) / len(names),
        "attribute_visible_count": {k: n_vis[j].item() for j, k in enumerate(names)},
        "attribute_accuracy_all": acc_all, "mean_attribute_accuracy_all": sum(acc_all.values()) / len(names),
        "part_iou": ious, "part_miou": miou, "mean_confidence": confidence / n,
        "seconds": round(time.time() - t0, 1),
    }
