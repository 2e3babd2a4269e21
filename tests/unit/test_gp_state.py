"""The GP suggester's state across a restart (hpod.suggest.base.Resumable): a suggester rebuilt
from the history plus its saved state proposes what the uninterrupted one does; a state it
cannot take is refused whole, leaving it as it was."""

from __future__ import annotations

import copy
import json
import math

import pytest

from hpod.space import Space
from hpod.suggest import make_suggester
from hpod.suggest.base import Resumable

BRANIN = {"x": {"type": "float", "low": -5.0, "high": 10.0},
          "y": {"type": "float", "low": 0.0, "high": 15.0},
          "act": {"type": "categorical", "choices": ["relu", "tanh", "gelu"]}}


def _objective(p: dict) -> float:
    x, y = p["x"], p["y"]
    branin = ((y - 5.1 / (4 * math.pi ** 2) * x * x + 5 / math.pi * x - 6) ** 2
              + 10 * (1 - 1 / (8 * math.pi)) * math.cos(x) + 10)
    return branin + {"relu": 0.0, "tanh": 1.0, "gelu": 3.0}[p["act"]]


def _suggester(**options):
    return make_suggester("gp", Space.from_dict(BRANIN), seed=11, n_startup=5, **options)


def _step(suggester, history: list) -> dict:
    point = suggester.suggest()
    suggester.observe(point, _objective(point))
    history.append(point)
    return point


@pytest.mark.parametrize("options", [{}, {"acquisition": "logei"}, {"fidelity": "joint",
                                                                     "max_resource": 9}])
def test_a_restored_suggester_proposes_what_the_uninterrupted_one_does(options):
    running, history = _suggester(**options), []
    for _ in range(14):
        _step(running, history)
    # What the daemon stores: JSON text.
    saved = json.loads(json.dumps(running.state()))
    restarted = _suggester(**options)
    for point in history:
        restarted.observe(point, _objective(point))
    restarted.load_state(saved)
    assert restarted.state() == running.state()
    for _ in range(6):
        expected = _step(running, [])
        assert restarted.suggest() == expected, "diverged"
        restarted.observe(expected, _objective(expected))


def test_the_state_holds_what_the_history_does_not():
    suggester, history = _suggester(), []
    for _ in range(12):
        _step(suggester, history)
    state = suggester.state()
    assert isinstance(suggester, Resumable)
    assert state["model"]["params"] is not None and state["model"]["fitted_at"] > 0
    assert any(gain != 0.0 for gain in state["hedge"]["gains"])
    assert len(state["hedge"]["last"]["nominees"][0]) == 3
    assert state["joint_model"]["params"] is None  # the single-level model was used


def _broken(state: dict, path: tuple, value) -> dict:
    out = copy.deepcopy(state)
    where = out
    for key in path[:-1]:
        where = where[key]
    where[path[-1]] = value
    return out


@pytest.mark.parametrize("path, value, message", [
    (("format",), 99, "format"),
    (("kind",), "tpe", "kind"),
    (("model", "params", "lam"), [1.0, 2.0], "model.params.lam"),
    (("model", "params", "lam"), [1.0, -2.0, 1.0], "not positive"),
    (("format",), True, "format"),
    (("options", "beta"), 3.0, "other suggester options"),
    (("model", "params", "scale"), "big", "model.params.scale"),
    (("model", "params", "scale"), 10 ** 400, "model.params.scale"),
    (("model", "params", "lam"), ["1.5", "1", "1"], "model.params.lam"),
    (("joint_model", "params"), {"lam": [10 ** 400] * 4, "scale": 1.0, "noise_var": 0.1},
     "joint_model.params.lam"),
    (("model", "fitted_at"), -1, "model.fitted_at"),
    (("hedge", "gains"), [float("nan"), 0.0], "hedge.gains"),
    (("hedge", "last", "members"), [5], "hedge.last.members"),
    (("hedge", "last", "nominees"), [[0.5, 0.5]], "hedge.last.nominees"),
    (("hedge",), None, "hedge missing"),
])
def test_a_state_it_cannot_take_is_refused_whole(path, value, message):
    suggester, history = _suggester(), []
    for _ in range(10):
        _step(suggester, history)
    good = suggester.state()
    fresh = _suggester()
    for point in history:
        fresh.observe(point, _objective(point))
    before = fresh.state()
    with pytest.raises(ValueError, match=message):
        fresh.load_state(_broken(good, path, value))
    assert fresh.state() == before
    fresh.load_state(good)
    assert fresh.state() == good


def test_a_hedge_state_is_refused_by_a_suggester_without_the_portfolio():
    suggester, history = _suggester(), []
    for _ in range(8):
        _step(suggester, history)
    with pytest.raises(ValueError, match="other suggester options.*'acquisition': 'ucb'"):
        _suggester(acquisition="ucb").load_state(suggester.state())


def test_a_gp_grid_takes_only_its_own_state():
    grid_space = Space.from_dict({"x": {"type": "float", "low": 0.0, "high": 1.0, "step": 0.05},
                                  "y": {"type": "int", "low": 0, "high": 9}})
    grid = make_suggester("gp-grid", grid_space, seed=3, n_startup=4)
    history = []
    for _ in range(8):
        point = grid.suggest()
        grid.observe(point, (point["x"] - 0.3) ** 2 + point["y"])
        history.append(point)
    state = json.loads(json.dumps(grid.state()))
    assert state["kind"] == "gp-grid"
    restarted = make_suggester("gp-grid", grid_space, seed=3, n_startup=4)
    for point in history:
        restarted.observe(point, (point["x"] - 0.3) ** 2 + point["y"])
    restarted.load_state(state)
    assert restarted.suggest() == grid.suggest()
    with pytest.raises(ValueError, match="kind"):
        make_suggester("gp", grid_space, seed=3, n_startup=4, acquisition="logei").load_state(state)
    with pytest.raises(ValueError, match="options"):
        make_suggester("gp-grid", grid_space, seed=3, n_startup=4,
                       max_enumerate=10).load_state(state)
