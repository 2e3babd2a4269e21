"""acquisition = "hedge": the GP-Hedge portfolio's credit, choice and its place in the suggester."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hpod.errors import SearchExhausted
from hpod.space import Space
from hpod.suggest import make_suggester
from hpod.suggest.gp.hedge import PORTFOLIO, Hedge

BRANIN = {"x": {"type": "float", "low": -5.0, "high": 10.0},
          "y": {"type": "float", "low": 0.0, "high": 15.0}}


def _branin(p: dict) -> float:
    x, y = p["x"], p["y"]
    return ((y - 5.1 / (4 * math.pi ** 2) * x * x + 5 / math.pi * x - 6) ** 2
            + 10 * (1 - 1 / (8 * math.pi)) * math.cos(x) + 10)


def test_each_member_is_credited_with_the_posterior_mean_at_its_last_nominee():
    hedge = Hedge(("a", "b", "c"))
    nominees = np.array([[0.1, 0.2], [0.9, 0.8]])
    hedge.choose([0, 2], nominees, np.random.default_rng(0))  # "b" had nothing to nominate
    seen = []

    def mean(X: np.ndarray) -> np.ndarray:
        seen.append(X.copy())
        return np.array([2.0, -1.0])

    hedge.update(mean)
    np.testing.assert_array_equal(seen[0], nominees)
    np.testing.assert_array_equal(hedge.gains, [2.0, 0.0, -1.0])
    hedge.update(mean)  # no new nominees since: nothing more to credit
    np.testing.assert_array_equal(hedge.gains, [2.0, 0.0, -1.0])


def test_the_choice_follows_the_softmax_of_the_gains_of_the_members_that_nominated():
    hedge = Hedge(("a", "b", "c"), eta=1.0)
    hedge.gains = np.array([0.0, math.log(3.0), -50.0])  # probabilities 1/4, 3/4, ~0
    rng = np.random.default_rng(7)
    picks = np.bincount([hedge.choose([0, 1, 2], np.zeros((3, 1)), rng) for _ in range(4000)],
                        minlength=3)
    assert picks[2] == 0
    assert picks[1] / 4000 == pytest.approx(0.75, abs=0.03)
    assert {hedge.choose([0, 2], np.zeros((2, 1)), rng) for _ in range(50)} == {0}


def _run(space: Space, n: int, seed: int, workers: int = 1, **options) -> list[dict]:
    """n evaluations with `workers` points out at once (each ask sees workers - 1 pending)."""
    s = make_suggester("gp", space, seed=seed, acquisition="hedge", n_startup=5, **options)
    running: list[dict] = []
    out = []
    while len(out) < n:
        while len(running) < workers:
            running.append(s.suggest(running))
        p = running.pop(0)
        s.observe(p, _branin(p))
        out.append(p)
    return out


def test_hedge_is_deterministic_for_a_seed_and_proposes_no_point_twice():
    space = Space.from_dict(BRANIN)
    first = _run(space, 16, seed=11, workers=3)
    assert first == _run(space, 16, seed=11, workers=3)
    assert len({space.key(p) for p in first}) == 16
    assert first != _run(space, 16, seed=12, workers=3)


def test_hedge_learns_from_both_members_and_finds_branins_basin():
    space = Space.from_dict(BRANIN)
    s = make_suggester("gp", space, seed=0, acquisition="hedge", n_startup=5)
    values = []
    for _ in range(30):
        p = s.suggest()
        values.append(_branin(p))
        s.observe(p, values[-1])
    assert s._hedge is not None and s._hedge.members == PORTFOLIO
    assert np.all(s._hedge.gains != 0.0)  # every member was credited
    assert min(values) < 0.5  # f* = 0.398


def test_hedge_runs_with_the_joint_model_over_levels():
    space = Space.from_dict(BRANIN)
    s = make_suggester("gp", space, seed=2, acquisition="hedge", n_startup=4,
                       fidelity="joint", max_resource=9)
    rng = np.random.default_rng(0)
    for _ in range(8):
        p = space.sample(rng)
        for level in (1, 3):
            s.observe(p, _branin(p) + 10.0 / level, resource=level)
        s.observe(p, _branin(p))
    for _ in range(3):
        p = s.suggest()
        s.observe(p, _branin(p))
    assert np.all(s._hedge.gains != 0.0)


def test_hedge_rejects_fantasies():
    with pytest.raises(ValueError, match="fantasy"):
        make_suggester("gp", Space.from_dict(BRANIN), acquisition="hedge", pending="fantasy")


def test_every_nominee_is_a_free_point_and_the_chosen_one_is_proposed():
    space = Space.from_dict({"a": {"type": "int", "low": 0, "high": 6},
                             "b": {"type": "float", "low": 0.0, "high": 1.0, "step": 0.25}})
    s = make_suggester("gp", space, seed=3, n_startup=4)
    seen: set = set()
    for _ in range(20):
        p = s.suggest()
        assert s._hedge is not None
        if s._hedge._last is not None:
            _, nominees = s._hedge._last
            keys = {space.key(space.from_unit(x)) for x in nominees}
            assert not keys & seen  # never an observed point (the incumbent, say)
            assert space.key(p) in keys
        seen.add(space.key(p))
        s.observe(p, (p["a"] - 4) ** 2 + (p["b"] - 0.5) ** 2)


def test_gp_grid_with_the_hedge_walks_a_grid_to_its_end_even_when_a_member_has_nothing_free():
    space = Space.from_dict({"x": {"type": "float", "low": 0.0, "high": 1.0, "step": 0.1},
                             "n": {"type": "int", "low": 0, "high": 5}})
    # A grid above max_enumerate is searched locally from one random point, so late in the
    # walk a member's ranking can hold only taken points.
    s = make_suggester("gp-grid", space, seed=0, acquisition="hedge", n_startup=5,
                       max_enumerate=10, n_random=1)
    keys = set()
    with pytest.raises(SearchExhausted):
        while True:
            p = s.suggest()
            assert space.key(p) not in keys
            keys.add(space.key(p))
            s.observe(p, math.sin(7 * p["x"]) + 0.3 * p["n"])
    assert len(keys) == space.grid_size() == 66


def test_fantasies_alone_get_log_ei_so_older_study_files_still_load():
    s = make_suggester("gp", Space.from_dict(BRANIN), pending="fantasy")
    assert s.acquisition == "logei" and s._hedge is None
