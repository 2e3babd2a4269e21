"""Rung values of running trials reach the suggester (BOHB / MOBSTER style): at the next observe,
never in the middle of a suggestion, and again after a restart from the scheduler's rebuilt
rungs; never with fifo, never with repeats, never a NaN."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hpod.decision import Decision
from hpod.schedule.base import Ended, Reported, Started
from hpod.spec import parse_study
from hpod.store.records import TrialState
from hpod.study_policy import StudyPolicy

from helpers import Recorder, record


def study(tmp_path: Path, scheduler: dict[str, Any], **extra: Any):
    return parse_study({
        "name": "rungs", "command": ["python", "-c", "pass"],
        "objective": {"metric": "loss", "direction": "minimize"}, "budget": {"trials": 50},
        "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
        "scheduler": scheduler, **extra,
    }, path=tmp_path / "rungs.toml")


ASHA = {"kind": "asha", "min_resource": 1, "max_resource": 9, "reduction_factor": 3}


def start(policy: StudyPolicy, n: int) -> None:
    for trial_id in range(n):
        policy.on_start(record(trial_id, {"x": trial_id / 10}))


def test_a_value_that_enters_a_rung_is_told_at_the_next_observe(tmp_path: Path) -> None:
    suggester = Recorder(None)
    policy = StudyPolicy(study(tmp_path, ASHA), suggester=suggester)
    start(policy, 3)
    assert policy.decide(0, 1, 0.5) is Decision.CONTINUE  # enters rung 1
    policy.decide(0, 2, 0.45)  # between rungs: nothing to tell
    policy.decide(0, 3, 0.4)  # enters rung 3
    policy.decide(1, 1, 0.7)
    assert suggester.heard == []
    policy.observe(record(2, {"x": 0.2}, TrialState.FAILED))
    assert suggester.heard == [({"x": 0.0}, 0.5, 1.0), ({"x": 0.0}, 0.4, 3.0),
                               ({"x": 0.1}, 0.7, 1.0), ({"x": 0.2}, None, None)]
    policy.tell_rungs()  # drained: told once
    assert len(suggester.heard) == 4


def test_a_nan_at_a_rung_is_never_told(tmp_path: Path) -> None:
    suggester = Recorder(None)
    policy = StudyPolicy(study(tmp_path, ASHA), suggester=suggester)
    start(policy, 1)
    policy.decide(0, 1, float("nan"))
    policy.tell_rungs()
    assert suggester.heard == []


def test_a_restarted_policy_tells_the_rungs_it_rebuilt(tmp_path: Path) -> None:
    spec = study(tmp_path, ASHA)
    live = StudyPolicy(spec, suggester=Recorder(None))
    start(live, 4)
    # Trial 3's first report jumps over rung 1: it counts for rung 3 only, live and rebuilt.
    reports = [(0, 1, 0.5), (1, 1, 0.6), (2, 1, 0.9), (0, 3, 0.35), (3, 4, 0.2)]
    for trial_id, step, value in reports:
        live.decide(trial_id, step, value)
    live.tell_rungs()
    told_live = sorted(live.suggester.heard, key=repr)  # type: ignore[attr-defined]

    restarted = StudyPolicy(spec, suggester=Recorder(None))
    events = [*(Started(i) for i in range(4)), *(Reported(*r) for r in reports), Ended(2)]
    trials = [record(i, {"x": i / 10}) for i in range(4)]
    restarted.replay(events, trials)
    restarted.tell_rungs()
    assert sorted(restarted.suggester.heard, key=repr) == told_live  # type: ignore[attr-defined]
    assert len(told_live) == 5 and ({"x": 0.3}, 0.2, 3.0) in told_live


def test_a_stopped_trial_is_observed_at_the_rung_it_entered(tmp_path: Path) -> None:
    suggester = Recorder(None)
    policy = StudyPolicy(study(tmp_path, ASHA), suggester=suggester)
    start(policy, 4)
    for trial_id, value in enumerate((0.1, 0.2, 0.3)):
        policy.decide(trial_id, 3, value)
    # Step 4 (say a resource metric's unit differs from rung to rung) enters rung 3, the worst.
    assert policy.decide(3, 4, 0.9) is Decision.STOP
    policy.observe(record(3, {"x": 0.3}, TrialState.STOPPED, 0.9, 4))
    assert suggester.heard[-1] == ({"x": 0.3}, 0.9, 3.0)


def test_fifo_and_repeats_tell_only_finished_trials(tmp_path: Path) -> None:
    for spec in (study(tmp_path, {"kind": "fifo"}),
                 study(tmp_path, ASHA, trial={"repeats": 2})):
        suggester = Recorder(None)
        policy = StudyPolicy(spec, suggester=suggester)
        start(policy, 2)
        policy.decide(0, 1, 0.5)
        policy.decide(1, 1, 0.6)
        policy.tell_rungs()
        assert suggester.heard == []
