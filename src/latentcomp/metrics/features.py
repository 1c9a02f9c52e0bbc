"""Feature extractors for FID / KID / IS / precision-recall-density-coverage. Nothing downloads.

`load_features(spec)` returns an extractor: call it on images (N, C, H, W) float in [-1, 1] and get
float32 features (N, D) on the CPU, computed in batches. Specs:

- `analyzer` (the offline default for toyfaces) or `analyzer:SPEC`: the toyfaces analyzer's penultimate
  features (`Analyzer.features`, D = 192 for the bundled one), `SPEC` as `load_analyzer` takes it.
- `inception` or `inception:PATH`: torch-fidelity's FeatureExtractorInceptionV3 (the TF-FID network that
  torchmetrics also wraps): pool features (D = 2048) and, for the Inception Score, its unbiased logits.
  Weights: PATH, else `weights-inception-2015-12-05-6726825d.pth` in the torch hub cache
  (`torch.hub.get_dir()/checkpoints/`). A missing package or file is a LatentcompError that says what to
  install or copy where.
- `pixels` or `pixels:SIZE`: the image itself resized to SIZE x SIZE (default 16), flattened; a
  network-free sanity baseline.
- `MODULE:FN` (e.g. `my_pkg.feats:embed`): your function, called as FN(images) on batches of images
  (N, C, H, W) in [-1, 1], returning (N, D).

Resizing to a network's input size happens here, before the network sees the images, in float with an
antialiased bicubic filter (`latentcomp.metrics.fid.resize_images`, the clean-fid recipe); grey images
are repeated to RGB for the RGB networks.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path

import torch

from ..devices import parse_device
from ..errors import LatentcompError
from .fid import resize_images

INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_SIZE = 299
SPECS_HELP = "inception[:PATH], analyzer[:SPEC], pixels[:SIZE] or MODULE:FN"


def _rgb(x: torch.Tensor) -> torch.Tensor:
    if x.shape[1] == 1:
        return x.expand(-1, 3, -1, -1)
    if x.shape[1] != 3:
        raise LatentcompError(f"feature networks take 1- or 3-channel images; got {x.shape[1]} channels")
    return x


def _check_images(x) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise LatentcompError(f"features need images (N, C, H, W) in [-1, 1]; got {got}")
    return x.float()


class Extractor:
    """images (N, C, H, W) in [-1, 1] -> features (N, D) float32 on the CPU, batched."""

    name = "features"

    def __init__(
        self,
        fn: Callable[[torch.Tensor], torch.Tensor],
        name: str,
        batch_size: int = 128,
        device: str | torch.device = "cpu",
    ):
        self.fn = fn
        self.name = name
        self.batch_size = int(batch_size)
        if self.batch_size < 1:
            raise LatentcompError(f"--batch must be at least 1; got {batch_size}")
        self.device = parse_device(device or "cpu")

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        images = _check_images(images)
        out = []
        for i in range(0, images.shape[0], self.batch_size):
            f = self.fn(images[i : i + self.batch_size].to(self.device))
            f = torch.as_tensor(f)
            if f.dim() != 2 or f.shape[0] != min(self.batch_size, images.shape[0] - i):
                raise LatentcompError(
                    f"feature extractor {self.name} returned shape {tuple(f.shape)} for "
                    f"{min(self.batch_size, images.shape[0] - i)} images; expected (N, D)"
                )
            out.append(f.detach().float().cpu())
        if not out:
            raise LatentcompError("no images to compute features of")
        return torch.cat(out)

    def __repr__(self) -> str:
        return f"Extractor({self.name})"


# ------------------------------------------------------------------------------------------ inception
def find_inception_weights(path: str | Path | None = None) -> Path:
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise LatentcompError(f"Inception weights file not found: {p}")
        return p
    p = Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE
    if not p.is_file():
        raise LatentcompError(
            f"Inception features need the FID Inception weights and nothing is downloaded: file not found: "
            f"{p}. Copy {INCEPTION_FILE} (torch-fidelity's release file) there, give it as --features "
            "inception:PATH, or use --features analyzer (toyfaces) / pixels / MODULE:FN"
        )
    return p


class InceptionFeatures(Extractor):
    """torch-fidelity's InceptionV3 with local weights: `__call__` gives pool features (2048), `logits`
    the unbiased logits for the Inception Score. Images are resized to 299 px in float (bicubic,
    antialiased) and then quantised to uint8, the input the network expects (its own resize is then an
    identity)."""

    def __init__(
        self, weights: str | Path | None = None, batch_size: int = 64, device="cpu", resize: str = "pil"
    ):
        try:
            from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3
        except ImportError as e:
            raise LatentcompError(
                "Inception features need the torch-fidelity package (`pip install torch-fidelity`, the "
                f"backend torchmetrics' FID uses): {e}; or use --features analyzer / pixels / MODULE:FN"
            ) from None
        device = parse_device(device or "cpu")
        path = find_inception_weights(weights)
        try:
            net = FeatureExtractorInceptionV3(
                "inception-v3-compat", ["2048", "logits_unbiased"], feature_extractor_weights_path=str(path)
            )
        except Exception as e:  # noqa: BLE001 - a wrong file surfaces as one readable line
            raise LatentcompError(f"cannot load Inception weights {path}: {type(e).__name__}: {e}") from None
        self.net = net.to(device).eval()
        self.weights_path = str(path)
        self.resize = resize
        super().__init__(self._pool, "inception", batch_size, device)

    def _uint8(self, x: torch.Tensor) -> torch.Tensor:
        x = resize_images(_rgb(x), INCEPTION_SIZE, self.resize)
        return ((x.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).to(self.device)

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self._uint8(x))[0]

    @torch.no_grad()
    def logits(self, images: torch.Tensor) -> torch.Tensor:
        images = _check_images(images)
        return torch.cat(
            [
                self.net(self._uint8(images[i : i + self.batch_size]))[1].float().cpu()
                for i in range(0, images.shape[0], self.batch_size)
            ]
        )


# ------------------------------------------------------------------------------------------ others
def analyzer_features(
    analyzer="builtin:toyfaces-analyzer", batch_size: int = 256, device="cpu", resize: str = "pil"
) -> Extractor:
    """The toyfaces analyzer's penultimate features; `analyzer` is a spec or a loaded Analyzer."""
    if isinstance(analyzer, str | Path):
        from .analyzer import load_analyzer

        an = load_analyzer(analyzer, device=str(device or "cpu"))
        name = f"analyzer:{analyzer}"
    else:
        an = analyzer
        name = f"analyzer:{getattr(an, 'spec', '') or 'custom'}"
    res = int(getattr(an, "resolution", 64))

    def fn(x):
        x = _rgb(x)
        if tuple(x.shape[-2:]) != (res, res):
            x = resize_images(x, res, resize).to(x.device)
        return an.features(x.to(an.device))

    ex = Extractor(fn, name, batch_size, device)
    ex.analyzer = an
    return ex


