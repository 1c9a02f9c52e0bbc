import json
import re
from pathlib import Path

import pytest
import torch

from latentcomp.data.toyfaces import ATTRIBUTES, PARTS, ToyFaces
from latentcomp.errors import LatentcompError
from latentcomp.metrics import load_analyzer
from latentcomp.metrics.analyzer import (
    WEIGHTS_DIR,
    Analyzer,
    AnalyzerNet,
    augment,
    default_config,
    iou_from_confusion,
    save_analyzer,
    train_analyzer,
)

CARD = WEIGHTS_DIR / "toyfaces-analyzer.md"
MARGIN = 0.03  # 160 images: a few errors more than the model card's 2,000-image figure is still fine


@pytest.fixture(scope="module")
def builtin():
    return load_analyzer("builtin:toyfaces-analyzer")


@pytest.fixture(scope="module")
def fresh():
    # a seed used neither for training (0) nor for the model card's evaluation
    return ToyFaces(resolution=64, seed=4242).render_batch(list(range(160)))


def card_number(label: str) -> float:
    m = re.search(rf"{label}\D*?([0-9]+\.[0-9]+)%", CARD.read_text())
    assert m, f"model card has no '{label}' figure"
    return float(m.group(1)) / 100


def test_builtin_accuracy_matches_model_card(builtin, fresh):
    images, partmaps, attrs = fresh
    out = builtin.predict(images, logits=False)  # one pass for both numbers (the CPU is shared)
    vis = builtin.visible(attrs)
    acc = ((out.attrs == attrs) & vis).sum(0) / vis.sum(0)
    assert acc.mean().item() >= card_number("mean attribute accuracy") - MARGIN
    assert acc.min().item() >= 0.9, dict(zip(builtin.attribute_names, acc.tolist(), strict=True))
    p = len(PARTS)
    conf = torch.bincount(partmaps.reshape(-1) * p + out.partmap.reshape(-1), minlength=p * p).reshape(p, p)
    assert iou_from_confusion(conf, PARTS) >= card_number("part mIoU") - MARGIN
    assert out.confidence.mean() >= 0.9


def test_metric_methods_agree_with_predict(builtin, fresh):
    images, partmaps, attrs = (t[:24] for t in fresh)
    out = builtin.predict(images, batch_size=10)
    acc = builtin.attribute_accuracy(images, attrs, visible_only=False)
    for j, name in enumerate(builtin.attribute_names):
        assert acc[name] == pytest.approx((out.attrs[:, j] == attrs[:, j]).float().mean().item())
    ious = builtin.part_miou(images, partmaps, per_class=True)
    assert ious["mean"] == pytest.approx(builtin.part_miou(images, partmaps))
    inter = ((out.partmap == 0) & (partmaps == 0)).sum()
    union = ((out.partmap == 0) | (partmaps == 0)).sum()
    assert ious["background"] == pytest.approx((inter / union).item())


def test_predict_and_feature_shapes(builtin, fresh):
    images = fresh[0][:5]
    out = builtin.predict(images)
    n_attr, n_parts = len(ATTRIBUTES), len(PARTS)
    assert out.partmap.shape == (5, 64, 64) and out.partmap.dtype == torch.long
    assert out.part_logits.shape == (5, n_parts, 64, 64)
    assert out.attrs.shape == (5, n_attr) and out.visible.shape == (5, n_attr)
    assert [p.shape for p in out.attr_probs] == [(5, len(v)) for v in ATTRIBUTES.values()]
    assert out.confidence.shape == (5,) and bool(((out.confidence > 0) & (out.confidence <= 1)).all())
    f = builtin.features(images)
    assert f.shape == (5, builtin.feature_dim) and 128 <= builtin.feature_dim <= 256
    # batching does not change the answer
    assert torch.allclose(builtin.features(images, batch_size=2), f, atol=1e-5)


@pytest.mark.parametrize("res", [32, 128])
def test_other_resolutions_are_resized(builtin, res):
    images, partmaps, attrs = ToyFaces(resolution=res, seed=4243).render_batch(list(range(16)))
    out = builtin.predict(images)
    assert out.partmap.shape == (16, res, res)
    assert builtin.attribute_accuracy(images, attrs)["mean"] >= 0.85


