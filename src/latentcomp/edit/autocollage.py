"""Automatic collages for toyfaces: evaluation sets of any size from a seed.

Each collage takes its parts (background, skin, hair, eyes, eyebrows, nose, mouth, glasses) from 3 or 4
different random source images: every source gives at least one part, the others are spread at random.
Part masks come from the true part maps of toyfaces renders (`source="renders"`) or, for generator
samples, from the analyzer's predicted part maps (`source="samples"`). Parts are pasted in the fixed
order of `toyfaces.PARTS`; the union of the part masks is the known region.

The expected attribute of every part is the attribute of the source it came from, which is what
composition accuracy checks in the output (`latentcomp evaluate composition`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..errors import LatentcompError
from .collage import make_collage

# a part counts in the evaluation when at least this fraction of the image shows it after pasting
MIN_VISIBLE_FRACTION = 0.002


@dataclass
class AutoCollages:
    part_names: list[str]
    source_images: torch.Tensor  # (N, S, C, H, W), S = max sources; unused slots repeat slot 0
    source_partmaps: torch.Tensor  # (N, S, H, W) long
    source_attrs: torch.Tensor  # (N, S, n_attr) long
    n_sources: torch.Tensor  # (N,) 3 or 4
    part_source: torch.Tensor  # (N, P) slot index of the source of each part
    expected_attrs: torch.Tensor  # (N, n_attr) attribute of each attribute's part's source
    attribute_names: list[str]
    attribute_part: dict[str, str]

    def __len__(self) -> int:
        return self.source_images.shape[0]

    def __getitem__(self, idx) -> AutoCollages:
        if isinstance(idx, int):
            idx = slice(idx, idx + 1)
        return AutoCollages(
            self.part_names,
            self.source_images[idx],
            self.source_partmaps[idx],
            self.source_attrs[idx],
            self.n_sources[idx],
            self.part_source[idx],
            self.expected_attrs[idx],
            self.attribute_names,
            self.attribute_part,
        )

    def parts(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Per part, in paste order: its source image (N, C, H, W) and mask (N, 1, H, W) (may be empty)."""
        n = len(self)
        ar = torch.arange(n)
        images, masks = [], []
        for p in range(len(self.part_names)):
            s = self.part_source[:, p]
            images.append(self.source_images[ar, s])
            masks.append((self.source_partmaps[ar, s] == p).float().unsqueeze(1))
        return images, masks

    def collage(self):
        """(collage (N,C,H,W), known (N,1,H,W), visible part masks list of (N,1,H,W))."""
        images, masks = self.parts()
        return make_collage(images, masks, allow_empty_parts=True)

    def counted(self, visible: list[torch.Tensor], analyzer=None) -> torch.Tensor:
        """(N, n_attr) bool: attributes whose part is visible in the collage (>= MIN_VISIBLE_FRACTION of
        the image) and, with an analyzer, not hidden by the expected attributes (e.g. eyes behind
        sunglasses)."""
        hw = visible[0].shape[-1] * visible[0].shape[-2]
        vis_part = torch.stack([v.flatten(1).sum(1) / hw >= MIN_VISIBLE_FRACTION for v in visible], 1)
        cols = [self.part_names.index(self.attribute_part[a]) for a in self.attribute_names]
        out = vis_part[:, cols]
        if analyzer is not None:
            out = out & analyzer.visible(self.expected_attrs).cpu()
        return out


def toyfaces_collages(
    n: int,
    resolution: int = 64,
    seed: int = 0,
    n_sources: tuple[int, ...] = (3, 4),
    source: str = "renders",
    pipe=None,
    analyzer=None,
    data_seed: int = 20_210_503,
) -> AutoCollages:
    """n automatic collages (deterministic for `seed`). `source="samples"` needs `pipe` and `analyzer`."""
    from ..data.toyfaces import ATTRIBUTE_PART, ATTRIBUTES, PARTS, ToyFaces

    if n < 1:
        raise LatentcompError(f"number of collages must be at least 1; got {n}")
    if not n_sources or min(n_sources) < 1 or max(n_sources) > len(PARTS):
        raise LatentcompError(f"sources per collage must be between 1 and {len(PARTS)}; got {n_sources}")
    s_max = max(n_sources)
    n_parts = len(PARTS)
    counts = np.zeros(n, dtype=np.int64)
    assign = np.zeros((n, n_parts), dtype=np.int64)
    idx = np.zeros((n, s_max), dtype=np.int64)
    for i in range(n):  # one RNG per collage: collage i is the same whatever n is
        rng = np.random.default_rng([int(seed), i, 7])
        k = int(rng.choice(np.array(n_sources)))
        order = rng.permutation(n_parts)
        a = np.empty(n_parts, dtype=np.int64)
        a[order[:k]] = rng.permutation(k)  # every source gives at least one part
        a[order[k:]] = rng.integers(0, k, size=n_parts - k)
        counts[i], assign[i] = k, a
        idx[i] = rng.choice(2**40, size=s_max, replace=False)
    if source == "renders":
        ds = ToyFaces(resolution=resolution, seed=data_seed)
        imgs, pmaps, attrs = ds.render_batch(idx.reshape(-1).tolist())
    elif source == "samples":
        if pipe is None or analyzer is None:
            raise LatentcompError("automatic collages from generator samples need a pipeline and an analyzer")
        imgs = torch.cat([pipe.sample(s_max, seed=int(i) % 2**31).cpu() for i in idx[:, 0]])
        pred = analyzer.predict(imgs, logits=False)
        pmaps, attrs = pred.partmap.cpu(), pred.attrs.cpu()
        if list(analyzer.part_names) != list(PARTS):
            raise LatentcompError("the analyzer's part names differ from toyfaces' parts")
    else:
        raise LatentcompError(f"unknown collage source {source!r}; accepted: renders, samples")
    imgs = imgs.view(n, s_max, *imgs.shape[1:])
    pmaps = pmaps.view(n, s_max, *pmaps.shape[1:]).long()
    attrs = attrs.view(n, s_max, -1).long()
    # unused slots of 3-source collages repeat slot 0 so that every slot holds a valid image
    for i in range(n):
        for s in range(int(counts[i]), s_max):
            imgs[i, s], pmaps[i, s], attrs[i, s] = imgs[i, 0], pmaps[i, 0], attrs[i, 0]
    part_source = torch.from_numpy(assign)
    names = list(ATTRIBUTES)
    ar = torch.arange(n)
    expected = torch.stack(
        [attrs[ar, part_source[:, PARTS.index(ATTRIBUTE_PART[a])], j] for j, a in enumerate(names)], 1
    )
    return AutoCollages(
        part_names=list(PARTS),
        source_images=imgs,
        source_partmaps=pmaps,
        source_attrs=attrs,
        n_sources=torch.from_numpy(counts.astype(np.int64)),
        part_source=part_source,
        expected_attrs=expected,
        attribute_names=names,
        attribute_part=dict(ATTRIBUTE_PART),
    )
