"""A restarted daemon's scheduler, rebuilt from what the store keeps, must be the live one.

The store keeps each trial's reports (with their times), its creation time, its latest start
only (`trials.started_at`) and its end; `history_events` turns that into the events a fresh
scheduler replays. A trial that was paused, promoted and resumed started several times, but
only its latest start is on record: the replay must still see it resumed, or its reports past
the rung are dropped and the rebuilt rungs differ from the live ones.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field

import pytest

from hpod import make_scheduler
from hpod.decision import Decision
from hpod.schedule.base import Ended, NoMoreTrials, Reported, Scheduler, Started
from hpod.schedule.curves import power_law_curves
from hpod.schedule.simulate import Curve, SimulationResult, simulate
from hpod.store.records import MetricPoint, TrialRecord, TrialState
from hpod.study_policy import history_events

C, S, P = Decision.CONTINUE, Decision.STOP, Decision.PAUSE


@dataclass
class _Row:
    created_at: float
    state: TrialState = TrialState.QUEUED
    started_at: float | None = None
    finished_at: float | None = None


@dataclass
class Daemon:
    """The controller's calls into a live scheduler, written to store-like rows on a clock."""

    scheduler: Scheduler
    clock: float = 0.0
    rows: dict[int, _Row] = field(default_factory=dict)
    points: dict[int, list[MetricPoint]] = field(default_factory=lambda: defaultdict(list))

    def _tick(self) -> float:
        self.clock += 1.0
        return self.clock

    def start(self, trial_id: int) -> None:
        now = self._tick()
        row = self.rows.setdefault(trial_id, _Row(created_at=now))
        row.state, row.started_at, row.finished_at = TrialState.RUNNING, now, None
        self.scheduler.on_start(trial_id)

    def report(self, trial_id: int, step: int, value: float) -> Decision:
        self.points[trial_id].append(MetricPoint(trial_id, step, "loss", value, self._tick()))
        # NOTE: the trial leaves its slot (PAUSED, STOPPED) only when the test says so: a kill
        # may come first, and history_events reads only whether a trial has finished.
        return self.scheduler.on_report(trial_id, float(step), value)

    def end(self, trial_id: int, state: TrialState = TrialState.COMPLETE) -> None:
        row = self.rows[trial_id]
        row.state, row.finished_at = state, self._tick()
        self.scheduler.on_complete(trial_id)

    def records(self) -> list[TrialRecord]:
        return [_record(trial_id, row) for trial_id, row in sorted(self.rows.items())]

    def rebuilt(self, build) -> Scheduler:
        """A fresh scheduler replaying what the store holds now (a kill -9 leaves RUNNING)."""
        fresh = build()
        fresh.replay(history_events(self.records(), self.points, "loss", None))
        return fresh


def _record(trial_id: int, row: _Row) -> TrialRecord:
    return TrialRecord(
        id=trial_id, study_id=1, number=trial_id, params={}, state=row.state, attempt=0,
        value=None, last_step=None, reason=None, exit_code=None, checkpoint=None,
        placement=None, created_at=row.created_at, started_at=row.started_at,
        finished_at=row.finished_at,
    )


def asha_pause() -> Scheduler:
    # The robustness study's scheduler: rungs 1 and 3, fully trained at 9.
    return make_scheduler("asha", max_resource=9, min_resource=1, reduction_factor=3,
                          mode="pause")


def killed_while_a_promoted_trial_runs() -> Daemon:
    """The sequence the daemon produced in test_crash_recovery (2 slots), up to the kill."""
    daemon = Daemon(asha_pause())
    daemon.start(1)
    daemon.start(2)
    assert daemon.report(1, 1, 1.046) is P
    daemon.start(3)
    assert daemon.report(2, 1, 1.002) is P
    daemon.start(4)
    assert daemon.report(3, 1, 1.075) is P  # rung 1 has 3 entries: trial 2 is promotable
    assert daemon.scheduler.next_resume() == 2
    daemon.start(2)  # resumed from its step-1 checkpoint
    assert daemon.report(4, 1, 1.039) is P
    daemon.start(5)
    assert daemon.report(2, 2, 0.502) is C
    assert daemon.report(2, 3, 0.336) is P  # rung 3 alone: nobody to compare with
    daemon.start(6)
    assert daemon.report(5, 1, 1.358) is P
    daemon.start(7)
    # Rung 1 has 6 entries, keep 2: trial 2 is promoted already, so trial 6 is next in line
    # and goes on in place (the CONTINUE-instead-of-PAUSE shortcut).
    assert daemon.report(6, 1, 1.027) is C
    assert daemon.report(6, 2, 0.527) is C
    assert daemon.report(6, 3, 0.360) is P  # then it checkpoints; the kill comes first
    return daemon


