"""The GP's joint model over (params, resource): which rows it learns from, and that it
suggests valid, new points near the optimum of the top level."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hpod.space import Space
from hpod.suggest import make_suggester
from hpod.suggest.base import Observation
from hpod.suggest.gp.fidelity import Levels, joint_training_indices


def test_every_level_of_every_point_is_a_row_and_r_acq_is_the_largest_full_level() -> None:
    obs = [Observation({"x": 0.1}, 1.0, 1), Observation({"x": 0.1}, 0.5, 3),
           Observation({"x": 0.2}, 2.0, 1), Observation({"x": 0.2}, 1.5, 1),
           Observation({"x": 0.3}, None, 1), Observation({"x": 0.1}, 0.2, None)]
    keys = [o.params["x"] for o in obs]
    idx, levels, acq = joint_training_indices(obs, keys, min_points=2)
    assert idx == [0, 1, 3, 5]  # the latest value of x=0.2 at level 1; the failure is left out
    assert levels == [1.0, 3.0, 1.0, math.inf]
    assert acq == 1.0  # only level 1 has two points
    _, _, acq_one = joint_training_indices(obs, keys, min_points=1)
    assert acq_one == math.inf


def test_levels_put_finals_on_top_and_rungs_on_a_log_scale() -> None:
    levels = Levels(27.0, [1.0, 3.0, 9.0])
    assert [levels.encode(r) for r in (1.0, 9.0, math.inf)] == pytest.approx([0.0, 2 / 3, 1.0])
    guessed = Levels(None, [1.0, 3.0, 9.0])
    assert guessed.encode(9.0) < guessed.encode(math.inf) == 1.0


def test_the_joint_gp_finds_the_optimum_of_the_final_level() -> None:
    space = Space.from_dict({"x": {"type": "float", "low": 0, "high": 1},
                             "y": {"type": "float", "low": 0, "high": 1},
                             "c": {"type": "categorical", "choices": ["a", "b"]}})
    gp = make_suggester("gp", space, seed=1, fidelity="joint", max_resource=27)
    rng = np.random.default_rng(0)

    def loss(p: dict, r: float) -> float:
        return (p["x"] - 0.3) ** 2 + (p["y"] - 0.7) ** 2 + (0.1 if p["c"] == "a" else 0) + 1 / r

    seen = set()
    for _ in range(40):
        p = gp.suggest()
        key = (p["x"], p["y"], p["c"])
        assert key not in seen
        seen.add(key)
        reached = (1, 3, 9, 27)[int(rng.integers(0, 4))]
        for level in (1, 3, 9, 27):
            if level > reached:
                break
            gp.observe(p, loss(p, level), None if level == 27 else level)
    best = gp.suggest()
    assert best["c"] == "b" and abs(best["x"] - 0.3) < 0.15 and abs(best["y"] - 0.7) < 0.15


def test_bad_fidelity_options_are_refused() -> None:
    space = Space.from_dict({"x": {"type": "float", "low": 0, "high": 1}})
    with pytest.raises(ValueError, match="fidelity"):
        make_suggester("gp", space, fidelity="both")
    with pytest.raises(ValueError, match="max_resource"):
        make_suggester("gp", space, fidelity="joint", max_resource=1)


@pytest.mark.parametrize("given, expected", [(None, 27.0), (81, 81.0)])
def test_the_joint_gp_takes_the_schedulers_max_resource_unless_told(tmp_path, given,
                                                                     expected) -> None:
    from hpod.spec import parse_study
    from hpod.study_policy import StudyPolicy

    options = {"kind": "gp", "fidelity": "joint"}
    if given is not None:
        options["max_resource"] = given
    spec = parse_study({
        "name": "joint", "command": ["python", "-c", "pass"],
        "objective": {"metric": "loss", "direction": "minimize"}, "budget": {"trials": 5},
        "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}}, "suggester": options,
        "scheduler": {"kind": "asha", "min_resource": 1, "max_resource": 27},
    }, path=tmp_path / "joint.toml")
    assert StudyPolicy(spec).suggester.max_resource == expected  # type: ignore[attr-defined]


@pytest.mark.parametrize("scheduler, given, expected", [
    ("asha", None, "joint"), ("median", None, "joint"), ("fifo", None, "level"),
    ("asha", "level", "level"), ("fifo", "joint", "joint")])
def test_under_a_scheduler_the_gp_models_every_level_unless_told(tmp_path, scheduler, given,
                                                                expected) -> None:
    from hpod.spec import parse_study
    from hpod.study_policy import StudyPolicy

    options = {"kind": "gp"} if given is None else {"kind": "gp", "fidelity": given}
    table = {"kind": scheduler}
    if scheduler != "fifo":
        table["max_resource"] = 27
    if scheduler == "asha":
        table["min_resource"] = 1
    spec = parse_study({
        "name": "joint", "command": ["python", "-c", "pass"],
        "objective": {"metric": "loss", "direction": "minimize"}, "budget": {"trials": 5},
        "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}}, "suggester": options,
        "scheduler": table,
    }, path=tmp_path / "joint.toml")
    suggester = StudyPolicy(spec).suggester
    assert suggester.fidelity == expected  # type: ignore[attr-defined]
    if expected == "joint" and scheduler != "fifo":
        assert suggester.max_resource == 27.0  # type: ignore[attr-defined]