def pixel_features(size: int = 16, resize: str = "pil") -> Extractor:
    if size < 1:
        raise LatentcompError(f"pixels:SIZE needs SIZE >= 1; got {size}")
    return Extractor(lambda x: resize_images(x, size, resize).flatten(1), f"pixels:{size}", 256)


def function_features(spec: str, batch_size: int = 128, device="cpu") -> Extractor:
    mod_name, _, fn_name = spec.rpartition(":")
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as e:
        raise LatentcompError(
            f"--features {spec}: cannot import module {mod_name!r} ({e}); expected {SPECS_HELP}"
        ) from None
    fn = getattr(mod, fn_name, None)
    if not callable(fn):
        raise LatentcompError(f"--features {spec}: module {mod_name!r} has no function {fn_name!r}")
    return Extractor(fn, spec, batch_size, device)


def load_features(
    spec: str = "analyzer",
    device: str | torch.device = "cpu",
    batch_size: int | None = None,
    resize: str = "pil",
) -> Extractor:
    """An extractor from a spec (module doc)."""
    device = parse_device(device or "cpu")
    spec = str(spec).strip()
    head, sep, rest = spec.partition(":")
    if head == "inception":
        return InceptionFeatures(rest or None, batch_size or 64, device, resize)
    if head == "analyzer":
        return analyzer_features(rest or "builtin:toyfaces-analyzer", batch_size or 256, device, resize)
    if head == "pixels":
        try:
            size = int(rest) if rest else 16
        except ValueError:
            raise LatentcompError(f"--features {spec}: SIZE must be an integer") from None
        return pixel_features(size, resize)
    if sep and head and rest and "." not in rest and "/" not in spec:
        return function_features(spec, batch_size or 128, device)
    raise LatentcompError(f"unknown feature extractor {spec!r}; accepted: {SPECS_HELP}")
