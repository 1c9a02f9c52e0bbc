"""Image and mask files <-> tensors, at the edges only (docs/architecture.md: no PIL inside models).

Images come back as float32 (1, C, H, W) in [-1, 1], masks as float32 (1, 1, H, W) in {0, 1} with
1 = known pixel (white in the file). Every failure is a `LatentcompError` whose one line names the file
and says what is accepted. Writes are atomic: a temp file in the target folder, then `os.replace`, so a
failed or interrupted write never leaves a partial output behind.

Conversions (each reported once through `notice`, which prints `notice: ...` to stderr by default):
- grayscale ("L", "1") -> RGB by repetition (or kept as 1 channel for 1-channel models);
- 16-bit ("I;16*", "I") -> scaled from 0..65535 to 0..1 (16-bit RGB PNGs are already reduced by Pillow);
- palette ("P") -> RGB, or RGBA where the palette has transparency;
- RGBA / LA -> RGB composited on white; `load_image(..., with_alpha=True)` also returns the alpha,
  which the CLI uses as the part mask of an RGBA part given without a mask;
- CMYK / YCbCr / other -> RGB.
- a size other than the model's: centre-cropped to a square and resized (antialiased), with a notice;
  `resize=False` refuses instead. Masks must have their image's size (or the model's size): a mask of
  any other size is refused, because how it should line up with the image is ambiguous.

Pixel limit: a file whose header says it has more than `max_pixels()` pixels (default 4096 x 4096, the
web server's default; the environment variable LATENTCOMP_MAX_PIXELS changes it) is refused before it is
decoded, as is one that Pillow flags as a decompression bomb: a small PNG can otherwise ask for
gigabytes. Every image file latentcomp reads goes through `open_image`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from io import BytesIO
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageFile, UnidentifiedImageError

from .errors import LatentcompError

ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is an error, never silently grey

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")  # what we write
READ_SUFFIXES = (*IMAGE_SUFFIXES, ".bmp")  # what we read (masks are often BMP)
READ_FORMATS = {"PNG", "JPEG", "WEBP", "BMP"}
ACCEPTED = "PNG, JPG or WEBP"
_SAVE_FORMAT = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP"}

Notice = Callable[[str], None]


def print_notice(msg: str) -> None:
    print(f"notice: {msg}", file=sys.stderr)


# ---------------------------------------------------------------- reading

DEFAULT_MAX_PIXELS = 4096 * 4096  # also the web server's default (`latentcomp serve --max-pixels`)
MAX_PIXELS_ENV = "LATENTCOMP_MAX_PIXELS"


def max_pixels() -> int:
    """The largest image, in pixels, that latentcomp decodes from a file: $LATENTCOMP_MAX_PIXELS or the
    default, and never more than Pillow's own decompression-bomb limit (`PIL.Image.MAX_IMAGE_PIXELS`)."""
    raw = os.environ.get(MAX_PIXELS_ENV, "").strip()
    limit = DEFAULT_MAX_PIXELS
    if raw:
        try:
            limit = int(raw.replace("_", ""))
        except ValueError:
            limit = 0
        if limit < 1:
            raise LatentcompError(f"{MAX_PIXELS_ENV}={raw!r} is not a positive whole number of pixels")
    return min(limit, Image.MAX_IMAGE_PIXELS) if Image.MAX_IMAGE_PIXELS else limit


def _limit_text(limit: int) -> str:
    return f"the limit is {limit:,} pixels (set {MAX_PIXELS_ENV} to change it)"


@contextlib.contextmanager
def open_image(path: str | Path, what: str = "image") -> Iterator[Image.Image]:
    """`PIL.Image.open` with the pixel limit checked from the header, before anything is decoded.

    Too many pixels, or Pillow's DecompressionBombWarning / Error, give one LatentcompError; other open
    errors (not an image, unreadable) propagate for the caller to report."""
    p = Path(path).expanduser()
    limit = max_pixels()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(p)
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as e:
        m = re.search(r"\((\d+) pixels\)", str(e))
        n = f"{int(m.group(1)):,} pixels" if m else "too many pixels"
        raise LatentcompError(f"{what} {p} has {n}; {_limit_text(limit)}") from None
    with im:
        w, h = im.size
        if w * h > limit:
            raise LatentcompError(f"{what} {p} is {w}x{h} = {w * h:,} pixels; {_limit_text(limit)}")
        yield im


