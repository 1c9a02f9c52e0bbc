"""A second feature space for toyfaces, independent of the analyzer: a check on the instrument.

Generator recipes are chosen by the analyzer's figures, so a recipe could learn to please that one
network. This network sees the same domain through another architecture (torchvision's ShuffleNet V2
x0.5 instead of the analyzer's U-Net), another seed and another task (the ten attributes only, no part
maps), and it is never used to train or choose anything: when a domain FID in its features ranks
generators as the analyzer's does, the ranking does not come from one instrument.

    net, info = train_second_view(steps=2500)                  # fresh renders every step
    feats = load_second_view("builtin").features(images)   # (N, 1024), images in [-1, 1]
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..data.toyfaces import ATTRIBUTES, ToyFaces
from ..errors import LatentcompError

BUNDLED = Path(__file__).resolve().parents[1] / "weights" / "toyfaces-second-view.safetensors"
TRAIN_SEED = 5  # the analyzer trains on seed 0 and holds out seed 1000003
HELD_OUT_SEED = 2000003
INPUT_SIZE = 64  # toyfaces size; ShuffleNet reduces 32x, leaving a 2x2 map


class SecondView(nn.Module):
    """ShuffleNet V2 x0.5 (random init) with one linear head over all attribute classes."""

    def __init__(self):
        super().__init__()
        import torchvision

        self.sizes = [len(v) for v in ATTRIBUTES.values()]
        self.net = torchvision.models.shufflenet_v2_x0_5(weights=None, num_classes=sum(self.sizes))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Images (N, 3, H, W) in [-1, 1] -> pooled last-stage features (N, 1024)."""
        if x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
            x = F.interpolate(x.float(), size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", antialias=True,
                              align_corners=False)
        n = self.net
        h = n.conv5(n.stage4(n.stage3(n.stage2(n.maxpool(n.conv1(x))))))
        return h.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Per attribute, its class logits."""
        return list(self.net.fc(self.features(x)).split(self.sizes, dim=1))


def train_second_view(
    steps: int = 2500, batch: int = 32, lr: float = 2e-3, seed: int = TRAIN_SEED, progress: bool = True
) -> tuple[SecondView, dict]:
    """Train on fresh renders (none repeated) with attribute cross-entropy; returns the net in eval mode
    and its held-out attribute accuracy on 1,000 renders of another seed."""
    from tqdm import tqdm

    if seed == HELD_OUT_SEED:
        raise LatentcompError(f"seed {seed} is the held-out seed; pick another")
    torch.manual_seed(seed)
    net = SecondView()
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    data = ToyFaces(64, seed=seed)
    net.train()
    t0 = time.perf_counter()
    for step in tqdm(range(steps), disable=not progress, desc="second view"):
        x, _, attrs = data.render_batch(range(step * batch, (step + 1) * batch))
        loss = sum(F.cross_entropy(logits, attrs[:, k]) for k, logits in enumerate(net(x))) / len(net.sizes)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    net.eval()
    return net, {"steps": steps, "batch": batch, "seed": seed, "train_s": round(time.perf_counter() - t0, 1),
                 "held_out_accuracy": held_out_accuracy(net)}


@torch.no_grad()
def held_out_accuracy(net: SecondView, n: int = 1000) -> float:
    """Mean attribute accuracy (all attributes, visible or not) on renders of the held-out seed."""
    x, _, attrs = ToyFaces(64, seed=HELD_OUT_SEED).render_batch(range(n))
    correct = [(logits.argmax(1) == attrs[:, k]).float().mean() for k, logits in enumerate(net(x))]
    return float(torch.stack(correct).mean())


def save_second_view(net: SecondView, path: str | Path, info: dict) -> Path:
    from safetensors.torch import save

    from ..io import atomic_write

    path = Path(path)
    data = save({k: v.contiguous() for k, v in net.state_dict().items()},
                metadata={"latentcomp_second_view": json.dumps(info)})
    atomic_write(path, lambda tmp: tmp.write_bytes(data))
    return path


def load_second_view(path: str | Path = "builtin", device: str | torch.device = "cpu") -> SecondView:
    """The bundled network ("builtin") or one saved by `save_second_view`."""
    from safetensors.torch import load_file

    p = BUNDLED if str(path) == "builtin" else Path(path).expanduser()
    if not p.is_file():
        raise LatentcompError(
            f"second-view feature network not found: {p} "
            "(train one with `latentcomp analyzer train-second-view`)"
        )
    net = SecondView()
    try:
        net.load_state_dict(load_file(str(p)))
    except Exception as e:  # noqa: BLE001 - a foreign file is one readable line
        raise LatentcompError(f"{p} is not a second-view network: {type(e).__name__}: {e}") from None
    return net.to(device).eval().requires_grad_(False)
