"""What each trial costs reaches the suggester (hpod.cost_feed): its seconds per unit of
resource between reports, and the startup and trained resource every trial adds; told with the
rung values, rebuilt from the stored reports after a restart; and only where the study's budget
is time (`cost = "auto"`), or the file says so."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from hpod.cost_feed import CostFeed, Overhead
from hpod.spec import parse_study
from hpod.store.records import MetricPoint, TrialState
from hpod.study_policy import StudyPolicy

from helpers import Recorder, record


class CostRecorder(Recorder):
    """A Recorder that also takes costs."""

    def __init__(self, space) -> None:
        super().__init__(space)
        self.costs: list[tuple[dict[str, Any], float]] = []
        self.overheads: list[tuple[float, float]] = []

    def observe_cost(self, params, seconds_per_unit) -> None:
        self.costs.append((dict(params), seconds_per_unit))

    def observe_overhead(self, startup, resource) -> None:
        self.overheads.append((startup, resource))


def study(tmp_path: Path, budget: dict[str, Any], **suggester: Any):
    return parse_study({
        "name": "costs", "command": ["python", "-c", "pass"],
        "objective": {"metric": "loss", "direction": "minimize"}, "budget": budget,
        "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
        "suggester": {"kind": "gp", **suggester},
    }, path=tmp_path / "costs.toml")


def test_a_trials_rate_is_timed_between_its_reports_and_the_startup_before_them(
        tmp_path: Path) -> None:
    policy = StudyPolicy(study(tmp_path, {"hours": 8}), suggester=CostRecorder(None))
    for trial_id in range(3):
        policy.on_start(record(trial_id, {"x": trial_id / 10}))
    policy.timed_report(0, 0, 4.0)  # before training: a point in time only
    policy.timed_report(0, 1, 12.0)  # 10 s of startup, then 2 s an epoch
    policy.timed_report(0, 2, 14.0)
    policy.timed_report(0, 4, 18.0)
    policy.timed_report(1, 1, 20.0)  # one report: no gap between reports yet
    assert policy.suggester.costs == []  # told with the rung values, under the suggest lock
    policy.tell_rungs()
    # trial 1's rate is estimated from its first report: 20 s less the study's 10 s startup
    assert policy.suggester.costs == [({"x": 0.0}, 2.0), ({"x": 0.1}, 10.0)]
    assert policy.suggester.overheads == [(10.0, 2.5)]  # none ended: the mean of all reached
    policy.timed_report(1, 2, 26.0)  # measured: 6 s an epoch, so 14 s of startup
    policy.on_end(record(0, {"x": 0.0}, TrialState.COMPLETE, 0.1, 4))
    policy.tell_rungs()
    assert policy.suggester.costs[2:] == [({"x": 0.1}, 6.0)]  # the measure replaces the guess
    assert policy.suggester.overheads[1:] == [(12.0, 4.0)]  # the median startup; trial 0 ended
    policy.tell_rungs()  # nothing new
    assert len(policy.suggester.costs) == 3 and len(policy.suggester.overheads) == 2


def test_a_trial_with_one_report_is_told_its_first_report_less_the_startup_until_measured(
        tmp_path: Path) -> None:
    policy = StudyPolicy(study(tmp_path, {"hours": 8}), suggester=CostRecorder(None))
    for trial_id in range(4):
        policy.on_start(record(trial_id, {"x": trial_id / 10}))
    policy.timed_report(0, 1, 7.0)  # 5 s of startup, then 2 s an epoch
    policy.timed_report(0, 2, 9.0)
    policy.timed_report(1, 3, 17.0)  # stopped at its first rung, 3 epochs in 17 s
    policy.tell_rungs()
    assert policy.suggester.costs == [({"x": 0.0}, 2.0), ({"x": 0.1}, 4.0)]  # (17 - 5) / 3
    policy.timed_report(2, 1, 5.0)  # no later than the startup, yet not free
    policy.tell_rungs()
    assert policy.suggester.costs[2:] == [({"x": 0.2}, 0.5)]  # a tenth of its 5 s
    policy.tell_rungs()
    assert len(policy.suggester.costs) == 3  # an estimate is told once while the startup stays
    policy.timed_report(3, 1, 11.0)  # 8 s of startup here: the median moves to 6.5 s
    policy.timed_report(3, 2, 14.0)
    policy.tell_rungs()
    assert sorted(policy.suggester.costs[3:], key=lambda cost: cost[0]["x"]) == [
        ({"x": 0.1}, (17.0 - 6.5) / 3), ({"x": 0.2}, 0.5), ({"x": 0.3}, 3.0)]
    assert policy.suggester.overheads[-1][0] == 6.5


def test_a_resumed_trial_is_timed_from_its_new_start(tmp_path: Path) -> None:
    policy = StudyPolicy(study(tmp_path, {"hours": 8}), suggester=CostRecorder(None))
    trial = record(0, {"x": 0.5})
    policy.on_start(trial)
    policy.timed_report(0, 1, 5.0)
    policy.timed_report(0, 3, 9.0)  # paused at 3 after 2 s an epoch
    policy.on_start(trial)  # promoted an hour later: its clock starts again
    policy.timed_report(0, 4, 3.5)
    policy.timed_report(0, 9, 13.5)
    policy.tell_rungs()
    assert policy.suggester.costs == [({"x": 0.5}, 2.0)]
    assert policy.suggester.overheads == [(3.0, 9.0)]


@pytest.mark.parametrize("budget, cost, told", [
    ({"hours": 8}, None, True),
    ({"trials": 40, "hours": 8}, None, True),
    ({"trials": 40}, None, False),  # every trial counts the same, whatever it costs
    ({"trials": 40}, "on", True),
    ({"hours": 8}, "off", False),
])
def test_costs_are_told_where_the_budget_is_time_or_the_file_says_so(
        tmp_path: Path, budget: dict, cost: str | None, told: bool) -> None:
    options = {} if cost is None else {"cost": cost}
    policy = StudyPolicy(study(tmp_path, budget, **options))
    assert policy.tells_costs is told
    policy.on_start(record(0, {"x": 0.5}))
    policy.timed_report(0, 1, 3.0)
    policy.timed_report(0, 2, 4.0)
    policy.tell_rungs()
    assert len(policy.suggester._cost) == int(told)  # type: ignore[attr-defined]


def test_a_suggester_that_cannot_weigh_costs_is_never_told(tmp_path: Path) -> None:
    spec = study(tmp_path, {"hours": 8})
    spec = dataclasses.replace(spec, suggester=dataclasses.replace(spec.suggester, kind="tpe",
                                                                   options={}))
    assert not StudyPolicy(spec).tells_costs
    assert not StudyPolicy(study(tmp_path, {"hours": 8}), suggester=Recorder(None)).tells_costs


def _point(trial_id: int, step: int, name: str, value: float, when: float) -> MetricPoint:
    return MetricPoint(trial_id, step, name, value, when)


def test_a_restart_rebuilds_the_costs_from_the_stored_reports() -> None:
    trials = [dataclasses.replace(record(0, {"x": 0.1}, TrialState.COMPLETE, 0.25, 4),
                                  started_at=100.0),
              dataclasses.replace(record(1, {"x": 0.2}), started_at=100.0),
              # Resumed at 500: its first report (at 210) was timed from a start it lost.
              dataclasses.replace(record(2, {"x": 0.3}, TrialState.PAUSED), started_at=500.0),
              dataclasses.replace(record(3, {"x": 0.4}), started_at=700.0)]
    metrics = {
        0: [_point(0, 0, "loss", 0.9, 104.0), _point(0, 1, "loss", 0.5, 112.0),
            _point(0, 1, "acc", 0.7, 112.0), _point(0, 3, "loss", 0.3, 120.0),
            _point(0, 4, "loss", 0.25, 124.0)],
        1: [_point(1, 1, "acc", 0.1, 103.0), _point(1, 2, "loss", 0.4, 110.0),
            _point(1, 3, "loss", 0.35, 113.0)],
        2: [_point(2, 1, "loss", 0.8, 210.0), _point(2, 2, "loss", 0.7, 211.0),
            _point(2, 3, "loss", 0.6, 612.0), _point(2, 4, "loss", 0.5, 613.0)],
        3: [],
    }
    feed = CostFeed()
    feed.rebuilt(trials, metrics, "loss", None)
    rates, overhead = feed.drain()
    # Trial 0: 4 s an epoch after a 12 - 4 = 8 s startup. Trial 1's first report carrying the
    # objective is at step 2: 3 s an epoch, 10 - 6 = 4 s. Trial 2: its pause is one step of
    # three, which the median leaves out; no startup.
    assert rates == [({"x": 0.1}, 4.0), ({"x": 0.2}, 3.0), ({"x": 0.3}, 1.0)]
    assert overhead == Overhead(6.0, 4.0)  # the ended trial trained 4
    feed.started(trials[3])  # its first start: timed live
    feed.reported(3, 1, 7.0)
    feed.reported(3, 2, 8.0)
    feed.started(trials[1])  # requeued after the kill: its startup is not timed again
    feed.reported(1, 4, 50.0)
    feed.reported(1, 5, 53.0)
    rates, overhead = feed.drain()
    assert rates == [({"x": 0.4}, 1.0), ({"x": 0.2}, 3.0)]
    assert overhead is None  # unchanged: median of 8, 4 and 6, and trial 0 still


def test_a_named_resource_metric_is_the_unit_of_the_cost() -> None:
    trial = dataclasses.replace(record(0, {"x": 0.1}), started_at=0.0)
    metrics = {0: [_point(0, 7, "loss", 0.5, 40.0), _point(0, 7, "epoch", 2.0, 40.0),
                   _point(0, 9, "loss", 0.4, 50.0), _point(0, 9, "epoch", 4.0, 50.0)]}
    feed = CostFeed()
    feed.rebuilt([trial], metrics, "loss", "epoch")
    assert feed.drain() == ([({"x": 0.1}, 5.0)], Overhead(30.0, 4.0))


def test_a_trial_that_reports_very_often_keeps_a_bounded_window_of_gaps() -> None:
    feed = CostFeed()
    feed.started(record(0, {"x": 0.5}))
    for step in range(1, 10_001):  # 10 s an epoch for the first 5000, then 1 s
        feed.reported(0, step, 10.0 * min(step, 5000) + max(step - 5000, 0))
    rates, _overhead = feed.drain()
    assert rates == [({"x": 0.5}, 1.0)]  # the recent gaps
    assert len(feed._trials[0].rates) <= 64


def test_a_first_report_at_no_time_after_the_start_gives_no_estimate(tmp_path: Path) -> None:
    """A wall clock stepped back puts a report at or before its trial's start: the suggester
    refuses a rate of 0, so none is estimated from it."""
    policy = StudyPolicy(study(tmp_path, {"hours": 8}), suggester=CostRecorder(None))
    for trial_id in range(3):
        policy.on_start(record(trial_id, {"x": trial_id / 10}))
    policy.timed_report(0, 1, 7.0)
    policy.timed_report(0, 2, 9.0)
    policy.timed_report(1, 1, 0.0)
    policy.timed_report(2, 1, -3.0)
    policy.tell_rungs()
    assert policy.suggester.costs == [({"x": 0.0}, 2.0)]
