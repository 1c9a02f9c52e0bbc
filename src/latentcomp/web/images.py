"""Images in and out of the web API: base64 text <-> validated tensors, all in memory.

Every client image passes here: base64 (plain or a `data:` URL) -> bytes -> Pillow, which must recognise a
PNG, JPEG or WEBP file; the pixel count is checked from the header *before* decoding (decompression
bombs), then the whole file is decoded (truncated data fails here). Nothing touches the disk.
Failures raise `ApiError(status, message)`, which the app turns into `{"error": message}`.
"""

from __future__ import annotations

import base64
import binascii
import io
import re

import numpy as np
import torch
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

ImageFile.LOAD_TRUNCATED_IMAGES = False  # truncated data is an error, never silently grey

ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP")
ACCEPTED = "a PNG, JPEG or WEBP image"
_DATA_URL = re.compile(r"^data:[\w.+-]+/[\w.+-]+(;[\w.+-]+=[\w.+-]+)*;base64,", re.ASCII)


class ApiError(Exception):
    """A client error with its HTTP status; the message is shown to the client as is."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def decode_base64(text: str, what: str) -> bytes:
    """Plain base64 or a `data:...;base64,` URL -> bytes (400 when it is not valid base64)."""
    if not isinstance(text, str) or not text:
        raise ApiError(400, f"{what} is empty; expected {ACCEPTED} as base64 text")
    m = _DATA_URL.match(text)
    if m:
        text = text[m.end() :]
    elif text.startswith("data:"):
        raise ApiError(400, f"{what} is a data: URL without ';base64,'; expected base64-encoded image data")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, f"{what} is not valid base64; expected {ACCEPTED} as base64 text") from None
    if not raw:
        raise ApiError(400, f"{what} is empty; expected {ACCEPTED} as base64 text")
    return raw


def open_image(
    raw: bytes, what: str, max_pixels: int, draft_size: int | None = None, exact_size: int | None = None
) -> Image.Image:
    """Bytes -> a fully decoded PIL image; checks format, pixel count and (with `exact_size`) the size from
    the header, before decoding."""
    try:
        im = Image.open(io.BytesIO(raw))
    except Image.DecompressionBombError:
        raise ApiError(413, f"{what} has too many pixels; the limit is {max_pixels} pixels") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError):
        raise ApiError(400, f"{what} is not a readable image; expected {ACCEPTED}") from None
    if im.format not in ACCEPTED_FORMATS:
        raise ApiError(400, f"{what} is a {im.format} file; expected {ACCEPTED}")
    w, h = im.size
    if w < 1 or h < 1:
        raise ApiError(400, f"{what} has no pixels ({w}x{h})")
    if w * h > max_pixels:
        raise ApiError(413, f"{what} is {w}x{h} = {w * h} pixels; the limit is {max_pixels} pixels")
    if exact_size is not None and (w, h) != (exact_size, exact_size):
        raise ApiError(422, f"{what} is {w}x{h}; the model expects {exact_size}x{exact_size}")
    if draft_size and im.format == "JPEG":
        im.draft("RGB", (draft_size, draft_size))  # decode large JPEGs at a reduced scale (>= draft_size)
    try:
        im.load()
    except Image.DecompressionBombError:
        raise ApiError(413, f"{what} has too many pixels; the limit is {max_pixels} pixels") from None
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError):
        raise ApiError(400, f"{what} is truncated or corrupt; expected a complete {ACCEPTED}") from None
    return im


def _normalise_mode(im: Image.Image) -> Image.Image:
    """Any mode -> 8-bit L, LA, RGB or RGBA."""
    mode = im.mode
    if mode in ("L", "LA", "RGB", "RGBA"):
        return im
    if mode == "1":
        return im.convert("L")
    if mode in ("P", "PA"):
        return im.convert("RGBA" if mode == "PA" or "transparency" in im.info else "RGB")
    if mode.startswith("I") or mode == "F":
        arr = np.asarray(im, dtype=np.float64)
        top = 65535.0 if mode.startswith("I") else (1.0 if arr.max(initial=0) <= 1.0 else 255.0)
        return Image.fromarray(np.clip(arr / top * 255.0, 0, 255).round().astype(np.uint8), "L")
    return im.convert("RGB")  # CMYK, YCbCr, ...


def _to_tensor(im: Image.Image, channels: int) -> tuple[torch.Tensor, torch.Tensor | None]:
    """8-bit L/LA/RGB/RGBA -> (image (1, C, H, W) in [-1, 1] on white, alpha (1, 1, H, W) or None)."""
    arr = np.asarray(im, dtype=np.float32) / 255.0
    if arr.ndim == 2:
        arr = arr[..., None]
    alpha = None
    if im.mode in ("LA", "RGBA"):
        arr, a = arr[..., :-1], arr[..., -1:]
        if (a < 1.0).any():
            alpha = a
            arr = arr * a + (1.0 - a)  # composite on white, as the CLI does
    if channels == 1 and arr.shape[-1] == 3:
        arr = arr @ np.array([[0.299], [0.587], [0.114]], dtype=np.float32)
    elif channels == 3 and arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    img = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)[None] * 2 - 1
    a = None if alpha is None else torch.from_numpy(np.ascontiguousarray(alpha)).permute(2, 0, 1)[None]
    return img.float(), a


def load_upload(
    text: str, resolution: int, channels: int, max_pixels: int
) -> tuple[torch.Tensor, tuple[int, int]]:
    """An uploaded image of any size -> (1, C, R, R) in [-1, 1]: centre-cropped to a square, resized
    (Lanczos) to the model's resolution; transparency composited on white. Returns (image, original size)."""
    im = open_image(decode_base64(text, "image"), "image", max_pixels, draft_size=resolution)
    size = im.size
    im = _normalise_mode(im)
    if im.size != (resolution, resolution):
        im = ImageOps.fit(im, (resolution, resolution), Image.Resampling.LANCZOS)
    img, _ = _to_tensor(im, channels)
    return img, size


def load_exact(text: str, what: str, resolution: int, channels: int, max_pixels: int):
    """An image that must already have the model's size -> (image (1, C, R, R), alpha (1, 1, R, R) | None)."""
    im = open_image(decode_base64(text, what), what, max_pixels, exact_size=resolution)
    return _to_tensor(_normalise_mode(im), channels)


def load_mask(text: str, what: str, resolution: int, max_pixels: int) -> torch.Tensor:
    """A black/white mask of the model's size -> (1, 1, R, R) in {0, 1}; white (>= 50%) = known."""
    im = open_image(decode_base64(text, what), what, max_pixels, exact_size=resolution)
    gray, _ = _to_tensor(_normalise_mode(im), 1)
    return (gray >= 0.0).float()  # gray in [-1, 1]: >= 0 means >= 50% white


def encode_png(img: torch.Tensor) -> str:
    """(C, H, W) or (1, C, H, W) in [-1, 1] -> base64 PNG text."""
    if img.dim() == 4:
        img = img[0]
    arr = (
        ((img.detach().float().cpu().clamp(-1, 1) + 1) * 127.5)
        .round()
        .to(torch.uint8)
        .permute(1, 2, 0)
        .numpy()
    )
    pil = Image.fromarray(arr[..., 0] if arr.shape[-1] == 1 else arr)
    buf = io.BytesIO()
    pil.save(buf, format="PNG", compress_level=1)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def encode_mask_png(mask: torch.Tensor) -> str:
    """(1, H, W) or (1, 1, H, W) in {0, 1} -> base64 black/white PNG (white = known)."""
    m = mask.detach().float().cpu().reshape(1, *mask.shape[-2:])
    return encode_png(m * 2 - 1)
