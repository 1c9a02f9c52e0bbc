"""A small residual discriminator for GAN training (any resolution that is a power of two >= 8).

Each block halves the resolution (conv, LeakyReLU, conv, average pool) with a 1x1 skip; a minibatch
standard-deviation channel before the head helps against mode collapse, as in ProGAN/StyleGAN.
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
    def __init__(self, resolution: int, channels: int = 3, width: int = 32, max_width: int = 256):
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

    def forward(self, x):
        if x.shape[-1] != self.size:
            pad = self.size - x.shape[-1]
            x = F.pad(x, (pad // 2, pad - pad // 2, pad // 2, pad - pad // 2), value=-1.0)
        h = self.blocks(F.leaky_relu(self.stem(x), 0.2))  # (N, C, 4, 4)
        group = min(4, h.shape[0])
        while h.shape[0] % group:
            group -= 1
        std = h.view(group, -1, *h.shape[1:]).std(0, unbiased=False).mean(dim=(1, 2, 3))  # (N/group,)
        std = std.view(-1, 1, 1, 1).repeat(group, 1, 4, 4)
        h = F.leaky_relu(self.final_conv(torch.cat([h, std], 1)), 0.2)
        return self.out(F.leaky_relu(self.fc(h.flatten(1)), 0.2)).squeeze(1)
