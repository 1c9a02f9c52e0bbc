"""An image-folder data set for users' own photos.

Recursive; jpg/jpeg/png/webp/bmp; each image is resized (shorter side, antialiased bicubic) and centre
cropped to the resolution, converted to 1 or 3 channels, returned in [-1, 1]. Unreadable files are
reported with their path.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ..errors import LatentcompError
from ..io import open_image

EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".bmp"}


def list_images(root: str | Path) -> list[Path]:
    root = Path(root).expanduser()
    if not root.is_dir():
        raise LatentcompError(f"image folder not found: {root}")
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in EXTENSIONS)


def load_resized(path: Path, resolution: int, channels: int = 3) -> torch.Tensor:
    """One file -> (channels, resolution, resolution) float tensor in [-1, 1]."""
    try:
        with open_image(path) as im:
            im.load()
            im = im.convert("L" if channels == 1 else "RGB")
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise LatentcompError(f"cannot read image {path}: {e}") from None
    w, h = im.size
    scale = resolution / min(w, h)
    im = im.resize((max(resolution, round(w * scale)), max(resolution, round(h * scale))), Image.BICUBIC)
    left, top = (im.width - resolution) // 2, (im.height - resolution) // 2
    im = im.crop((left, top, left + resolution, top + resolution))
    arr = np.asarray(im, dtype=np.float32) / 127.5 - 1
    t = torch.from_numpy(arr)
    return t.unsqueeze(0) if channels == 1 else t.permute(2, 0, 1).contiguous()


class ImageFolder(torch.utils.data.Dataset):
    def __init__(self, root: str | Path, resolution: int = 64, channels: int = 3):
        if channels not in (1, 3):
            raise LatentcompError(f"channels must be 1 or 3, got {channels}")
        self.root, self.resolution, self.channels = Path(root), resolution, channels
        self.files = list_images(root)
        if not self.files:
            raise LatentcompError(f"no images ({', '.join(sorted(EXTENSIONS))}) found under {self.root}")

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> torch.Tensor:
        return load_resized(self.files[index], self.resolution, self.channels)