def _read(path: str | Path, what: str) -> tuple[np.ndarray, np.ndarray | None, list[str]]:
    """Decode a file into (H, W, C) float in [0, 1] (C = 1 or 3), alpha (H, W) or None, conversion notes."""
    p = Path(path).expanduser()
    if not p.exists():
        raise LatentcompError(f"{what} file not found: {p}")
    if p.is_dir():
        raise LatentcompError(f"{what} {p} is a folder; expected a {ACCEPTED} file")
    try:
        with open_image(p, what) as im:
            fmt = im.format
            # 16 bits per channel RGB(A) (rawmode e.g. RGB;16B) is reduced to 8 bits by Pillow as it decodes
            deep = any(";16" in str(getattr(t, "args", "")) for t in im.tile)
            im.load()  # full decode: truncated or corrupt data fails here, not later
            im = im.copy()
    except LatentcompError:
        raise
    except UnidentifiedImageError as e:
        raise LatentcompError(
            f"{what} {p} is not a readable image ({_short(e)}); expected {ACCEPTED}"
        ) from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise LatentcompError(
            f"{what} {p} is truncated or corrupt ({_short(e)}); expected a complete {ACCEPTED} file"
        ) from None
    if fmt not in READ_FORMATS:
        raise LatentcompError(f"{what} {p} is a {fmt} file; expected {ACCEPTED}")
    notes: list[str] = []
    mode = im.mode
    if deep and mode in ("RGB", "RGBA"):
        notes.append("16-bit channels reduced to 8 bits")
    alpha = None
    if mode == "P":
        has_t = "transparency" in im.info
        im = im.convert("RGBA" if has_t else "RGB")
        notes.append("palette image converted to RGB")
        mode = im.mode
    if mode in ("PA",):
        im = im.convert("RGBA")
        mode = "RGBA"
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(im, dtype=np.float64)
        arr = np.clip(arr / 65535.0, 0, 1)[..., None]
        notes.append("16-bit image scaled to 0..1")
    elif mode == "F":
        arr = np.asarray(im, dtype=np.float64)
        top = 1.0 if arr.max(initial=0) <= 1.0 else (255.0 if arr.max() <= 255 else 65535.0)
        arr = np.clip(arr / top, 0, 1)[..., None]
        notes.append("floating-point image scaled to 0..1")
    elif mode in ("1", "L"):
        arr = np.asarray(im.convert("L"), dtype=np.float64)[..., None] / 255.0
    elif mode == "LA":
        a = np.asarray(im, dtype=np.float64) / 255.0
        arr, alpha = a[..., :1], a[..., 1]
    elif mode == "RGBA":
        a = np.asarray(im, dtype=np.float64) / 255.0
        arr, alpha = a[..., :3], a[..., 3]
    elif mode == "RGB":
        arr = np.asarray(im, dtype=np.float64) / 255.0
    else:  # CMYK, YCbCr, RGBX, LAB, HSV, ...
        arr = np.asarray(im.convert("RGB"), dtype=np.float64) / 255.0
        notes.append(f"{mode} image converted to RGB")
    if alpha is not None and bool((alpha >= 1.0).all()):
        alpha = None  # fully opaque: nothing to composite
    return arr.astype(np.float32), (None if alpha is None else alpha.astype(np.float32)), notes


def _short(e: BaseException) -> str:
    s = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    return s[:120]


def _crop_square(t: torch.Tensor) -> torch.Tensor:
    h, w = t.shape[-2:]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return t[..., top : top + s, left : left + s]


