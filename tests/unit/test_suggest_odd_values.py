"""Suggesters told odd values: nearly constant results, results in tiny units, numpy scalars,
integers past the float range, costs near the smallest float."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from hpod.errors import SpaceError
from hpod.space import Space
from hpod.suggest import make_suggester
from hpod.suggest.base import History
from hpod.suggest.gp.cost import CostSurface
from hpod.suggest.gp.targets import gp_targets

LINE = {"x": {"type": "float", "low": 0.0, "high": 1.0}}
MIXED = {"n": {"type": "int", "low": 0, "high": 10},
         "x": {"type": "float", "low": 0.0, "high": 1.0},
         "s": {"type": "float", "low": 0.0, "high": 1.0, "step": 0.25}}


def _gp_run(scale: float, n: int = 14, **options) -> list[dict]:
    s = make_suggester("gp", Space.from_dict(LINE), seed=0, **options)
    out = []
    for _ in range(n):
        p = s.suggest()
        out.append(p)
        s.observe(p, scale * (p["x"] - 0.3) ** 2)
    return out


# -- targets -------------------------------------------------------------------------------------

def test_the_power_warp_survives_values_that_differ_in_the_15th_digit():
    s = make_suggester("gp", Space.from_dict(LINE), seed=0, warp="power")
    for i in range(8):
        p = s.suggest()
        s.observe(p, 1.0 + (i % 3) * 1e-15)
    assert 0.0 <= s.suggest()["x"] <= 1.0


def test_nearly_constant_values_are_not_warped_and_standardise_to_about_zero():
    v = 1.0 + (np.arange(8) % 3) * 1e-15
    t = gp_targets(v, warp="power")
    np.testing.assert_array_equal(t, gp_targets(v, warp="none"))
    assert np.all(np.abs(t) < 0.05)


def test_targets_do_not_depend_on_the_unit_of_the_values():
    v = np.array([0.3, 1.7, 0.02, 4.0, 2.5, 0.9])
    # A power of two scales every step of the standardisation exactly.
    np.testing.assert_array_equal(gp_targets(v * 2.0**-40), gp_targets(v))


def test_the_gp_learns_an_objective_measured_in_tiny_units():
    assert _gp_run(2.0**-40) == _gp_run(1.0)


# -- numbers from numpy, and numbers too big for a float ------------------------------------------

def test_numpy_scalars_are_numbers_and_are_stored_as_python_ones():
    space = Space.from_dict(MIXED)
    obs = History(space).add({"n": np.int64(7), "x": np.float32(0.5), "s": np.float16(0.25)},
                             np.float32(1.5), np.int32(3))
    assert obs.params == {"n": 7, "x": 0.5, "s": 0.25}
    assert type(obs.params["n"]) is int and type(obs.params["x"]) is float
    assert type(obs.value) is float and obs.value == 1.5
    assert type(obs.resource) is float and obs.resource == 3.0
    json.dumps(obs.params)


@pytest.mark.parametrize("kind", ["random", "tpe", "gp", "grid"])
def test_every_suggester_is_told_numpy_scalars(kind):
    space = Space.from_dict({"n": MIXED["n"], "s": MIXED["s"]})
    s = make_suggester(kind, space, seed=0)
    for _ in range(12):
        p = s.suggest()
        s.observe({"n": np.int64(p["n"]), "s": np.float64(p["s"])}, np.float32(p["n"] + p["s"]))
    space.validate(s.suggest())


def test_a_whole_numpy_float_is_an_int_and_bools_are_never_numbers():
    space = Space.from_dict(MIXED)
    assert space.validate({"n": np.float32(4.0)}) == {"n": 4}
    for bad in ({"n": True}, {"n": np.bool_(True)}, {"x": np.bool_(False)}, {"n": np.float64(4.5)}):
        with pytest.raises(SpaceError):
            space.validate(bad)
    s = make_suggester("random", space, seed=0)
    p = s.suggest()
    for bad in (True, np.bool_(True), "1"):
        with pytest.raises(ValueError, match="value must be a number or None"):
            s.observe(p, bad)


def test_an_integer_beyond_the_float_range_is_refused_clearly():
    space = Space.from_dict(MIXED)
    s = make_suggester("random", space, seed=0)
    p = s.suggest()
    with pytest.raises(ValueError, match="beyond the float range"):
        s.observe(p, 10**309)
    with pytest.raises(ValueError, match="beyond the float range"):
        s.observe(p, 1.0, 10**309)
    with pytest.raises(SpaceError, match="beyond the float range"):
        space.validate({"x": 10**309})


# -- costs near the float limits ------------------------------------------------------------------

def _reference_penalty(m: np.ndarray, mean: float, std: float, startup: float,
                       resource: float) -> np.ndarray:
    log_base = math.log(startup) - mean
    log_resource = math.log(resource)
    return (np.logaddexp(log_base, log_resource - std * m)
            - np.logaddexp(log_base, log_resource))


@pytest.mark.parametrize("mean", [-744.4, -708.0, 0.3, 700.0])
def test_the_cost_penalty_is_finite_for_any_rate(mean):
    m = np.linspace(-3.0, 3.0, 7)
    surface = CostSurface(None, mean, 0.35, 5.0, 10.0)  # the penalty reads no posterior
    penalty, slope = surface.penalty(m)
    assert np.all(np.isfinite(penalty)) and np.all(np.isfinite(slope))
    np.testing.assert_allclose(penalty, _reference_penalty(m, mean, 0.35, 5.0, 10.0),
                               rtol=1e-9, atol=1e-12)


def test_a_huge_spread_of_log_rates_keeps_the_penalty_finite():
    surface = CostSurface(None, -300.0, 400.0, 0.0, 10.0)
    penalty, slope = surface.penalty(np.array([-3.0, 0.0, 3.0]))
    assert np.all(np.isfinite(penalty)) and np.all(np.isfinite(slope))
    np.testing.assert_allclose(penalty, [1200.0, 0.0, -1200.0])


def test_the_gp_weighs_costs_told_near_the_smallest_float():
    s = make_suggester("gp", Space.from_dict({**LINE, "y": LINE["x"]}), seed=0, cost="on")
    s.observe_overhead(5.0, np.float32(10.0))
    for i in range(12):
        p = s.suggest()
        s.observe(p, p["x"])
        s.observe_cost(p, 5e-324 * (1 + i % 2))
    assert 0.0 <= s.suggest()["x"] <= 1.0
