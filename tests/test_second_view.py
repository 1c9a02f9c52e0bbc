"""The second-view feature network: a check on the analyzer with another architecture and training."""

import pytest
import torch

from latentcomp import LatentcompError, load_generator
from latentcomp.metrics.generator_quality import generator_quality
from latentcomp.metrics.second_view import load_second_view, save_second_view, train_second_view


@pytest.fixture(scope="module")
def view(tmp_path_factory):
    net, info = train_second_view(steps=4, batch=8, progress=False)
    assert info["steps"] == 4 and 0 <= info["held_out_accuracy"] <= 1
    path = save_second_view(net, tmp_path_factory.mktemp("view") / "view.safetensors", info)
    return net, path


def test_features_and_round_trip(view):
    net, path = view
    x = torch.rand(3, 3, 64, 64) * 2 - 1
    loaded = load_second_view(path)
    assert loaded.features(x).shape == (3, 1024)
    assert torch.allclose(loaded.features(x), net.features(x), atol=1e-6)
    assert loaded.features(x[:, :, ::2, ::2]).shape == (3, 1024)  # other sizes are resized, not refused


def test_generator_quality_reports_both_feature_spaces(view):
    net, _ = view
    r = generator_quality(load_generator("builtin:toyfaces-dcgan"), n=40, batch=20, progress=False,
                          second_view=net)
    for key in ("fid_samples_vs_renders", "fid2_samples_vs_renders", "fid2_renders_vs_renders"):
        assert torch.isfinite(torch.tensor(r[key])), key
    assert "fid2_samples_vs_renders" not in generator_quality(
        load_generator("builtin:toyfaces-dcgan"), n=20, batch=20, progress=False)


def test_a_foreign_file_is_refused(tmp_path):
    bad = tmp_path / "x.safetensors"
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(bad))
    with pytest.raises(LatentcompError, match="not a second-view network"):
        load_second_view(bad)
    with pytest.raises(LatentcompError, match="not found"):
        load_second_view(tmp_path / "missing.safetensors")