def _resize(t: torch.Tensor, size: int) -> torch.Tensor:
    if t.shape[-1] == size and t.shape[-2] == size:
        return t
    return F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def _fit(
    t: torch.Tensor, size: int | None, p: Path, what: str, resize: bool, notice: Notice | None
) -> torch.Tensor:
    """Centre-crop to a square and resize (1, C, H, W) to size x size, with a notice; or refuse."""
    if size is None:
        return t
    h, w = t.shape[-2:]
    if (h, w) == (size, size):
        return t
    if not resize:
        raise LatentcompError(f"{what} {p} is {w}x{h}; expected {size}x{size} pixels")
    msg = f"{what} {p} is {w}x{h}; "
    if h != w:
        s = min(h, w)
        msg += f"centre-cropped to {s}x{s} and "
        t = _crop_square(t)
    msg += f"resized to {size}x{size}"
    if notice:
        notice(msg)
    return _resize(t, size)


def load_image(
    path: str | Path,
    size: int | None = None,
    channels: int = 3,
    resize: bool = True,
    with_alpha: bool = False,
    notice: Notice | None = print_notice,
    what: str = "image",
):
    """Read an image file -> (1, channels, size, size) float32 in [-1, 1].

    `with_alpha=True` returns `(image, alpha)` where alpha is (1, 1, size, size) in [0, 1] or None for an
    opaque image. Transparent pixels of the returned image are composited on white.
    """
    p = Path(path).expanduser()
    if channels not in (1, 3):
        raise LatentcompError(f"channels must be 1 or 3; got {channels}")
    arr, alpha, notes = _read(p, what)
    if alpha is not None:
        arr = arr * alpha[..., None] + (1 - alpha[..., None])
        if not with_alpha:
            notes.append("transparent pixels composited on white")
    if arr.shape[-1] != channels:
        if channels == 3:
            arr = np.repeat(arr, 3, axis=-1)
            notes.append("grayscale image repeated to RGB")
        else:
            arr = (arr @ np.array([0.299, 0.587, 0.114], dtype=np.float32))[..., None]
            notes.append("RGB image converted to grayscale")
    if notes and notice:
        notice(f"{what} {p}: " + "; ".join(notes))
    t = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)[None].float()
    orig_hw = tuple(t.shape[-2:])
    t = _fit(t, size, p, what, resize, notice).clamp(0, 1) * 2 - 1
    if not with_alpha:
        return t
    a = None
    if alpha is not None:
        a = torch.from_numpy(alpha)[None, None].float()
        if size is not None and orig_hw != (size, size):
            a = _resize(_crop_square(a), size)
        a = (a >= 0.5).float()
    return t, a


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) of an image file without decoding it; errors like `load_image`."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise LatentcompError(f"image file not found: {p}")
    try:
        with open_image(p) as im:
            return im.size
    except LatentcompError:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise LatentcompError(
            f"image {p} is not a readable image ({_short(e)}); expected {ACCEPTED}"
        ) from None


def load_mask(
    path: str | Path,
    size: int | None = None,
    image_hw: tuple[int, int] | None = None,
    allow_empty: bool = False,
    notice: Notice | None = print_notice,
    what: str = "mask",
) -> torch.Tensor:
    """Read a mask file -> (1, 1, size, size) float32 in {0, 1}; white (>= 50%) = known pixel.

    A mask with varying transparency uses its alpha channel (opaque = known). `image_hw` is the (H, W)
    of the image the mask belongs to, before resizing: the mask must have that size or `size` x `size`,
    and gets the same crop and resize as its image. An all-black mask is refused unless `allow_empty`.
    """
    p = Path(path).expanduser()
    arr, alpha, _notes = _read(p, what)
    if alpha is not None:
        gray = alpha
    else:
        gray = arr.mean(-1) if arr.shape[-1] == 3 else arr[..., 0]
    h, w = gray.shape
    ok = [image_hw] if image_hw is not None else []
    if size is not None:
        ok.append((size, size))
    if ok and (h, w) not in ok:
        want = " or ".join(f"{b}x{a}" for a, b in dict.fromkeys(ok))
        raise LatentcompError(f"{what} {p} is {w}x{h}; it must have the size of its image ({want})")
    t = torch.from_numpy((gray >= 0.5).astype(np.float32))[None, None]
    if size is not None and (h, w) != (size, size):
        t = (_resize(_crop_square(t), size) >= 0.5).float()
    if not allow_empty and t.sum() == 0:
        raise LatentcompError(f"{what} {p} has no known pixels (all black); white marks the pixels to keep")
    return t


