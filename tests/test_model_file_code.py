"""A model file must never choose code to run: a `python:` generator spec recorded in a regressor's
config (run folder config.json, a lone .safetensors' metadata, or an exported .json) is refused unless
the user names the generator (`--generator`, `generator=`) or passes `trust_code=True`."""

import json
import textwrap

import numpy as np
import pytest
import torch
from clirun import run_cli
from PIL import Image

from latentcomp import LatentcompError, Pipeline, load_generator
from latentcomp.regressors import build_regressor, load_regressor, save_regressor

# importing this module (what loading a python: spec does) leaves a marker file: the proof that code ran
GEN_FILE = textwrap.dedent(
    """
    import pathlib, torch
    from torch import nn
    from latentcomp.generators.custom import CustomGenerator

    pathlib.Path(__file__).with_name("CODE_RAN").write_text("yes")

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(8, 3 * 16 * 16)

        def forward(self, z):
            return torch.tanh(self.fc(z)).view(-1, 3, 16, 16)

    def build():
        torch.manual_seed(0)
        return CustomGenerator(Net(), latent_shape=(8,), resolution=16, channels=3)
    """
)


@pytest.fixture
def hostile(tmp_path):
    """A regressor whose config names a python: generator, saved as a lone file and as a run folder."""
    gen = tmp_path / "gen.py"
    gen.write_text(GEN_FILE)
    spec = f"python:{gen}:build"
    G = load_generator(spec)
    (tmp_path / "CODE_RAN").unlink()  # building the fixture ran it; the tests start clean
    torch.manual_seed(0)
    E = build_regressor(G)
    assert E.generator_spec == spec
    lone = save_regressor(E, tmp_path / "model", write_json=False)  # the spec lives in the metadata
    run = tmp_path / "run"
    run.mkdir()
    save_regressor(E, run / "best", write_json=False)
    (run / "config.json").write_text(json.dumps({**E.config, "generator_spec": spec}))
    return {"spec": spec, "lone": lone, "run": run, "marker": tmp_path / "CODE_RAN"}


@pytest.mark.parametrize("where", ["lone", "run"])
def test_recorded_python_spec_is_refused_and_runs_nothing(hostile, where):
    with pytest.raises(LatentcompError, match="may not choose code to run") as e:
        Pipeline.from_pretrained(str(hostile[where]))
    assert "--generator" in str(e.value) and "trust_code=True" in str(e.value)
    assert not hostile["marker"].exists()
    with pytest.raises(LatentcompError, match="may not choose code to run"):
        load_regressor(str(hostile[where])).load_generator()
    assert not hostile["marker"].exists()


def test_explicit_generator_or_trust_code_loads_it(hostile):
    pipe = Pipeline.from_pretrained(str(hostile["lone"]), generator=hostile["spec"])
    assert hostile["marker"].exists()
    assert pipe.generator.resolution == 16
    hostile["marker"].unlink()
    pipe = Pipeline.from_pretrained(str(hostile["run"]), trust_code=True)
    assert hostile["marker"].exists()
    assert pipe.invert(pipe.sample(2, seed=0)).shape == (2, 8)


def test_cli_refuses_with_one_line_and_accepts_generator(hostile, tmp_path, capsys):
    img = tmp_path / "face.png"
    Image.fromarray(np.full((16, 16, 3), 128, dtype=np.uint8)).save(img)
    mask = tmp_path / "mask.png"
    Image.fromarray(np.full((16, 16), 255, dtype=np.uint8)).save(mask)
    out_file = tmp_path / "o.png"
    args = ["inpaint", "--model", hostile["lone"], "--image", img, "--mask", mask, "--out", out_file]
    code, _, err = run_cli(args, capsys)
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert code == 2 and len(errors) == 1 and "may not choose code to run" in errors[0], err
    assert "Traceback" not in err
    assert not hostile["marker"].exists() and not (tmp_path / "o.png").exists()
    code, _, err = run_cli([*args, "--generator", hostile["spec"]], capsys)
    assert code == 0, err
    assert hostile["marker"].exists() and (tmp_path / "o.png").is_file()


def test_non_code_specs_still_load_from_the_model_file():
    pipe = Pipeline.from_pretrained("toyfaces")  # records builtin:toyfaces-dcgan
    assert pipe.generator.spec == "builtin:toyfaces-dcgan"
