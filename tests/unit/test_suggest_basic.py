"""The ask/tell facade with the random and grid suggesters."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from hpod import Space, make_suggester
from hpod.errors import SearchExhausted, SpaceError
from hpod.store.records import Direction
from hpod.suggest import suggester_kinds, suggester_options
from hpod.suggest import grid as grid_module
from hpod.suggest.base import History, parse_direction

MIXED = {
    "lr": {"type": "float", "low": 1e-5, "high": 1e-1, "log": True},
    "units": {"type": "int", "low": 16, "high": 512, "log": True},
    "act": {"type": "categorical", "choices": ["relu", "tanh", "gelu"]},
    "epochs": 30,
}
SMALL = {  # 3 * 2 = 6 points
    "a": {"type": "int", "low": 0, "high": 2},
    "b": {"type": "categorical", "choices": ["x", "y"]},
    "epochs": 5,
}


def run(suggester, n: int, objective=lambda p: 0.0) -> list[dict]:
    """Sequential ask/tell."""
    out = []
    for _ in range(n):
        params = suggester.suggest()
        suggester.observe(params, objective(params))
        out.append(params)
    return out


def propose_all(suggester, limit: int = 10_000) -> list[dict]:
    """Ask until exhausted, every earlier proposal still pending."""
    pending: list[dict] = []
    for _ in range(limit):
        try:
            pending.append(suggester.suggest(pending))
        except SearchExhausted:
            return pending
    raise AssertionError("never exhausted")


# -- make_suggester --------------------------------------------------------------------------

def test_make_suggester_unknown_kind_lists_kinds_and_guesses() -> None:
    with pytest.raises(ValueError) as info:
        make_suggester("grd", Space.from_dict(SMALL))
    assert "Did you mean 'grid'?" in str(info.value)
    assert "random, grid" in str(info.value)
    assert {"random", "grid"} <= set(suggester_kinds())


def test_make_suggester_unknown_option() -> None:
    with pytest.raises(ValueError, match="does not take option"):
        make_suggester("random", Space.from_dict(SMALL), n_startup=3)
    assert suggester_options("random") == frozenset()
    assert suggester_options("no-such-kind") is None


def test_make_suggester_direction_and_seed_are_checked() -> None:
    space = Space.from_dict(SMALL)
    assert make_suggester("random", space, direction="max").direction is Direction.MAXIMIZE
    with pytest.raises(ValueError, match="direction"):
        make_suggester("random", space, direction="sideways")
    with pytest.raises(ValueError, match="seed"):
        make_suggester("random", space, seed=-1)
    assert parse_direction(Direction.MINIMIZE) is Direction.MINIMIZE


def test_grid_over_a_float_without_step_fails_at_construction() -> None:
    with pytest.raises(SpaceError) as info:
        make_suggester("grid", Space.from_dict(MIXED))
    assert info.value.field == "space.lr"


# -- both kinds ------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["random", "grid"])
def test_deterministic_for_a_seed(kind: str) -> None:
    space = Space.from_dict(SMALL if kind == "grid" else MIXED)
    a = run(make_suggester(kind, space, seed=3), 5)
    b = run(make_suggester(kind, space, seed=3), 5)
    c = run(make_suggester(kind, space, seed=4), 5)
    assert a == b
    assert a != c


@pytest.mark.parametrize("kind", ["random", "grid"])
def test_replaying_the_history_continues_the_same_search(kind: str) -> None:
    """A restarted daemon replays observations and pending points into a fresh suggester."""
    space = Space.from_dict({**SMALL, "a": {"type": "int", "low": 0, "high": 50}}
                            if kind == "grid" else MIXED)
    original = make_suggester(kind, space, seed=11)
    done = run(original, 4)
    running = original.suggest()
    after = original.suggest([running])

    fresh = make_suggester(kind, space, seed=11)
    for params in done:
        fresh.observe(params, 0.0)
    assert fresh.suggest([running]) == after


@pytest.mark.parametrize("kind", ["random", "grid"])
def test_points_are_full_and_valid(kind: str) -> None:
    space = Space.from_dict(SMALL if kind == "grid" else MIXED)
    for params in run(make_suggester(kind, space, seed=0), 6):
        assert list(params) == space.names
        assert space.validate(params) == params


@pytest.mark.parametrize("kind", ["random", "grid"])
def test_finite_space_never_repeats_pending_then_is_exhausted(kind: str) -> None:
    space = Space.from_dict(SMALL)
    points = propose_all(make_suggester(kind, space, seed=5))
    keys = [space.key(p) for p in points]
    assert len(keys) == len(set(keys)) == 6


@pytest.mark.parametrize("kind", ["random", "grid"])
def test_failed_points_are_never_proposed_again(kind: str) -> None:
    space = Space.from_dict(SMALL)
    suggester = make_suggester(kind, space, seed=2)
    failed = [suggester.suggest() for _ in range(1)]
    suggester.observe(failed[0], None)
    rest = propose_all(suggester)
    assert len(rest) == 5
    assert space.key(failed[0]) not in {space.key(p) for p in rest}


@pytest.mark.parametrize("kind", ["random", "grid"])
def test_observing_a_point_outside_the_space_is_refused(kind: str) -> None:
    suggester = make_suggester(kind, Space.from_dict(SMALL), seed=0)
    with pytest.raises(SpaceError):
        suggester.observe({"a": 7, "b": "x"}, 1.0)


# -- random ----------------------------------------------------------------------------------

def test_random_is_log_uniform_in_a_continuous_space() -> None:
    space = Space.from_dict({"lr": {"type": "float", "low": 1e-4, "high": 1.0, "log": True}})
    values = np.array([p["lr"] for p in run(make_suggester("random", space, seed=0), 400)])
    assert values.min() >= 1e-4 and values.max() <= 1.0
    assert 150 < np.sum(values < 1e-2) < 250  # half the draws below the geometric middle


def test_random_finds_the_last_free_point_of_a_nearly_full_space() -> None:
    space = Space.from_dict({"i": {"type": "int", "low": 0, "high": 999}})
    suggester = make_suggester("random", space, seed=0)
    for i in range(1000):
        if i != 617:
            suggester.observe({"i": i}, float(i))
    assert suggester.suggest() == {"i": 617}
    with pytest.raises(SearchExhausted):
        suggester.suggest([{"i": 617}])


def test_random_without_pending_still_moves_on() -> None:
    """Asking twice without telling gives two draws, not the same one."""
    suggester = make_suggester("random", Space.from_dict(MIXED), seed=1)
    assert suggester.suggest() != suggester.suggest()


# -- grid ------------------------------------------------------------------------------------

def test_grid_order_is_a_seeded_permutation_of_the_product() -> None:
    space = Space.from_dict({"a": {"type": "int", "low": 0, "high": 3},
                             "b": {"type": "float", "low": 0.0, "high": 1.0, "step": 0.5},
                             "c": {"type": "categorical", "choices": [True, False]}})
    orders = {seed: run(make_suggester("grid", space, seed=seed), 24) for seed in (0, 0, 1)}
    product = [{"a": a, "b": b, "c": c}
               for a, b, c in itertools.product(range(4), [0.0, 0.5, 1.0], [True, False])]
    key = lambda p: (p["a"], p["b"], p["c"])  # noqa: E731
    assert sorted(orders[0], key=key) == sorted(product, key=key)
    assert orders[0] != product  # shuffled
    assert orders[0] != orders[1]
    assert run(make_suggester("grid", space, seed=0), 24) == orders[0]


def test_grid_exhausts_then_raises() -> None:
    suggester = make_suggester("grid", Space.from_dict(SMALL), seed=0)
    assert len(run(suggester, 6)) == 6
    with pytest.raises(SearchExhausted, match="all 6 grid points"):
        suggester.suggest()


def test_grid_says_when_the_rest_is_only_pending() -> None:
    suggester = make_suggester("grid", Space.from_dict(SMALL), seed=0)
    pending = [suggester.suggest()]
    for _ in range(5):
        params = suggester.suggest(pending)
        suggester.observe(params, 1.0)
    with pytest.raises(SearchExhausted, match="1 still pending"):
        suggester.suggest(pending)


def test_grid_reproposes_a_point_whose_trial_never_ran() -> None:
    suggester = make_suggester("grid", Space.from_dict(SMALL), seed=0)
    first = suggester.suggest()
    assert suggester.suggest() == first  # neither observed nor pending: offered again
    assert suggester.suggest([first]) != first


def test_grid_skips_points_observed_out_of_order() -> None:
    space = Space.from_dict(SMALL)
    order = propose_all(make_suggester("grid", space, seed=9))
    suggester = make_suggester("grid", space, seed=9)
    suggester.observe(order[1], 1.0)
    suggester.observe(order[3], 1.0)
    assert propose_all(suggester) == [order[0], order[2], order[4], order[5]]


def test_grid_order_without_a_stored_permutation_is_a_bijection(monkeypatch) -> None:
    monkeypatch.setattr(grid_module, "_PERMUTATION_LIMIT", 10)
    for n in (12, 97, 1000):
        order = grid_module.GridOrder(n, np.random.default_rng(n))
        assert sorted(order[i] for i in range(n)) == list(range(n))


def test_grid_over_an_astronomical_space_starts_at_once() -> None:
    space = Space.from_dict({f"p{i}": {"type": "int", "low": 0, "high": 99} for i in range(20)})
    points = run(make_suggester("grid", space, seed=0), 20)
    assert len({space.key(p) for p in points}) == 20


# -- History ---------------------------------------------------------------------------------

def test_history_counts_a_point_once_across_resources() -> None:
    space = Space.from_dict(SMALL)
    history = History(space)
    history.add({"a": 1, "b": "x"}, 0.5, resource=1)
    history.add({"a": 1, "b": "x", "epochs": 5}, 0.4, resource=3)
    history.add({"a": 2, "b": "x"}, None)
    assert len(history) == 3 and history.n_seen == 2
    assert history.observations[2].failed
    assert history.seen({"a": 1, "b": "x"})
    assert history.fresh_pending([{"a": 1, "b": "x"}, {"a": 0, "b": "y"}]) == {(0, 1)}
    with pytest.raises(ValueError, match="value"):
        history.add({"a": 0, "b": "x"}, "good")