def list_images(
    folder: str | Path,
    what: str = "image folder",
    notice: Notice | None = print_notice,
    recursive: bool = False,
) -> list[Path]:
    """Image files (PNG/JPG/WEBP/BMP) in `folder` (and its subfolders if `recursive`), sorted by path; an
    error if there are none. The one folder lister: commands' image folders and the training data sets.

    Other files and (unless `recursive`) subfolders are skipped, and said so through `notice`; hidden
    entries are skipped silently."""
    d = Path(folder).expanduser()
    if not d.is_dir():
        raise LatentcompError(f"{what} not found: {d}")
    found = d.rglob("*") if recursive else d.iterdir()
    entries = sorted(f for f in found if not any(part.startswith(".") for part in f.relative_to(d).parts))
    files = [f for f in entries if f.is_file() and f.suffix.lower() in READ_SUFFIXES]
    others = [f.name for f in entries if f.is_file() and f not in files]
    subfolders = [] if recursive else [f.name for f in entries if f.is_dir()]
    if notice and (others or subfolders):
        skipped = []
        if others:
            skipped.append(f"{len(others)} file(s) that are not {ACCEPTED} (e.g. {others[0]})")
        if subfolders:
            skipped.append(f"{len(subfolders)} subfolder(s) (e.g. {subfolders[0]}; not searched)")
        notice(f"{what} {d}: skipped " + " and ".join(skipped))
    if not files:
        raise LatentcompError(f"{what} {d} has no images ({ACCEPTED} files)")
    return files


def match_images_masks(images: str | Path, masks: str | Path) -> list[tuple[Path, Path]]:
    """Pair image and mask paths: file+file, folder+file (one mask for all), or folder+folder by file stem."""
    ip, mp = Path(images).expanduser(), Path(masks).expanduser()
    if not ip.is_dir():
        if mp.is_dir():
            raise LatentcompError(f"--mask {mp} is a folder but --image {ip} is a file; give a mask file")
        return [(ip, mp)]
    imgs = list_images(ip, "image folder")
    if not mp.is_dir():
        return [(f, mp) for f in imgs]
    by_stem = {f.stem: f for f in list_images(mp, "mask folder")}
    missing = [f.name for f in imgs if f.stem not in by_stem]
    if missing:
        raise LatentcompError(
            f"mask folder {mp} has no mask for {len(missing)} image(s) of {ip}, e.g. {missing[0]}; "
            "masks are matched by file name (extension may differ)"
        )
    return [(f, by_stem[f.stem]) for f in imgs]


# ---------------------------------------------------------------- writing


def _check_out(path: str | Path, suffixes=IMAGE_SUFFIXES) -> Path:
    p = Path(path).expanduser()
    if p.suffix.lower() not in suffixes:
        raise LatentcompError(f"output {p} must end in one of {', '.join(suffixes)}")
    if p.is_dir():
        raise LatentcompError(f"output {p} is a folder; give a file name")
    return p


def ensure_dir(folder: str | Path) -> Path:
    d = Path(folder).expanduser()
    try:
        d.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise LatentcompError(f"cannot create output folder {d}: {e.strerror or _short(e)}") from None
    if not os.access(d, os.W_OK):
        raise LatentcompError(f"output folder {d} is not writable")
    return d


