"""`hpod simulate`: a study replayed on a virtual clock with the daemon's own policy, exactly."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import pytest

from hpod.cli import main
from hpod.decision import Decision
from hpod.schedule.landscape import SyntheticCurves
from hpod.schedule.simulate import Curve
from hpod.schedule.rungs import rung_levels
from hpod.simulation import SimulationError, simulate_study
from hpod.space import Space
from hpod.spec import load_study_file, parse_study
from hpod.store.records import TrialState
from hpod.study_policy import StudyPolicy

ROOT = Path(__file__).resolve().parents[2]
GOOD = ROOT / "tests" / "fixtures" / "studies" / "good"
EXAMPLES = [ROOT / "examples" / "quick" / "quick.toml",
            ROOT / "examples" / "digits_cnn" / "digits_cnn.toml", GOOD / "digits.toml"]


def spec_of(tmp_path: Path, **overrides: Any):
    table: dict[str, Any] = {
        "name": "sim", "command": ["python", "-c", "pass"],
        "objective": {"metric": "loss", "direction": "minimize"},
        "budget": {"trials": 40}, "parallel": 4, "seed": 1,
        "space": {"lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
                  "act": {"type": "categorical", "choices": ["relu", "tanh"]}},
        "scheduler": {"kind": "asha", "max_resource": 27},
    }
    table.update(overrides)
    return parse_study(table, path=tmp_path / "sim.toml")


def simulate_cli(capsys, *args: str) -> str:
    assert main(["simulate", *args]) == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_the_command_replays_example_studies_exactly(capsys, path: Path) -> None:
    first = simulate_cli(capsys, str(path))
    assert first == simulate_cli(capsys, str(path))
    assert first != simulate_cli(capsys, str(path), "--seed", "1")
    assert "virtual time" in first and "best " in first
    doc = json.loads(simulate_cli(capsys, str(path), "--json", "--workers", "3"))
    spec = load_study_file(path)
    assert doc["study"] == spec.name and doc["workers"] == 3
    assert doc["trials"] == spec.budget.trials == sum(doc["states"].values())
    assert [row["started"] for row in doc["timeline"]][-1] == doc["trials"]
    best = doc["best"]
    assert set(best["params"]) == set(spec.space.names)
    values = [row["best"] for row in doc["timeline"] if row["best"] is not None]
    better = max if spec.objective.direction.value == "maximize" else min
    assert values[-1] == best["value"] == better(values)


def test_a_gp_study_is_exact_and_its_suggester_hears_what_the_daemon_tells_it(
        tmp_path: Path) -> None:
    spec = spec_of(tmp_path, suggester={"kind": "gp"}, budget={"trials": 24})
    policies: list[StudyPolicy] = []

    def policy(s):
        policies.append(StudyPolicy(s))
        return policies[-1]

    runs = [simulate_study(spec, policy=policy) for _ in range(2)]
    assert runs[0].result == runs[1].result and runs[0].params == runs[1].params
    # As the controller does: each trial observed once it ends, a stopped one at its rung,
    # and every value that entered a rung as it did (hpod.rung_feed).
    heard = {(spec.space.key(o.params), o.resource, o.value)
             for o in policies[0].suggester._history.history.observations}
    ended = {(spec.space.key(runs[0].params[t.trial_id]),
              None if t.state is TrialState.COMPLETE else float(t.last_step), t.last_value)
             for t in runs[0].result.trials}
    scheduler = policies[0].scheduler
    assert scheduler is not None
    at_rungs = {(spec.space.key(runs[0].params[trial_id]), float(level), value)
                for level, entries in scheduler.rungs_snapshot().items()
                for trial_id, value in entries}
    assert len(at_rungs - ended) > 0
    assert heard == ended | at_rungs


def test_asha_stops_trials_exactly_at_rung_levels(tmp_path: Path) -> None:
    spec = spec_of(tmp_path, budget={"trials": 60},
                   scheduler={"kind": "asha", "max_resource": 27, "min_resource": 1})
    sim = simulate_study(spec, workers=4)
    levels = rung_levels(1, 27, 3)
    stopped = [t for t in sim.result.trials if t.state is TrialState.STOPPED]
    complete = [t for t in sim.result.trials if t.state is TrialState.COMPLETE]
    assert len(stopped) + len(complete) == 60 and stopped and complete
    assert {t.last_step for t in stopped} <= set(levels)
    assert all(t.last_step == 27 for t in complete)
    assert sim.result.total_steps < 60 * 27 / 3


@pytest.mark.parametrize("kind", ["asha", "async-hyperband"])
def test_trials_that_cannot_checkpoint_are_never_paused(tmp_path: Path, kind: str) -> None:
    spec = spec_of(tmp_path, scheduler={"kind": kind, "max_resource": 27, "mode": "pause"})
    paused = simulate_study(spec)
    assert TrialState.PAUSED in {t.state for t in paused.result.trials}
    never = simulate_study(spec, resumable=False)
    assert Decision.PAUSE not in never.result.decisions
    assert {t.state for t in never.result.trials} == {TrialState.STOPPED, TrialState.COMPLETE}
    assert all(t.resumes == 0 for t in never.result.trials)
    assert {t.last_step for t in never.result.trials
            if t.state is TrialState.STOPPED} <= set(rung_levels(1, 27, 3))


def test_without_max_resource_a_trial_trains_its_own_epochs(tmp_path: Path) -> None:
    space = {"lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
             "epochs": {"type": "int", "low": 2, "high": 12}}
    sim = simulate_study(spec_of(tmp_path, space=space, scheduler={"kind": "fifo"}))
    for trial in sim.result.trials:
        assert trial.state is TrialState.COMPLETE
        assert trial.last_step == sim.params[trial.trial_id]["epochs"]


def test_a_study_of_unknown_length_is_refused_naming_the_file_and_the_field(tmp_path) -> None:
    spec = spec_of(tmp_path, scheduler={"kind": "median"})
    with pytest.raises(SimulationError) as error:
        simulate_study(spec)
    assert error.value.path == str(tmp_path / "sim.toml")
    assert error.value.field == "scheduler.max_resource"
    assert "Fix: set [scheduler] max_resource" in str(error.value)


def test_hours_run_on_the_virtual_clock_and_only_hours_cap_the_trials(tmp_path: Path) -> None:
    spec = spec_of(tmp_path, budget={"hours": 0.01}, scheduler={"kind": "fifo",
                                                                 "max_resource": 9})
    sim = simulate_study(spec, workers=2)
    assert 0 < max(t.started_at for t in sim.result.trials) < 36.0
    assert all(t.state is TrialState.COMPLETE for t in sim.result.trials)  # none was cut
    assert sim.capped is None or len(sim.result.trials) <= sim.capped
    huge = spec_of(tmp_path, budget={"hours": 1000.0}, scheduler={"kind": "fifo",
                                                                   "max_resource": 3})
    capped = simulate_study(huge, max_trials=None)
    assert len(capped.result.trials) == capped.capped == 1000
    assert any("at most 1000 trials" in note for note in capped.notes)


def test_the_command_reports_errors_with_the_file_the_field_and_the_fix(tmp_path, capsys):
    study = tmp_path / "sim.toml"
    study.write_text('name = "sim"\ncommand = ["python", "-c", "pass"]\n'
                     'objective = { metric = "loss", direction = "minimize" }\n'
                     'budget = { trials = 5 }\n[space]\nlr = { type = "float", low = 0.1, '
                     'high = 1.0 }\n')
    assert main(["simulate", str(study)]) == 2
    err = capsys.readouterr().err
    assert str(study) in err and "scheduler.max_resource" in err and "Fix:" in err
    assert main(["simulate", str(study), "--curves", str(tmp_path / "none.db")]) == 2
    err = capsys.readouterr().err
    assert "none.db" in err and "--curves" in err and "Fix:" in err
    with pytest.raises(SystemExit):
        main(["simulate", str(study), "--workers", "0"])


def test_synthetic_curves_are_deterministic_cross_and_cost_what_was_asked() -> None:
    space = Space.from_dict({"lr": {"type": "float", "low": 1e-5, "high": 1e-1, "log": True},
                             "units": {"type": "int", "low": 8, "high": 512, "log": True},
                             "act": {"type": "categorical", "choices": ["a", "b", "c"]}})
    curves = SyntheticCurves(space, max_resource=27, seed=3, epoch_seconds=2.0)
    import numpy as np

    rng = np.random.default_rng(0)
    points = [space.sample(rng) for _ in range(300)]
    drawn = [curves.curve(p) for p in points]
    assert drawn[0] == SyntheticCurves(space, max_resource=27, seed=3,
                                       epoch_seconds=2.0).curve(points[0])
    assert all(c.n_steps == 27 and c.steps is None for c in drawn)
    mean = sum(c.seconds_per_step for c in drawn) / len(drawn)
    assert 1.6 < mean < 2.4
    assert max(c.seconds_per_step for c in drawn) > 2 * min(c.seconds_per_step for c in drawn)
    first = sorted(range(300), key=lambda i: drawn[i].values[0])
    last = sorted(range(300), key=lambda i: drawn[i].values[-1])
    assert first[:30] != last[:30]  # curves cross: early leaders are not the final ones
    assert abs(curves.final(points[0]) - drawn[0].values[-1]) < 0.05  # noise sd 0.01
    up = SyntheticCurves(space, max_resource=27, seed=3, maximize=True, noise=0.0)
    down = SyntheticCurves(space, max_resource=27, seed=3, noise=0.0)
    assert up.curve(points[1]).values == tuple(1.0 - v for v in down.curve(points[1]).values)
    fraction = SyntheticCurves(space, max_resource=1.0, min_resource=0.25)
    assert fraction.curve(points[2]).steps == (0.25, 0.5, 0.75, 1.0)
    assert math.isfinite(fraction.final(points[2]))


def test_a_study_file_with_repeats_runs_each_configuration_once(tmp_path: Path) -> None:
    spec = spec_of(tmp_path, budget={"trials": 6}, scheduler={"kind": "fifo", "max_resource": 3})
    spec = dataclasses.replace(spec, trial=dataclasses.replace(spec.trial, repeats=3))
    sim = simulate_study(spec)
    assert len(sim.result.trials) == 6 and sim.best_trial() is not None
    assert any("repeats" in note for note in sim.notes)


class _WidthCosts:
    """Curves whose final loss depends on lr alone, while a wide network costs up to 20 times
    as much per epoch: every width is as good, and the narrow ones are cheaper."""

    def curve(self, params, max_resource=None):
        final = (math.log10(params["lr"]) + 2.5) ** 2
        values = tuple(final + 1.0 / step for step in range(1, 10))
        return Curve(values, seconds_per_step=math.exp(3.0 * params["width"]))


def test_on_a_time_budget_the_gp_is_told_what_each_trial_cost_on_the_virtual_clock(
        tmp_path: Path) -> None:
    """As the daemon does, the simulation times each report (the launch, then the curve's
    seconds per epoch) and tells the GP what each trial costs; on a budget of hours it then
    spends its picks on cheaper points."""
    space = {"lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
             "width": {"type": "float", "low": 0.0, "high": 1.0}}

    def widths_picked(cost: str) -> tuple[list[float], int]:
        spec = spec_of(tmp_path, suggester={"kind": "gp", "cost": cost, "n_startup": 6},
                       space=space, budget={"hours": 10.0, "trials": 30},
                       scheduler={"kind": "fifo", "max_resource": 9})
        policies: list[StudyPolicy] = []

        def policy(s):
            policies.append(StudyPolicy(s))
            return policies[-1]

        sim = simulate_study(spec, curves=_WidthCosts(), policy=policy, launch_seconds=2.0)
        return [p["width"] for p in sim.params[10:]], len(policies[0].suggester._cost)

    weighed, told = widths_picked("auto")
    blind, not_told = widths_picked("off")
    assert told >= 26 and not_told == 0
    assert sum(w < 0.25 for w in weighed) >= 0.7 * len(weighed)
    assert sum(weighed) < 0.5 * sum(blind)


def test_a_gp_under_a_scheduler_of_fractions_keeps_the_single_level_model(tmp_path: Path) -> None:
    """The joint model counts the resource from 1; a study whose trials train on a fraction of
    the data (0.1 to 1) gets the GP on one level instead of a daemon that cannot build it."""
    spec = spec_of(tmp_path, suggester={"kind": "gp"}, budget={"trials": 16},
                   scheduler={"kind": "asha", "resource": "fraction", "min_resource": 0.1,
                              "max_resource": 1.0})
    policy = StudyPolicy(spec)
    assert policy.suggester.fidelity == "level"  # type: ignore[attr-defined]
    sim = simulate_study(spec)
    assert len(sim.result.trials) == 16
    assert any(t.state is TrialState.STOPPED for t in sim.result.trials)