def test_replay_after_a_kill_rebuilds_the_rungs_of_promoted_trials():
    daemon = killed_while_a_promoted_trial_runs()
    fresh = daemon.rebuilt(asha_pause)
    assert fresh.rungs_snapshot() == daemon.scheduler.rungs_snapshot()
    assert fresh.rungs_snapshot()[3] == [(2, 0.336), (6, 0.360)]
    assert [fresh.next_milestone(t) for t in range(1, 8)] == [3, 9, 3, 3, 3, 9, 1]


def test_after_the_restart_trials_pause_only_at_rungs_and_go_on_like_the_live_ones():
    daemon = killed_while_a_promoted_trial_runs()
    fresh = daemon.rebuilt(asha_pause)
    live = daemon.scheduler
    # The restart requeues the two running trials: 6 from its step-3 checkpoint, 7 from
    # scratch; then new trials come. Each trains until it is told anything but CONTINUE.
    runs = [(6, range(4, 10), 0.3), (7, range(1, 10), 0.2), (8, range(1, 10), 0.25),
            (9, range(1, 10), 0.9), (10, range(1, 10), 0.1), (11, range(1, 10), 0.15)]
    told = {}
    for scheduler in (live, fresh):
        told[id(scheduler)] = decisions = []
        for trial_id, steps, x in runs:
            scheduler.on_start(trial_id)
            for step in steps:
                decision = scheduler.on_report(trial_id, step, x + 1.0 / step)
                decisions.append((trial_id, step, decision))
                if decision is not C:
                    break
        assert all(step in (1, 3) for _t, step, d in decisions if d is P), decisions
    assert told[id(fresh)] == told[id(live)]
    assert [(t, d) for t, _s, d in told[id(live)] if _s == 9] == [(6, C)]  # promoted at rung 3
    assert fresh.rungs_snapshot() == live.rungs_snapshot()
    assert [fresh.next_resume() for _ in range(4)] == [live.next_resume() for _ in range(4)]


def test_an_immediately_promoted_trial_runs_to_the_next_rung_without_pausing():
    scheduler = asha_pause()
    for trial_id in range(3):
        scheduler.on_start(trial_id)
    assert [scheduler.on_report(t, 1, v) for t, v in [(0, 5.0), (1, 6.0)]] == [P, P]
    assert scheduler.on_report(2, 1, 1.0) is C  # the one Algorithm 2 would promote next
    assert [scheduler.on_report(2, s, 1.0 / s) for s in (2, 2.5)] == [C, C]
    assert scheduler.next_resume() is None  # its promotion used rung 1's only slot
    assert scheduler.on_report(2, 3, 0.3) is P  # the next rung, alone there


def test_replay_infers_a_resume_the_store_has_no_start_for():
    """Paused at rung 1, resumed, paused at rung 3, resumed again: only the last start is
    kept. The reports after the first resume are still entered (an implicit resume)."""
    daemon = Daemon(make_scheduler("asha", max_resource=27, mode="pause"))
    for trial_id in range(3):
        daemon.start(trial_id)
    assert [daemon.report(t, 1, v) for t, v in [(0, 5.0), (1, 4.0), (2, 6.0)]] == [P, P, P]
    assert daemon.scheduler.next_resume() == 1
    daemon.start(1)
    assert [daemon.report(1, s, 4.0 - s) for s in (2, 3)] == [C, P]
    daemon.start(1)  # resumed from outside (a user, a restart): the latest start on record
    assert daemon.report(1, 9, 0.5) is P
    fresh = daemon.rebuilt(lambda: make_scheduler("asha", max_resource=27, mode="pause"))
    assert fresh.rungs_snapshot() == daemon.scheduler.rungs_snapshot()
    assert fresh.rungs_snapshot()[3] == [(1, 1.0)] and fresh.rungs_snapshot()[9] == [(1, 0.5)]
    assert fresh.next_milestone(1) == 27


def test_a_resume_from_scratch_re_reports_old_steps_and_replay_keeps_the_first_ones():
    daemon = Daemon(asha_pause())
    for trial_id in range(3):
        daemon.start(trial_id)
    assert [daemon.report(t, 1, v) for t, v in [(0, 5.0), (1, 4.0), (2, 6.0)]] == [P, P, P]
    assert daemon.scheduler.next_resume() == 1
    daemon.start(1)  # no checkpoint: steps 1 and 2 again, the old rung-1 value stays
    assert [daemon.report(1, s, v) for s, v in [(1, 0.1), (2, 3.0), (3, 2.0)]] == [C, C, P]
    fresh = daemon.rebuilt(asha_pause)
    assert fresh.rungs_snapshot() == daemon.scheduler.rungs_snapshot()
    assert fresh.rungs_snapshot()[1][0] == (1, 4.0)