def atomic_write(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Call `write(tmp)` on a temp file beside `path`, then move it into place; nothing left on failure."""
    p = Path(path).expanduser()
    ensure_dir(p.parent)
    try:
        fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=f".{p.stem}.", suffix=p.suffix + ".tmp")
    except OSError as e:
        raise LatentcompError(f"cannot write {p}: {e.strerror or _short(e)}") from None
    os.close(fd)
    try:
        write(Path(tmp))
        # mkstemp (and some writers, e.g. safetensors) make 0600 files; give the usual permissions
        os.chmod(tmp, 0o666 & ~_UMASK)
        with open(tmp, "rb+") as f:  # on disk before the rename, so a crash leaves old or new, never half
            os.fsync(f.fileno())
        os.replace(tmp, p)
        _fsync_dir(p.parent)
    except OSError as e:
        _unlink(tmp)
        raise LatentcompError(f"cannot write {p}: {e.strerror or _short(e)}") from None
    except BaseException:
        _unlink(tmp)
        raise
    return p


def _read_umask() -> int:
    mask = os.umask(0o022)  # the only way to read it is to set it; done once, at import (thread safety)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def _fsync_dir(folder: Path) -> None:
    """Persist a rename (best effort: not every platform or file system allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _unlink(path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def write_bytes(path: str | Path, data: bytes) -> Path:
    return atomic_write(path, lambda t: t.write_bytes(data))


def write_text(path: str | Path, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj) -> Path:
    """`obj` as indented JSON with sorted keys (stable diffs of run configs)."""
    return write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def save_torch(obj, path: str | Path) -> Path:
    """`torch.save(obj)` written atomically (checkpoints)."""
    buf = BytesIO()
    torch.save(obj, buf)
    return write_bytes(path, buf.getvalue())


def save_safetensors(tensors: dict[str, torch.Tensor], path: str | Path, metadata: dict | None = None):
    from safetensors.torch import save

    data = save({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, metadata=metadata)
    return write_bytes(path, data)


def to_uint8(img: torch.Tensor) -> np.ndarray:
    """(C, H, W) or (1, C, H, W) in [-1, 1] -> (H, W) or (H, W, 3) uint8."""
    if img.dim() == 4:
        if img.shape[0] != 1:
            raise LatentcompError(f"expected one image, got a batch of {img.shape[0]}")
        img = img[0]
    if img.dim() != 3 or img.shape[0] not in (1, 3):
        raise LatentcompError(f"expected an image tensor (C, H, W) with C = 1 or 3; got {tuple(img.shape)}")
    img = img.detach().float().cpu()
    if not torch.isfinite(img).all():
        raise LatentcompError("image tensor contains NaN or Inf values; nothing written")
    arr = ((img.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
    return arr[..., 0] if arr.shape[-1] == 1 else arr


def to_pil(img: torch.Tensor) -> Image.Image:
    return Image.fromarray(to_uint8(img))


def save_image(img: torch.Tensor, path: str | Path) -> Path:
    """Write an image tensor in [-1, 1] to PNG/JPG/WEBP (by suffix), atomically."""
    p = _check_out(path)
    pil = to_pil(img)
    fmt = _SAVE_FORMAT[p.suffix.lower()]
    opts = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
    return atomic_write(p, lambda t: pil.save(t, format=fmt, **opts))


def save_mask(mask: torch.Tensor, path: str | Path) -> Path:
    """Write a mask (1, H, W) or (1, 1, H, W) in {0, 1} as a black/white PNG (white = known)."""
    m = mask.detach().float().cpu().reshape(-1, *mask.shape[-2:])[:1]
    return save_image(m * 2 - 1, path)


def load_part_map(path: str | Path, num_parts: int | None = None, what: str = "part map") -> torch.Tensor:
    """Read a part map -> (H, W) long of part ids: an indexed (palette) PNG such as `latentcomp data
    render` writes (the palette index is the id), or a grayscale image whose values are the ids.
    `num_parts` bounds the ids (an id outside [0, num_parts) is an error naming the file)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise LatentcompError(f"{what} file not found: {p}")
    try:
        with Image.open(p) as im:
            im.load()
            mode = im.mode
            ids = np.asarray(im if mode in ("P", "L") else im.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise LatentcompError(f"{what} {p} is not a readable image ({_short(e)})") from None
    if mode not in ("P", "L"):
        raise LatentcompError(
            f"{what} {p} is a {mode} image; expected an indexed (palette) or grayscale PNG whose pixel "
            "values are part ids, as `latentcomp data render` writes (NNNNNN_parts.png)"
        )
    t = torch.from_numpy(ids.astype(np.int64))
    if num_parts is not None and int(t.max()) >= num_parts:
        raise LatentcompError(
            f"{what} {p} holds part id {int(t.max())}; expected ids 0-{num_parts - 1}"
        )
    return t