def test_visibility_rules(builtin):
    names = builtin.attribute_names
    attrs = torch.zeros(3, len(names), dtype=torch.long)
    attrs[:, names.index("hair_style")] = ATTRIBUTES["hair_style"].index("short")
    attrs[1, names.index("glasses")] = ATTRIBUTES["glasses"].index("sunglasses")
    attrs[2, names.index("hair_style")] = ATTRIBUTES["hair_style"].index("bald")
    vis = builtin.visible(attrs)
    assert vis[0].all() and vis[1].sum() == len(names) - 1 and vis[2].sum() == len(names) - 1
    assert not vis[1, names.index("eye_colour")] and not vis[2, names.index("hair_colour")]


def _random_analyzer(tmp_path: Path) -> Path:
    cfg = dict(default_config(widths=(4, 8, 8, 8), feature_dim=16))
    net = AnalyzerNet(len(cfg["parts"]), [len(v) for v in cfg["attributes"].values()], (4, 8, 8, 8), 16)
    return save_analyzer(net.eval(), cfg, tmp_path / "tiny.safetensors")


def test_save_load_roundtrip(tmp_path):
    path = _random_analyzer(tmp_path)
    an = load_analyzer(path)
    assert isinstance(an, Analyzer) and an.features(torch.zeros(2, 3, 64, 64)).shape == (2, 16)
    assert load_analyzer(path.with_suffix(".json")).feature_dim == 16


def test_loading_errors_name_the_file(tmp_path):
    missing = tmp_path / "nope.safetensors"
    with pytest.raises(LatentcompError, match="nope.safetensors"):
        load_analyzer(missing)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    bad.with_suffix(".json").write_text(json.dumps(default_config()))
    with pytest.raises(LatentcompError, match="bad.safetensors"):
        load_analyzer(bad)
    path = _random_analyzer(tmp_path)
    path.with_suffix(".json").unlink()
    with pytest.raises(LatentcompError, match="tiny.json"):
        load_analyzer(path)
    with pytest.raises(LatentcompError, match="builtin:toyfaces-analyzer"):
        load_analyzer("builtin:no-such-analyzer")
    with pytest.raises(LatentcompError, match="folder"):
        load_analyzer(tmp_path)


def test_bad_inputs(builtin):
    with pytest.raises(LatentcompError, match="shape"):
        builtin.predict(torch.zeros(2, 1, 64, 64))
    with pytest.raises(LatentcompError, match="float"):
        builtin.predict(torch.zeros(2, 3, 64, 64, dtype=torch.uint8))
    with pytest.raises(LatentcompError, match="attrs"):
        builtin.attribute_accuracy(torch.zeros(2, 3, 64, 64), torch.zeros(3, len(ATTRIBUTES)))


def test_augment_is_deterministic_and_in_range():
    x = ToyFaces(resolution=64, seed=1).render_batch(list(range(8)))[0]
    a = augment(x, torch.Generator().manual_seed(3))
    assert torch.equal(a, augment(x, torch.Generator().manual_seed(3)))
    assert a.shape == x.shape and a.min() >= -1 and a.max() <= 1 and not torch.equal(a, x)


def test_tiny_training_run_resumes(tmp_path):
    kw = dict(batch=4, seed=7, widths=(4, 8, 8, 8), feature_dim=16, eval_every=0, progress=False,
              tensorboard=False)
    assert train_analyzer(tmp_path / "a", steps=3, stop_after=2, **kw).name == "checkpoint.pt"
    train_analyzer(tmp_path / "a", steps=3, resume=True, **kw)
    with pytest.raises(LatentcompError, match="--resume"):
        train_analyzer(tmp_path / "a", steps=3, **kw)
    train_analyzer(tmp_path / "b", steps=3, **kw)
    a, b = load_analyzer(tmp_path / "a"), load_analyzer(tmp_path / "b")
    for (k, va), vb in zip(a.net.state_dict().items(), b.net.state_dict().values(), strict=True):
        assert torch.allclose(va.float(), vb.float(), atol=1e-5), k
    assert json.loads((tmp_path / "a" / "analyzer.json").read_text())["training"]["steps"] == 3
