"""A small residual discriminator for GAN training (any resolution that is a power of two >= 8).

Each block halves the resolution (conv, LeakyReLU, conv, average pool) with a 1x1 skip; a minibatch
standard-deviation channel before the head helps against mode collapse, as in ProGAN/StyleGAN.

With `seg_classes > 0` D also segments (the OASIS idea, Schönfeld et al., 2021, for an unconditional G):
a light feature-pyramid head on the stem and block outputs predicts, per pixel at half resolution, one of
the data's part classes on reals or an extra "fake" class on fakes. Every pixel then carries a training
signal about which part it should look like, where the single real/fake logit carries one per image.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class DBlock(nn.Module):
    """conv at full resolution, pool, conv at half resolution (cheaper on CPU than both at full)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cin, 3, padding=1)
        self.conv2 = nn.Conv2d(cin, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x):
        h = F.avg_pool2d(F.leaky_relu(self.conv1(x), 0.2), 2)
        h = F.leaky_relu(self.conv2(h), 0.2)
        return (h + self.skip(F.avg_pool2d(x, 2))) / math.sqrt(2)


class Discriminator(nn.Module):
    def __init__(
        self, resolution: int, channels: int = 3, width: int = 32, max_width: int = 256, seg_classes: int = 0
    ):
        super().__init__()
        # odd sizes (e.g. MNIST 28) are padded up to the next power of two
        self.size = 2 ** math.ceil(math.log2(max(resolution, 8)))
        # a strided 4x4 stem halves the resolution at once; blocks then go down to 4x4
        widths = [min(width * 2**i, max_width) for i in range(int(math.log2(self.size)) - 2)]
        self.stem = nn.Conv2d(channels, widths[0], 4, stride=2, padding=1)
        self.blocks = nn.Sequential(*[DBlock(widths[i], widths[i + 1]) for i in range(len(widths) - 1)])
        last = widths[-1]
        self.final_conv = nn.Conv2d(last + 1, last, 3, padding=1)
        self.fc = nn.Linear(last * 16, last)
        self.out = nn.Linear(last, 1)
        self.seg_classes = seg_classes
        if seg_classes:
            # the stem (half resolution) and the first two blocks (1/4, 1/8) feed the segmentation head
            taps = widths[: min(3, len(widths))]
            self.seg_lateral = nn.ModuleList([nn.Conv2d(c, 2 * width, 1) for c in taps])
            self.seg_out = nn.Conv2d(2 * width, seg_classes, 3, padding=1)

    def forward(self, x, segment: bool = False):
        """Real/fake logits (N,); with `segment=True` also per-pixel class logits (N, K, H/2, W/2)."""
        if x.shape[-1] != self.size:
            pad = self.size - x.shape[-1]
            x = F.pad(x, (pad // 2, pad - pad // 2, pad // 2, pad - pad // 2), value=-1.0)
        h = F.leaky_relu(self.stem(x), 0.2)
        features = [h]
        for block in self.blocks:
            h = block(h)
            features.append(h)  # (N, C, 4, 4) at the end
        logits = self._head(h)
        if not segment:
            return logits
        if not self.seg_classes:
            raise ValueError("this discriminator was built without a segmentation head (seg_classes=0)")
        size = features[0].shape[-2:]
        pyramid = sum(
            F.interpolate(lat(f), size=size, mode="bilinear", align_corners=False) if f.shape[-1] != size[-1]
            else lat(f)
            for lat, f in zip(self.seg_lateral, features, strict=False)
        )
        return logits, self.seg_out(F.leaky_relu(pyramid, 0.2))

    def _head(self, h):
        group = min(4, h.shape[0])
        while h.shape[0] % group:
            group -= 1
        std = h.view(group, -1, *h.shape[1:]).std(0, unbiased=False).mean(dim=(1, 2, 3))  # (N/group,)
        std = std.view(-1, 1, 1, 1).repeat(group, 1, 4, 4)
        h = F.leaky_relu(self.final_conv(torch.cat([h, std], 1)), 0.2)
        return self.out(F.leaky_relu(self.fc(h.flatten(1)), 0.2)).squeeze(1)
