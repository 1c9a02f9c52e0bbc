"""MNIST from the original IDX files (raw or gzip), without torchvision's download/checksum logic.

IDX format: a big-endian header `0x00 0x00 <dtype code> <ndim>` (so 2051 = uint8 with 3 dims for images,
2049 = uint8 with 1 dim for labels), then `ndim` big-endian uint32 sizes, then the data, big-endian.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import torch

from ..errors import LatentcompError

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049

# IDX type codes -> big-endian numpy dtypes
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

_SPLIT_PREFIX = {"test": "t10k", "train": "train"}


def read_idx(path: str | Path, expect_magic: int | None = None) -> torch.Tensor:
    """Read one IDX file (`.gz` or raw) into a tensor of its shape (uint8 files -> torch.uint8)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise LatentcompError(f"IDX file not found: {path}")
    with open(path, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    try:
        data = gzip.open(path, "rb").read() if gz else path.read_bytes()
    except (OSError, EOFError) as e:
        raise LatentcompError(f"{path}: cannot read gzip data ({e})") from None
    if len(data) < 4:
        raise LatentcompError(f"{path}: too short for an IDX file ({len(data)} bytes)")
    zero, code, ndim = struct.unpack(">HBB", data[:4])
    magic = struct.unpack(">I", data[:4])[0]
    if zero != 0 or code not in _IDX_DTYPES or ndim < 1:
        raise LatentcompError(
            f"{path}: not an IDX file (magic {magic}; expected {IMAGES_MAGIC} for images or {LABELS_MAGIC} "
            "for labels)"
        )
    if expect_magic is not None and magic != expect_magic:
        raise LatentcompError(f"{path}: IDX magic number is {magic}; expected {expect_magic}")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise LatentcompError(f"{path}: truncated IDX header")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(_IDX_DTYPES[code])
    count = int(np.prod(shape))
    if len(data) - header < count * dtype.itemsize:
        raise LatentcompError(
            f"{path}: truncated IDX data ({len(data) - header} bytes for shape {shape}; "
            f"expected {count * dtype.itemsize})"
        )
    arr = np.frombuffer(data, dtype=dtype, count=count, offset=header).reshape(shape)
    return torch.from_numpy(arr.astype(dtype.newbyteorder("="), copy=True))


def _find(root: Path, stem: str) -> Path:
    candidates = [stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"]
    for name in candidates:
        if (root / name).is_file():
            return root / name
    raise LatentcompError(f"MNIST file {stem}[.gz] not found in {root}")


class MNIST(torch.utils.data.Dataset):
    """MNIST images in [-1, 1] as float32 (N, 1, 28, 28) and labels as int64 (N,).

    root: folder with `t10k-images-idx3-ubyte[.gz]` / `t10k-labels-idx1-ubyte[.gz]` (split "test") or the
    `train-*` files (split "train"). `ds[i] -> (image (1, 28, 28), label)`; `ds.images`, `ds.labels`.
    """

    def __init__(self, root: str | Path, split: str = "test"):
        if split not in _SPLIT_PREFIX:
            raise LatentcompError(f"MNIST split {split!r}; accepted: {', '.join(_SPLIT_PREFIX)}")
        root = Path(root).expanduser()
        if not root.is_dir():
            raise LatentcompError(f"MNIST folder not found: {root}")
        prefix = _SPLIT_PREFIX[split]
        images = read_idx(_find(root, f"{prefix}-images-idx3-ubyte"), expect_magic=IMAGES_MAGIC)
        labels = read_idx(_find(root, f"{prefix}-labels-idx1-ubyte"), expect_magic=LABELS_MAGIC)
        if images.shape[0] != labels.shape[0]:
            raise LatentcompError(
                f"MNIST {split} in {root}: {images.shape[0]} images but {labels.shape[0]} labels"
            )
        self.images = images.float().div(127.5).sub(1.0).unsqueeze(1)
        self.labels = labels.long()

    def __len__(self) -> int:
        return self.labels.shape[0]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i], int(self.labels[i])
