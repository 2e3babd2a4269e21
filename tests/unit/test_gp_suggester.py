"""kind = "gp" and "gp-grid" through make_suggester: decoding, pending points, failures, seeds."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hpod.errors import SearchExhausted, SpaceError
from hpod.space import Space
from hpod.suggest import make_suggester

MIXED = {"lr": {"type": "float", "low": 1e-5, "high": 1e-1, "log": True},
         "units": {"type": "int", "low": 16, "high": 512, "log": True},
         "layers": {"type": "int", "low": 1, "high": 4},
         "act": {"type": "categorical", "choices": ["relu", "tanh", "gelu"]},
         "dropout": {"type": "float", "low": 0.0, "high": 0.5, "step": 0.1},
         "epochs": 30}


def _mixed_objective(p: dict) -> float:
    return ((math.log10(p["lr"]) + 3) ** 2 + (math.log2(p["units"]) - 7) ** 2 / 4
            + (p["layers"] - 3) ** 2 + (p["act"] != "gelu") + abs(p["dropout"] - 0.2))


def _run(kind: str, space: Space, n: int, seed: int = 0, objective=_mixed_objective, **options) -> list[dict]:
    s = make_suggester(kind, space, seed=seed, **options)
    out = []
    for _ in range(n):
        p = s.suggest()
        s.observe(p, objective(p))
        out.append(p)
    return out


def test_suggestions_decode_to_valid_typed_values_and_round_trip():
    space = Space.from_dict(MIXED)
    points = _run("gp", space, 14, n_startup=6)
    for p in points:
        assert space.validate(p) == p  # on the grid, in range, fixed value included
        assert isinstance(p["units"], int) and isinstance(p["layers"], int)
        assert p["act"] in ("relu", "tanh", "gelu") and p["epochs"] == 30
        assert space.from_unit(space.to_unit(p)) == p
    assert len({space.key(p) for p in points}) == len(points)


def test_gp_improves_on_its_initial_design():
    space = Space.from_dict(MIXED)
    values = [_mixed_objective(p) for p in _run("gp", space, 24, seed=3, n_startup=8)]
    assert min(values[8:]) < min(values[:8])


def test_maximize_direction_is_respected():
    space = Space.from_dict({"x": {"type": "float", "low": 0.0, "high": 1.0}})
    points = _run("gp", space, 12, direction="maximize", n_startup=4,
                  objective=lambda p: -(p["x"] - 0.3) ** 2)
    assert abs(points[-1]["x"] - 0.3) < 0.05


@pytest.mark.parametrize("pending_kind", ["believer", "liar", "fantasy"])
def test_pending_points_are_never_reproposed_until_the_space_is_exhausted(pending_kind):
    space = Space.from_dict({"a": {"type": "int", "low": 0, "high": 3},
                             "b": {"type": "categorical", "choices": ["x", "y", "z"]}})
    acquisition = "logei" if pending_kind == "fantasy" else "hedge"
    s = make_suggester("gp", space, seed=1, n_startup=3, pending=pending_kind, n_candidates=64,
                       acquisition=acquisition)
    running: list[dict] = []
    proposed = []
    while True:
        try:
            p = s.suggest(running)
        except SearchExhausted:
            break
        assert space.key(p) not in {space.key(q) for q in running}
        proposed.append(space.key(p))
        running.append(p)
        if len(running) == 4:  # four workers: tell the oldest, then ask again
            done = running.pop(0)
            s.observe(done, done["a"] + (done["b"] == "y"))
    assert sorted(proposed) == sorted(set(proposed))
    assert len(proposed) == space.grid_size()


def test_failed_points_are_excluded_and_never_reproposed():
    space = Space.from_dict({"a": {"type": "int", "low": 0, "high": 5},
                             "b": {"type": "categorical", "choices": ["x", "y"]}})
    s = make_suggester("gp", space, seed=2, n_startup=3)
    failed = set()
    for i in range(space.grid_size()):
        p = s.suggest()
        assert space.key(p) not in failed
        if i % 3 == 0:
            failed.add(space.key(p))
            s.observe(p, None)
        else:
            s.observe(p, float(p["a"]))
    with pytest.raises(SearchExhausted):
        s.suggest()


def test_a_fixed_seed_gives_the_same_sequence():
    space = Space.from_dict(MIXED)
    a = _run("gp", space, 10, seed=7, n_startup=5)
    b = _run("gp", space, 10, seed=7, n_startup=5)
    c = _run("gp", space, 10, seed=8, n_startup=5)
    assert a == b
    assert a != c


def test_values_at_resources_train_on_one_level():
    space = Space.from_dict({"x": {"type": "float", "low": 0.0, "high": 1.0}})
    s = make_suggester("gp", space, seed=0, n_startup=2)
    for i, x in enumerate(np.linspace(0.05, 0.95, 6)):
        # Low-resource values point the wrong way; the final ones (resource None) decide.
        s.observe({"x": float(x)}, float(-x), resource=1)
        if i < 5:
            s.observe({"x": float(x)}, float((x - 0.5) ** 2))
    p = s.suggest()
    assert 0.2 < p["x"] < 0.8


def test_a_running_trial_told_at_a_rung_counts_once_toward_the_design():
    space = Space.from_dict({"x": {"type": "float", "low": 0.0, "high": 1.0},
                             "y": {"type": "float", "low": 0.0, "high": 1.0}})
    fresh = make_suggester("gp", space, seed=3, n_startup=5)
    design: list[dict] = []
    for _ in range(6):  # without observations every point comes from the design
        design.append(fresh.suggest(design))
    s = make_suggester("gp", space, seed=3, n_startup=5)
    running = design[:4]
    for params in running[:2]:  # two of the four running trials have entered rung 1
        s.observe(params, float(params["x"]), resource=1)
    # 4 distinct points, not 2 + 4: the design goes on.
    assert s.suggest(running) == design[4]


def test_options_are_validated():
    space = Space.from_dict(MIXED)
    with pytest.raises(ValueError, match="acquisition"):
        make_suggester("gp", space, acquisition="pi")
    with pytest.raises(ValueError, match="pending"):
        make_suggester("gp", space, pending="oracle")
    with pytest.raises(ValueError):
        make_suggester("gp", space, acquisition="ucb", pending="fantasy")
    with pytest.raises(ValueError, match="n_startup"):
        make_suggester("gp", space, n_startup=-1)
    ucb = _run("gp", space, 8, acquisition="ucb", beta=1.0, n_startup=5)
    assert len({space.key(p) for p in ucb}) == 8


def test_gp_grid_proposes_each_point_exactly_once_then_is_exhausted():
    space = Space.from_dict({"a": {"type": "int", "low": 0, "high": 4},
                             "b": {"type": "categorical", "choices": ["x", "y", "z"]},
                             "c": {"type": "float", "low": 0.0, "high": 1.0, "step": 0.5}})
    s = make_suggester("gp-grid", space, seed=0, n_startup=4)
    keys = []
    running: list[dict] = []
    while True:
        try:
            p = s.suggest(running)
        except SearchExhausted:
            break
        keys.append(space.key(p))
        running.append(p)
        if len(running) == 2:
            done = running.pop(0)
            s.observe(done, (done["a"] - 2) ** 2 + done["c"])
    assert len(keys) == len(set(keys)) == space.grid_size() == 45
    for p in running:
        s.observe(p, 0.0)
    with pytest.raises(SearchExhausted):
        s.suggest()


def test_gp_grid_ranks_the_grid_and_searches_large_grids_locally():
    space = Space.from_dict({f"x{i}": {"type": "int", "low": 0, "high": 9} for i in range(5)})
    objective = lambda p: sum((v - 6) ** 2 for v in p.values())  # noqa: E731
    for options in ({}, {"max_enumerate": 100, "n_random": 256}):  # 1e5 points: local search
        points = _run("gp-grid", space, 30, objective=objective, n_startup=8, **options)
        assert len({space.key(p) for p in points}) == 30
        assert min(objective(p) for p in points[8:]) < min(objective(p) for p in points[:8])


def test_gp_grid_needs_a_finite_space():
    with pytest.raises(SpaceError):
        make_suggester("gp-grid", Space.from_dict({"x": {"type": "float", "low": 0.0, "high": 1.0}}))


def test_make_suggester_lists_and_checks_the_options():
    from hpod.suggest import suggester_options

    for kind in ("gp", "gp-grid", "tpe"):
        options = suggester_options(kind)
        assert options and "n_startup" in options
    assert {"acquisition", "beta", "pending"} <= suggester_options("gp-grid")
    grid = Space.from_dict({"a": {"type": "int", "low": 0, "high": 3}})
    with pytest.raises(ValueError, match="does not take"):
        make_suggester("gp-grid", grid, n_candidates=5)


def test_the_gp_fits_with_blas_capped_to_its_threads() -> None:
    # The daemon's GP shares the machine with the trials: its fits must not take every core.
    from threadpoolctl import threadpool_info

    from hpod.suggest.gp.model import BlasThreads

    def blas_threads() -> set[int]:
        return {lib["num_threads"] for lib in threadpool_info() if lib["user_api"] == "blas"}

    assert blas_threads(), "numpy's BLAS is not visible to threadpoolctl"
    with BlasThreads(1).limit():
        assert blas_threads() == {1}


def test_values_near_the_float_limit_leave_the_gp_proposing_points() -> None:
    # A diverged trial may report 1e308: the targets' quartiles and spread overflowed, and the
    # study failed with "Probabilities contain NaN".
    from hpod.suggest.gp.targets import gp_targets

    targets = gp_targets(np.array([1.5e308, -1.7e308, 0.3, 0.2, 1.5e308, 0.1]))
    assert np.all(np.isfinite(targets)) and abs(targets.std() - 1) < 1e-9
    space = Space.from_dict({"x": {"type": "float", "low": 0.0, "high": 1.0}})
    values = iter([1.5e308, -1.7e308, 1.5e308, 0.5, 1.5e308, -1.7e308, 0.2, 1.5e308, 0.7, 1.0])
    points = _run("gp", space, 10, objective=lambda p: next(values))
    assert len({p["x"] for p in points}) == 10


def test_the_kernel_is_refitted_past_the_data_cap() -> None:
    # Past max_points the model is fitted on max_points rows; counted by those, the cadence
    # never saw a new point and the kernel froze for the rest of the night.
    space = Space.from_dict({"a": {"type": "float", "low": -5.0, "high": 5.0}})
    gp = make_suggester("gp", space, seed=0, max_points=20, refit_every=5)
    for _ in range(60):
        params = gp.suggest()
        gp.observe(params, (params["a"] - 1.0) ** 2)
    assert gp.state()["model"]["fitted_at"] >= 55
