"""Non-linear steerability walks (Jahanian et al.): `NonlinearWalk`, `steer_mlp_walks`, their measurement
beside the linear walks."""

from __future__ import annotations

import pytest
import torch

from latentcomp import load_generator
from latentcomp.errors import LatentcompError
from latentcomp.navigate import NonlinearWalk, steer_directions, steer_mlp_walks
from latentcomp.navigate.geometry import evaluate_geometry, transform_move
from latentcomp.navigate.nonlinear import WalkStep


def _walk(D=4, unit=0.1):
    nets = {"+": WalkStep(D, 8), "-": WalkStep(D, 8)}
    w = NonlinearWalk("shift_x", torch.ones(D), "z", method="steer-mlp", steps=nets, unit=unit)
    w.meta = {"transform": "shift_x", "per_unit": 1.0}
    return w, nets


def test_steps_follow_the_network():
    w, nets = _walk()
    with torch.no_grad():
        nets["+"].u.copy_(torch.tensor([1.0, 0, 0, 0]))
        nets["-"].u.copy_(torch.tensor([0, 2.0, 0, 0]))
    z = torch.zeros(2, 4)
    # a fresh step is constant (the MLP's last layer starts at zero): a linear walk, unit per step
    assert torch.allclose(w.walk(z, "z", 0.25), torch.tensor([[2.5, 0, 0, 0]] * 2))
    assert torch.allclose(w.walk(z, "z", -0.15), torch.tensor([[0, 3.0, 0, 0]] * 2))
    assert torch.equal(w.walk(z, "z", 0.0), z)
    amounts = torch.tensor([0.1, -0.1])
    assert torch.allclose(w.walk(z, "z", amounts), torch.tensor([[1.0, 0, 0, 0], [0, 2.0, 0, 0]]))
    # a bent step: each step depends on where the last one ended
    with torch.no_grad():
        nets["+"].mlp[2].weight.fill_(0.1)
    two = w.walk(z, "z", 0.2)
    one = w.walk(w.walk(z, "z", 0.1), "z", 0.1)
    assert torch.allclose(two, one) and not torch.allclose(two, 2 * w.walk(z, "z", 0.1))
    assert torch.equal(transform_move(None, z, "z", w, 0.2), two)  # transform_move takes the network path


def test_trained_walks_are_measured_beside_linear_ones():
    from latentcomp.metrics.analyzer import load_analyzer

    G = load_generator("builtin:tiny-random")
    log = []
    walks = steer_mlp_walks(G, "shift_x,brightness", steps=12, batch=4, log=log.append)
    assert [w.name for w in walks] == ["shift_x", "brightness"] and len(log) == 2
    for w in walks:
        assert w.method == "steer-mlp" and w.meta["per_unit"] > 0 and w.meta["step_unit"] > 0
        assert any(p.abs().sum() > 0 for p in w.steps["+"].mlp.parameters())  # it left the linear start
    lin = steer_directions(G, "shift_x", steps=12, batch=4)
    walks[0].name = "shift_x (steer-mlp)"
    res = evaluate_geometry(
        G, load_analyzer("builtin:toyfaces-analyzer"), lin + walks[:1], n=4, reference=False
    )
    assert set(r["method"] for r in res["walks"].values()) == {"steer", "steer-mlp"}
    for r in res["walks"].values():
        assert {"reach", "limit", "gain"} <= set(r) and len(r["rows"]) >= 2


def test_bad_inputs():
    G = load_generator("builtin:tiny-random-stylegan2")
    with pytest.raises(LatentcompError, match="use --space w"):
        steer_mlp_walks(G, "zoom", space="w+")
    with pytest.raises(LatentcompError, match="at least 1"):
        steer_mlp_walks(G, "zoom", steps=0)
    with pytest.raises(LatentcompError, match="unknown transform"):
        steer_mlp_walks(G, "twirl")
