"""kind = "tpe": Parzen estimators, better than random, pending points, determinism."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hpod.errors import SearchExhausted
from hpod.space import Space
from hpod.suggest import make_suggester
from hpod.suggest._lattice import Lattice
from hpod.suggest._parzen import ParzenEstimator

QUAD = {"x": {"type": "float", "low": -5.0, "high": 5.0},
        "y": {"type": "float", "low": -5.0, "high": 5.0},
        "n": {"type": "int", "low": 1, "high": 100, "log": True},
        "c": {"type": "categorical", "choices": ["a", "b", "c", "d"]}}


def _quad(p: dict) -> float:
    return (p["x"] - 1) ** 2 + (p["y"] + 2) ** 2 + (math.log(p["n"]) - math.log(20)) ** 2 + 3 * (p["c"] != "c")


def _best(kind: str, seed: int, n: int = 60) -> float:
    space = Space.from_dict(QUAD)
    s = make_suggester(kind, space, seed=seed)
    best = math.inf
    for _ in range(n):
        p = s.suggest()
        v = _quad(p)
        s.observe(p, v)
        best = min(best, v)
    return best


def test_tpe_beats_random_search_in_median():
    seeds = range(5)
    tpe = np.median([_best("tpe", s) for s in seeds])
    rnd = np.median([_best("random", s) for s in seeds])
    assert tpe < 0.5 * rnd


def test_parzen_density_is_normalised_on_continuous_and_discrete_coordinates():
    space = Space.from_dict({"x": {"type": "float", "low": 0.0, "high": 1.0}})
    est = ParzenEstimator(np.array([[0.1], [0.15], [0.8]]), np.ones(3), Lattice(space))
    grid = np.linspace(0.0, 1.0, 20001)[:, None]
    assert np.trapezoid(np.exp(est.log_pdf(grid)), grid[:, 0]) == pytest.approx(1.0, abs=1e-3)

    space = Space.from_dict({"k": {"type": "int", "low": 1, "high": 7, "log": True},
                             "c": {"type": "categorical", "choices": ["a", "b", "c"]}})
    lattice = Lattice(space)
    X = space.to_unit_many([{"k": 2, "c": "a"}, {"k": 5, "c": "c"}])
    est = ParzenEstimator(X, np.array([1.0, 2.0]), lattice)
    every = space.to_unit_many([space.grid_point(i) for i in range(space.grid_size())])
    assert np.exp(est.log_pdf(every)).sum() == pytest.approx(1.0, abs=1e-9)
    draws = est.sample(np.random.default_rng(0), 200)
    keys = {space.key(space.from_unit(x)) for x in draws}
    assert keys <= {space.key(space.grid_point(i)) for i in range(space.grid_size())}


def test_pending_points_are_never_reproposed_and_the_space_exhausts():
    space = Space.from_dict({"a": {"type": "int", "low": 0, "high": 5},
                             "b": {"type": "categorical", "choices": ["x", "y", "z"]}})
    s = make_suggester("tpe", space, seed=0, n_startup=4)
    running: list[dict] = []
    proposed = []
    while True:
        try:
            p = s.suggest(running)
        except SearchExhausted:
            break
        proposed.append(space.key(p))
        running.append(p)
        if len(running) == 4:
            done = running.pop(0)
            s.observe(done, None if done["a"] == 0 else float(done["a"]))
    assert len(proposed) == len(set(proposed)) == space.grid_size()


def test_a_fixed_seed_gives_the_same_sequence():
    def run(seed: int) -> list[dict]:
        space = Space.from_dict(QUAD)
        s = make_suggester("tpe", space, seed=seed, n_startup=5)
        out = []
        for _ in range(15):
            p = s.suggest()
            s.observe(p, _quad(p))
            out.append(p)
        return out

    assert run(3) == run(3)
    assert run(3) != run(4)


def test_options_are_validated():
    space = Space.from_dict(QUAD)
    with pytest.raises(ValueError, match="n_ei_candidates"):
        make_suggester("tpe", space, n_ei_candidates=0)
    with pytest.raises(ValueError, match="prior_weight"):
        make_suggester("tpe", space, prior_weight=0)
