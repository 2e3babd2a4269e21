"""Trials that cannot checkpoint are never paused: the declaration on the wire, the client that
sends it, and the scheduler's stop-mode answer in pause mode; plus the policy's rung feed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hpod import make_scheduler
from hpod.decision import Decision
from hpod.schedule.curves import power_law_curves
from hpod.spec import parse_study
from hpod.store.records import TrialState
from hpod.study_policy import StudyPolicy
from hpod.trial import TrialClient
from hpod.wire import Declaration, Report, WireProblem, encode_declaration, parse_line, parse_lines

from helpers import Recorder, record


def test_the_declaration_is_its_own_message_on_the_wire() -> None:
    assert parse_line(b'{"resumable": true}\n') == Declaration(True)
    assert parse_line(encode_declaration(resumable=False)) == Declaration(False)
    assert isinstance(parse_line(b'{"resumable": "yes"}'), WireProblem)
    burst = [encode_declaration(resumable=True).rstrip(), b'{"step": 1, "loss": 0.5}']
    assert parse_lines(burst) == [Declaration(True), Report(1, {"loss": 0.5})]
    with pytest.raises(ValueError, match="resumable"):
        from hpod.wire import encode_report

        encode_report(1, {"resumable": 1.0})


def test_the_client_declares_on_the_report_pipe_and_is_silent_by_hand() -> None:
    read, write = os.pipe()
    try:
        TrialClient({"HPOD_REPORT_FD": str(write)}).declare_resumable()
        assert parse_line(os.read(read, 1024)) == Declaration(True)
    finally:
        os.close(read)
        os.close(write)
    TrialClient({}).declare_resumable()  # not under hpod: nothing to tell, no error


def replay_reports(scheduler, reports) -> list[Decision]:
    decisions = []
    for trial_id, step, value in reports:
        decisions.append(scheduler.on_report(trial_id, step, value))
    return decisions


@pytest.mark.parametrize("kind", ["asha", "async-hyperband"])
def test_a_trial_that_cannot_pause_gets_the_stop_mode_answers(kind: str) -> None:
    """Every trial unable to checkpoint: pause mode answers exactly as stop mode does."""
    curves = power_law_curves(30, n_steps=9, seed=4, noise=0.02)
    stop = make_scheduler(kind, max_resource=9, mode="stop")
    pause = make_scheduler(kind, max_resource=9, mode="pause")
    for trial_id in range(30):
        stop.on_start(trial_id)
        pause.on_start(trial_id)
        pause.cannot_pause(trial_id)
    reports = [(t, step, curves[t].values[step - 1]) for step in range(1, 10)
               for t in range(30)]
    got = replay_reports(pause, reports)
    want = replay_reports(stop, reports)
    assert got == want and Decision.STOP in got and Decision.PAUSE not in got
    assert pause.next_resume() is None  # the ones that went on count as promoted


def test_only_the_trials_that_cannot_pause_lose_the_pause() -> None:
    scheduler = make_scheduler("asha", max_resource=9, mode="pause")
    for trial_id in range(6):
        scheduler.on_start(trial_id)
    scheduler.cannot_pause(5)
    answers = replay_reports(scheduler, [(t, 1, 1.0 - t / 10) for t in range(6)])
    # Falling losses: trial 5 is the best at rung 1 and, unable to pause, goes on at once.
    assert answers[5] is Decision.CONTINUE
    assert Decision.PAUSE in answers[:5]
    worst = make_scheduler("asha", max_resource=9, mode="pause")
    for trial_id in range(6):
        worst.on_start(trial_id)
    worst.cannot_pause(5)
    answers = replay_reports(worst, [(t, 1, t / 10) for t in range(6)])
    assert answers[5] is Decision.STOP


def test_synchronous_halving_still_pauses_a_trial_that_cannot_checkpoint() -> None:
    """sh retrains a promoted trial from scratch, as scikit-learn's halving search does."""
    scheduler = make_scheduler("sh", max_resource=9, cohort_size=9)
    for trial_id in range(9):
        scheduler.on_start(trial_id)
        scheduler.cannot_pause(trial_id)
    assert scheduler.on_report(0, 1, 0.5) is Decision.PAUSE


def test_the_policy_never_pauses_a_trial_that_cannot_checkpoint(tmp_path: Path) -> None:
    spec = parse_study({
        "name": "nopause", "command": ["python", "-c", "pass"],
        "objective": {"metric": "loss", "direction": "minimize"}, "budget": {"trials": 9},
        "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
        "scheduler": {"kind": "asha", "max_resource": 9, "mode": "pause"},
    }, path=tmp_path / "nopause.toml")
    suggester = Recorder(spec.space)
    policy = StudyPolicy(spec, suggester=suggester)
    for trial_id in range(4):
        policy.on_start(record(trial_id, {"x": trial_id / 10}))
    # Trials 0 to 2 cannot checkpoint: stop mode's answers (rung 1 holds fewer than 3 values,
    # so everybody continues; then the worst of 3 stops); trial 3 can, and pauses.
    assert policy.decide(0, 1.0, 0.3, False) is Decision.CONTINUE
    assert policy.decide(0, 2.0, 0.25, False) is Decision.CONTINUE
    assert policy.decide(1, 1.0, float("nan"), False) is Decision.CONTINUE
    assert policy.decide(2, 1.0, 0.9, False) is Decision.STOP
    assert policy.decide(3, 1.0, 0.95) is Decision.PAUSE
    assert suggester.heard == []  # nothing is told while a suggestion may be running
    policy.observe(record(2, {"x": 0.2}, TrialState.STOPPED, 0.9, 1))
    # First the rung values queued since (a NaN never reaches a model), then the trial's end.
    assert suggester.heard == [({"x": 0.0}, 0.3, 1.0), ({"x": 0.2}, 0.9, 1.0),
                               ({"x": 0.3}, 0.95, 1.0), ({"x": 0.2}, 0.9, 1.0)]