def test_replayed_starts_follow_creation_order_so_brackets_come_out_the_same():
    build = lambda: make_scheduler("async-hyperband", max_resource=27, seed=1)  # noqa: E731
    daemon = Daemon(build())
    for trial_id in range(6):
        daemon.start(trial_id)
    for trial_id in reversed(range(6)):  # the last started reports first
        daemon.report(trial_id, 1, float(trial_id))
    daemon.start(0)  # requeued after a kill: its latest start is after everyone's reports
    fresh = daemon.rebuilt(build)
    assert [fresh.bracket_of(t) for t in range(6)] == [
        daemon.scheduler.bracket_of(t) for t in range(6)
    ]


def test_a_trial_told_to_stop_that_runs_again_after_a_restart_is_told_again():
    build = lambda: make_scheduler("asha", max_resource=9)  # noqa: E731
    daemon = Daemon(build())
    for trial_id in range(3):
        daemon.start(trial_id)
    assert [daemon.report(t, 1, v) for t, v in [(0, 1.0), (1, 2.0), (2, 3.0)]] == [C, C, S]
    fresh = daemon.rebuilt(build)  # killed before trial 2 exited: it is requeued
    fresh.on_start(2)
    assert fresh.on_report(2, 2, 0.0) is S
    daemon.start(2)  # and restarted once more: replay sees its latest start too
    fresh = daemon.rebuilt(build)
    assert fresh.on_report(2, 3, 0.0) is S


def test_a_failed_trial_that_is_retried_trains_again():
    scheduler = asha_pause()
    scheduler.on_start(0)
    scheduler.on_complete(0)  # failed, then requeued for a retry
    scheduler.on_start(0)
    assert scheduler.on_report(0, 1, 1.0) is P


# --- every kind: a simulated study, cut, rebuilt from store rows, compared --------------------

KINDS = {
    "asha-pause": {"max_resource": 27, "mode": "pause"},
    "async-hyperband-pause": {"max_resource": 27, "mode": "pause"},
    "asha": {"max_resource": 27},
    "async-hyperband": {"max_resource": 27},
    "sh": {"max_resource": 27, "cohort_size": 9},
    "hyperband": {"max_resource": 27},
    "median": {},
}


def build(label: str) -> Scheduler:
    return make_scheduler(label.removesuffix("-pause"), **KINDS[label])


def store_rows(result: SimulationResult) -> tuple[list[TrialRecord], dict[int, list[MetricPoint]]]:
    """What the store would hold after a kill at the end of `result`: event i at time i."""
    rows: dict[int, _Row] = {}
    points: dict[int, list[MetricPoint]] = defaultdict(list)
    for now, event in enumerate(result.events):
        match event:
            case Started(trial_id):
                rows.setdefault(trial_id, _Row(created_at=now)).started_at = now
            case Reported(trial_id, step, value):
                points[trial_id].append(MetricPoint(trial_id, int(step), "loss", value, now))
            case Ended(trial_id):
                rows[trial_id].finished_at = now
    for outcome in result.trials:
        rows[outcome.trial_id].state = outcome.state
    return [_record(t, row) for t, row in sorted(rows.items())], points


@pytest.mark.parametrize("checkpoints", [True, False])
@pytest.mark.parametrize("fraction", [0.15, 0.4, 0.7, 1.0])
@pytest.mark.parametrize("label", list(KINDS))
def test_a_scheduler_rebuilt_from_the_store_is_the_live_one(label, fraction, checkpoints):
    curves = power_law_curves(40, n_steps=27, seed=11, noise=0.02, cost_spread=0.6)
    curves[13] = Curve((math.nan,) * 27, 1.0)
    full = simulate(build(label), curves, workers=4, launch_seconds=0.7,
                    checkpoints=checkpoints)
    live = build(label)
    cut = simulate(live, curves, workers=4, launch_seconds=0.7, checkpoints=checkpoints,
                   max_seconds=full.total_time * fraction)
    trials, points = store_rows(cut)
    fresh = build(label)
    fresh.replay(history_events(trials, points, "loss", None))
    if any(isinstance(event, NoMoreTrials) for event in cut.events):
        fresh.on_no_more_trials()  # the restarted controller finds the budget spent

    assert fresh.rungs_snapshot() == live.rungs_snapshot()
    ids = [t.trial_id for t in cut.trials]
    assert [fresh.next_milestone(t) for t in ids] == [live.next_milestone(t) for t in ids]
    assert fresh.take_stopped() == live.take_stopped()
    assert fresh.should_start_new() == live.should_start_new()
    # The restart requeues what was running; then both go on alike.
    running = [t.trial_id for t in cut.trials if t.state is TrialState.RUNNING]
    for scheduler in (fresh, live):
        for trial_id in running:
            scheduler.on_start(trial_id)
        scheduler.on_start(1000)
    assert [fresh.next_resume() for _ in range(5)] == [live.next_resume() for _ in range(5)]
    probe = [(t, 27 * 2, 0.0) for t in running] + [(1000, s, 1.0 / s) for s in range(1, 10)]
    assert [fresh.on_report(*p) for p in probe] == [live.on_report(*p) for p in probe]
