"""The real MNIST DCGAN (../shared/real/mnist-dcgan) via `python:examples/mnist_dcgan.py:build`; MNIST IDX.

A small CNN is fitted here on the real MNIST test set; the generator's samples must be digits it is sure
about (>= 70% of 256 with confidence > 0.9), while the same architecture with random weights must not be.
"""

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from latentcomp import LatentcompError, load_generator
from latentcomp.data.mnist import MNIST, read_idx

REPO = Path(__file__).resolve().parents[1]
SPEC = f"python:{REPO / 'examples' / 'mnist_dcgan.py'}:build"


def fit_classifier(images, labels, steps=500, seed=0):
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(labels), generator=g)
    train, held = perm[:9000], perm[9000:]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = nn.Sequential(
            nn.Conv2d(1, 16, 5, 2, 2), nn.ReLU(), nn.Conv2d(16, 32, 3, 2, 1), nn.ReLU(),
            nn.Flatten(), nn.Linear(32 * 7 * 7, 10),
        )
    opt = torch.optim.Adam(net.parameters(), 2e-3)
    for _ in range(steps):
        idx = train[torch.randint(len(train), (128,), generator=g)]
        loss = F.cross_entropy(net(images[idx]), labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        acc = (net(images[held]).argmax(1) == labels[held]).float().mean().item()
    return net, acc


def confident_fraction(net, G, n=256):
    with torch.no_grad():
        x = G(G.sample_latent(n, generator=torch.Generator().manual_seed(0)))
        conf, pred = F.softmax(net(x), dim=1).max(1)
    return (conf > 0.9).float().mean().item(), pred


def test_real_mnist_dcgan_makes_digits(real_dir):
    ds = MNIST(real_dir / "mnist")
    assert ds.images.shape == (10000, 1, 28, 28) and ds.labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    G = load_generator(SPEC)
    assert (G.latent_shape, G.resolution, G.channels, G.prior) == ((100,), 28, 1, "normal")
    z = G.sample_latent(4, generator=torch.Generator().manual_seed(0))
    x = G(z)
    assert x.shape == (4, 1, 28, 28) and x.min() >= -1 and x.max() <= 1 and torch.equal(G(z), x)
    z.requires_grad_(True)
    G(z).mean().backward()
    assert z.grad.abs().sum() > 0 and all(p.grad is None for p in G.parameters())

    net, acc = fit_classifier(ds.images, ds.labels)
    assert acc > 0.9, f"classifier held-out accuracy {acc:.3f}"
    real_frac, pred = confident_fraction(net, G)
    rand_frac, _ = confident_fraction(net, load_generator(SPEC, random_init=True))
    assert real_frac >= 0.7, f"only {real_frac:.2%} of samples are confident digits"
    assert rand_frac < 0.7, f"random weights give {rand_frac:.2%} confident digits"
    assert len(pred.unique()) >= 8  # not a collapsed generator


def test_env_override_and_missing_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("LATENTCOMP_MNIST_DCGAN", str(tmp_path / "none.pth"))
    with pytest.raises(LatentcompError, match="MNIST DCGAN weights not found: .*none.pth"):
        load_generator(SPEC)


def _write_idx(path, arr: np.ndarray, code: int, gz: bool):
    header = struct.pack(">HBB", 0, code, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    data = header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()
    path.write_bytes(gzip.compress(data) if gz else data)


def test_read_idx_synthetic(tmp_path):
    imgs = np.random.default_rng(0).integers(0, 256, size=(5, 28, 28), dtype=np.uint8)
    labels = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    _write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", imgs, 0x08, gz=True)
    _write_idx(tmp_path / "t10k-labels-idx1-ubyte", labels, 0x08, gz=False)
    t = read_idx(tmp_path / "t10k-images-idx3-ubyte.gz", expect_magic=2051)
    assert t.dtype == torch.uint8 and torch.equal(t, torch.from_numpy(imgs))
    ds = MNIST(tmp_path)
    assert len(ds) == 5 and ds.labels.tolist() == [3, 1, 4, 1, 5]
    img, lab = ds[0]
    assert img.shape == (1, 28, 28) and lab == 3 and img.min() >= -1 and img.max() <= 1
    assert torch.allclose(img[0], torch.from_numpy(imgs[0]).float() / 127.5 - 1)
    ints = np.arange(6, dtype=np.int32).reshape(2, 3) - 3
    _write_idx(tmp_path / "ints.idx", ints, 0x0C, gz=False)
    assert read_idx(tmp_path / "ints.idx").tolist() == ints.tolist()  # big-endian int32
    (tmp_path / "bad.idx").write_bytes(b"\x01\x02\x03\x04")
    with pytest.raises(LatentcompError, match="bad.idx: not an IDX file"):
        read_idx(tmp_path / "bad.idx")
    with pytest.raises(LatentcompError, match="magic number is 2049; expected 2051"):
        read_idx(tmp_path / "t10k-labels-idx1-ubyte", expect_magic=2051)
    (tmp_path / "short.idx").write_bytes((tmp_path / "t10k-labels-idx1-ubyte").read_bytes()[:-2])
    with pytest.raises(LatentcompError, match="truncated IDX data"):
        read_idx(tmp_path / "short.idx")
    with pytest.raises(LatentcompError, match="MNIST file train-images-idx3-ubyte"):
        MNIST(tmp_path, split="train")
