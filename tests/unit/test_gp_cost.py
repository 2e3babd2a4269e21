"""The GP weighs a point by what it costs (hpod.suggest.gp.cost, "EI per second"): the cost GP
learns which region is slow, the weighed acquisition's gradient is exact, points go to the cheap
region where the objective cannot tell them apart, and the cost model's state survives a
restart."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from hpod.space import Space
from hpod.suggest import make_suggester
from hpod.suggest.gp.acquisition import LogEI, UCB
from hpod.suggest.gp.cost import CostModel, PerCost
from hpod.suggest.gp.regressor import GPPosterior, KernelParams

SPACE = {"x": {"type": "float", "low": 0.0, "high": 1.0},
         "y": {"type": "float", "low": 0.0, "high": 1.0}}


def _seconds(p: dict) -> float:
    """Twenty times slower per epoch for x > 0.5 (say, a wider network)."""
    return 20.0 if p["x"] > 0.5 else 1.0


def _objective(p: dict) -> float:
    """Symmetric in x about 0.5: the cheap half holds as good points as the slow one."""
    return (p["y"] - 0.3) ** 2 + 0.1 * math.cos(6 * math.pi * p["x"])


def _cost_model(n: int = 20) -> CostModel:
    model = CostModel(np.array([False, False]), np.array([0, 0]), prior="hvarfner",
                      max_points=500)
    rng = np.random.default_rng(0)
    for i in range(n):
        x = rng.random(2)
        model.observe(("p", i), x, _seconds({"x": x[0]}))
    return model


def test_the_cost_gp_learns_which_region_is_slow():
    surface = _cost_model().surface(np.random.default_rng(1), min_points=3)
    assert surface is not None
    cheap, slow = surface.log_cost(np.array([[0.2, 0.5], [0.8, 0.5]]))
    assert slow - cheap == pytest.approx(math.log(20.0), rel=0.25)


def test_a_startup_that_every_trial_pays_narrows_the_difference_in_cost():
    model = _cost_model()
    X = np.array([[0.2, 0.5], [0.8, 0.5]])
    cheap, slow = model.surface(np.random.default_rng(1), min_points=3).log_cost(X)
    # A trial trains 10 epochs at 1 s or 20 s each: with a 100 s startup, 110 s against 300 s.
    model.observe_overhead(100.0, 10.0)
    with_startup = model.surface(np.random.default_rng(1), min_points=3)
    cheap_s, slow_s = with_startup.log_cost(X)
    rate_cheap, rate_slow = math.exp(cheap), math.exp(slow)  # relative to x_0's rate
    ratio = (100.0 + 10.0 * rate_slow * math.exp(with_startup.mean)) / \
            (100.0 + 10.0 * rate_cheap * math.exp(with_startup.mean))
    assert slow_s - cheap_s == pytest.approx(math.log(ratio), rel=1e-9)
    assert 0 < slow_s - cheap_s < slow - cheap
    with pytest.raises(ValueError, match="startup"):
        model.observe_overhead(-1.0, 10.0)
    with pytest.raises(ValueError, match="resource"):
        model.observe_overhead(1.0, 0.0)


def test_no_surface_below_the_minimum_or_when_every_point_costs_the_same():
    assert _cost_model(3).surface(np.random.default_rng(1), min_points=4) is None
    flat = CostModel(np.array([False]), np.array([0]), prior="hvarfner", max_points=500)
    for i in range(6):
        flat.observe(i, np.array([i / 6]), 2.5)
    assert flat.surface(np.random.default_rng(1), min_points=3) is None
    with pytest.raises(ValueError, match="positive"):
        flat.observe(7, np.array([0.1]), float("nan"))


@pytest.mark.parametrize("member", ["logei", "ucb"])
@pytest.mark.parametrize("overhead", [None, (30.0, 5.0)])
def test_the_weighed_acquisitions_gradient_matches_finite_differences(member, overhead):
    rng = np.random.default_rng(0)
    X = rng.random((12, 2))
    y = np.sin(4 * X[:, 0]) + X[:, 1]
    post = GPPosterior(X, (y - y.mean()) / y.std(), KernelParams(np.array([4.0, 2.0]), 1.0, 1e-5),
                       np.array([False, False]))
    inner = LogEI(post, float(post.y.max())) if member == "logei" else UCB(post, 2.0)
    model = _cost_model()
    if overhead is not None:
        model.observe_overhead(*overhead)
    surface = model.surface(np.random.default_rng(1), min_points=3)
    acq = PerCost(inner, surface)
    Xq = np.array([[0.3, 0.4], [0.7, 0.1], [0.45, 0.9]])
    values, grad = acq.value_and_grad(Xq)
    np.testing.assert_allclose(values, acq(Xq), rtol=1e-12)
    np.testing.assert_allclose(values, inner(Xq) - surface.log_cost(Xq), rtol=1e-12)
    eps = 1e-6
    for j in range(2):
        e = np.zeros(2)
        e[j] = eps
        fd = (acq(Xq + e) - acq(Xq - e)) / (2 * eps)
        np.testing.assert_allclose(grad[:, j], fd, rtol=1e-4, atol=1e-6)


def _run(cost: str, n: int = 30) -> list[dict]:
    gp = make_suggester("gp", Space.from_dict(SPACE), seed=5, n_startup=8, cost=cost)
    points = []
    for _ in range(n):
        point = gp.suggest()
        gp.observe(point, _objective(point))
        gp.observe_cost(point, _seconds(point))
        points.append(point)
    return points


def test_told_costs_the_gp_spends_its_picks_in_the_cheap_region():
    weighed, blind = _run("auto")[8:], _run("off")[8:]  # after the design, which ignores costs
    cheap = sum(p["x"] <= 0.5 for p in weighed)
    assert cheap >= 0.8 * len(weighed)
    assert cheap > sum(p["x"] <= 0.5 for p in blind)


def test_without_costs_told_the_gp_proposes_what_it_did_before():
    a = make_suggester("gp", Space.from_dict(SPACE), seed=2, n_startup=5)
    b = make_suggester("gp", Space.from_dict(SPACE), seed=2, n_startup=5, cost="off")
    for _ in range(12):
        point = a.suggest()
        assert b.suggest() == point
        a.observe(point, _objective(point))
        b.observe(point, _objective(point))


def test_the_cost_models_warm_start_is_in_the_state_and_an_older_state_still_loads():
    gp = make_suggester("gp", Space.from_dict(SPACE), seed=5, n_startup=8)
    history = []
    for _ in range(14):
        point = gp.suggest()
        history.append(point)
        gp.observe(point, _objective(point))
        gp.observe_cost(point, _seconds(point))
    state = json.loads(json.dumps(gp.state()))
    assert state["cost_model"]["params"] is not None
    restarted = make_suggester("gp", Space.from_dict(SPACE), seed=5, n_startup=8)
    for point in history:
        restarted.observe(point, _objective(point))
        restarted.observe_cost(point, _seconds(point))
    restarted.load_state(state)
    assert restarted.suggest() == gp.suggest()
    # Saved before costs were modelled: no cost model, no `cost` option.
    older = {**state, "options": {k: v for k, v in state["options"].items() if k != "cost"}}
    del older["cost_model"]
    restarted.load_state(older)


def test_an_unknown_cost_choice_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="cost must be one of 'auto', 'on', 'off'"):
        make_suggester("gp", Space.from_dict(SPACE), cost="always")
