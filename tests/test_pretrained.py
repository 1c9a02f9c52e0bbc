"""The registry of bundled models and the one resolver from a model name to a Pipeline."""

from __future__ import annotations

import pytest
import torch

import latentcomp as lc
from latentcomp import LatentcompError
from latentcomp.cli import main
from latentcomp.pretrained import PRETRAINED_MODELS, get_pretrained, list_pretrained, load_pipeline
from latentcomp.probe.common import load_pipeline as probe_load
from latentcomp.web import load_pipeline as web_load


def test_registry_lists_the_bundled_models_with_their_parts():
    assert list_pretrained() == ["toyfaces", "toyfaces-gansformer", "toyfaces-stylegan2"]
    for name in list_pretrained():
        m = PRETRAINED_MODELS[name]
        assert m.installed and m.card.is_file() and m.card.read_text().startswith("# Model card")
        assert m.generator.startswith("builtin:") and m.regressor.startswith("builtin:")
    from latentcomp.navigate.store import bundled_directions

    # the direction set each model names is the one computed for its generator
    m = get_pretrained("toyfaces-stylegan2")
    assert m.directions in bundled_directions(m.generator)


@pytest.mark.parametrize(
    "alias", ["toyfaces", "toyfaces-dcgan", "builtin:toyfaces", " builtin:toyfaces-dcgan"]
)
def test_aliases_resolve_to_one_model(alias):
    assert get_pretrained(alias).name == "toyfaces"


def test_unknown_name_lists_the_accepted_ones():
    accepted = "bundled: toyfaces, toyfaces-gansformer, toyfaces-stylegan2"
    with pytest.raises(LatentcompError, match=f"no bundled model 'nope'; {accepted}"):
        get_pretrained("nope")


def test_every_loader_names_the_model_the_same_way():
    pipes = [
        lc.Pipeline.from_pretrained("builtin:toyfaces"),
        load_pipeline("toyfaces-dcgan"),
        probe_load("toyfaces"),
        web_load("builtin:toyfaces-dcgan"),
    ]
    for pipe in pipes:
        assert pipe.source == "toyfaces" and not pipe.untrained
        assert pipe.generator.spec == "builtin:toyfaces-dcgan"
    x = pipes[0].sample(2, seed=1)
    assert torch.equal(pipes[0].invert(x), pipes[3].invert(x))


def test_a_generator_spec_gets_an_untrained_regressor_only_when_asked(capsys):
    capsys.readouterr()
    with pytest.raises(LatentcompError, match="builtin:tiny-random"):
        load_pipeline("builtin:tiny-random")
    pipe = load_pipeline("builtin:tiny-random", allow_untrained=True)
    assert pipe.untrained and pipe.source == "builtin:tiny-random"
    assert "UNTRAINED regressor" in capsys.readouterr().err
    # neither a model nor a generator: the model's error is the one shown
    with pytest.raises(LatentcompError, match="regressor not found: no/such/run"):
        load_pipeline("no/such/run", allow_untrained=True)


def test_models_command_lists_every_bundled_model(capsys):
    with pytest.raises(SystemExit) as done:
        main(["models"])
    assert done.value.code in (0, None)
    out = capsys.readouterr().out
    for name in list_pretrained():
        m = get_pretrained(name)
        assert f"{name}: " in out and m.regressor in out and m.directions in out and str(m.card) in out
