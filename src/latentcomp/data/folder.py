"""An image-folder data set: users' own photos for GAN training and the real images of regressor training.

Recursive (`io.list_images`); each image is read as every input image is (`io.load_image`: PNG, JPG,
WEBP or BMP, centre-cropped to a square and resized with antialiasing, 1 or 3 channels), in [-1, 1].
Unreadable files are reported with their path.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..errors import LatentcompError
from ..io import list_images, load_image


def load_resized(path: Path, resolution: int, channels: int = 3) -> torch.Tensor:
    """One file -> (channels, resolution, resolution) float tensor in [-1, 1]."""
    return load_image(path, size=resolution, channels=channels, notice=None)[0]


class ImageFolder(torch.utils.data.Dataset):
    """The images under `root`, each (channels, resolution, resolution) in [-1, 1]; the first `cache`
    images read are kept in memory (regressor training draws the same images again and again)."""

    def __init__(
        self,
        root: str | Path,
        resolution: int = 64,
        channels: int = 3,
        cache: int = 0,
        what: str = "image folder",
    ):
        if channels not in (1, 3):
            raise LatentcompError(f"{what}: channels must be 1 or 3, got {channels}")
        self.root, self.resolution, self.channels = Path(root), resolution, channels
        self.files = list_images(root, what, notice=None, recursive=True)
        self.cache_size = cache
        self._cache: dict[int, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> torch.Tensor:
        if index in self._cache:
            return self._cache[index]
        t = load_resized(self.files[index], self.resolution, self.channels)
        if len(self._cache) < self.cache_size:
            self._cache[index] = t
        return t
