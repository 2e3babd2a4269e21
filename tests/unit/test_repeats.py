"""hpod.repeats: a configuration's runs judged as one (mean for the suggester, one trial for the
scheduler), and the store creating a configuration's runs together."""

from __future__ import annotations

import statistics

import pytest

from hpod.decision import Decision
from hpod.repeats import (
    RepeatedScheduler,
    RepeatGroups,
    combine,
    config_results,
    run_seed,
)
from hpod.schedule import make_scheduler
from hpod.schedule.base import Ended, Reported, Started
from hpod.store import open_store
from hpod.store.records import Direction, TrialRecord, TrialState

C, S = Decision.CONTINUE, Decision.STOP


def run(number: int, *, repeat: int = 0, of: int | None = None, state=TrialState.COMPLETE,
        value: float | None = 1.0, step: int | None = 3) -> TrialRecord:
    return TrialRecord(
        id=100 + number, study_id=1, number=number, params={"x": of if of is not None else number},
        state=state, attempt=0, value=value, last_step=step, reason=None, exit_code=None,
        checkpoint=None, placement=None, created_at=0.0, started_at=0.0, finished_at=1.0,
        repeat=repeat, repeat_of=of,
    )


def test_seeds_differ_between_runs_and_stay_put_for_the_same_run() -> None:
    seeds = {run_seed(7, config, repeat) for config in range(20) for repeat in range(3)}
    assert len(seeds) == 60
    assert run_seed(7, 4, 1) == run_seed(7, 4, 1)
    assert run_seed(None, 4, 1) != run_seed(7, 4, 1)
    assert all(0 <= s < 2**31 for s in seeds)


def test_the_mean_of_completed_runs_stands_for_the_configuration() -> None:
    runs = [run(0, value=1.0), run(1, repeat=1, of=0, value=2.0),
            run(2, repeat=2, of=0, state=TrialState.FAILED, value=None)]
    combined = combine(runs)
    assert (combined.number, combined.state, combined.value) == (0, TrialState.COMPLETE, 1.5)


def test_stopped_runs_count_at_the_smallest_step_and_all_failed_fails() -> None:
    stopped = combine([run(0, state=TrialState.STOPPED, value=4.0, step=3),
                       run(1, repeat=1, of=0, state=TrialState.STOPPED, value=2.0, step=1)])
    assert (stopped.state, stopped.value, stopped.last_step) == (TrialState.STOPPED, 3.0, 1)
    failed = combine([run(0, state=TrialState.FAILED, value=None),
                      run(1, repeat=1, of=0, value=float("nan"))])
    assert (failed.state, failed.value) == (TrialState.FAILED, None)


def test_groups_answer_once_every_run_has_ended() -> None:
    groups = RepeatGroups(3)
    assert groups.add(run(0, value=1.0)) is None
    assert groups.add(run(1, repeat=1, of=0, value=3.0)) is None
    assert groups.add(run(5, value=9.0)) is None  # another configuration
    combined = groups.add(run(2, repeat=2, of=0, value=5.0))
    assert combined is not None and combined.value == 3.0 and combined.number == 0


def test_config_results_give_mean_and_spread_and_progress() -> None:
    results = config_results([
        run(0, value=1.0), run(1, repeat=1, of=0, value=3.0),
        run(2, value=2.0), run(3, repeat=1, of=2, state=TrialState.RUNNING, value=None),
    ])
    assert [(r.number, r.runs, r.state) for r in results] == [
        (0, 2, TrialState.COMPLETE), (2, 2, TrialState.RUNNING)]
    assert results[0].mean == 2.0 and results[0].std == pytest.approx(statistics.stdev([1, 3]))
    assert results[1].values == (2.0,) and results[1].std is None


def asha() -> RepeatedScheduler:
    return RepeatedScheduler(make_scheduler("asha", max_resource=4, min_resource=1,
                                            reduction_factor=2), repeats=2)


def test_the_scheduler_judges_configurations_by_their_mean() -> None:
    judge = asha()
    a0, a1 = run(0, state=TrialState.RUNNING), run(1, repeat=1, of=0, state=TrialState.RUNNING)
    b0, b1 = run(2, state=TrialState.RUNNING), run(3, repeat=1, of=2, state=TrialState.RUNNING)
    for trial in (a0, a1, b0, b1):
        judge.on_start(trial)
    # A rung judges a configuration when its first run arrives there.
    assert judge.on_report(a0.id, 1, 1.0) is C
    assert judge.on_report(a1.id, 1, 3.0) is C  # the same rung again: already judged
    assert judge.on_report(b0.id, 1, 5.0) is S  # two entries, eta = 2: b loses
    assert judge.is_stopped(2) and not judge.is_stopped(0)
    assert judge.on_report(b1.id, 1, 0.0) is S  # the configuration is stopped, all its runs


def test_a_configuration_ends_with_its_last_run_only() -> None:
    judge = asha()
    a0, a1 = run(0, state=TrialState.RUNNING), run(1, repeat=1, of=0, state=TrialState.RUNNING)
    judge.on_start(a0)
    judge.on_start(a1)
    judge.on_end(a0)
    # Were the configuration ended with its first run, this report would hear STOP.
    assert judge.on_report(a1.id, 2, 1.0) is C
    judge.on_end(a1)
    assert judge.on_report(a1.id, 3, 1.0) is S


def test_replay_rebuilds_the_same_verdicts() -> None:
    a0, a1 = run(0, state=TrialState.RUNNING), run(1, repeat=1, of=0, state=TrialState.RUNNING)
    b0 = run(2, state=TrialState.RUNNING)
    events = [Started(a0.id), Started(a1.id), Reported(a0.id, 1, 1.0), Ended(a0.id),
              Started(b0.id), Reported(b0.id, 1, 5.0)]
    judge = asha()
    judge.replay(events, [a0, a1, b0])
    assert judge.is_stopped(2)
    assert judge.on_report(a1.id, 2, 1.0) is C  # a's second run is still going


async def test_the_store_creates_a_configurations_runs_together(tmp_path) -> None:
    async with open_store(tmp_path / "hpod.db") as store:
        study = await store.create_study("s", "s.toml", spec={}, identity="i",
                                         direction=Direction.MINIMIZE, metric="loss")
        await store.create_trial(study.id, {"x": 0.1})
        runs = await store.create_runs(study.id, {"x": 0.5}, 3, origin="user")
        assert [(r.number, r.repeat, r.repeat_of, r.config_number, r.origin) for r in runs] == [
            (1, 0, None, 1, "user"), (2, 1, 1, 1, "user"), (3, 2, 1, 1, "user")]
        assert all(r.state is TrialState.QUEUED and r.params == {"x": 0.5} for r in runs)
        with pytest.raises(ValueError, match="at least 1 run"):
            await store.create_runs(study.id, {"x": 0.5}, 0)


def test_values_near_the_float_limit_average_without_overflow() -> None:
    # statistics.fmean raised OverflowError on two of them: the study failed as "a bug in hpod"
    # and `hpod status` crashed reading it.
    big = 1.5e308
    (result,) = config_results([run(0, value=big), run(1, repeat=1, of=0, value=big)])
    assert result.mean == big and result.std == 0.0
    assert combine([run(0, value=big), run(1, repeat=1, of=0, value=big)]).value == big
    scheduler = RepeatedScheduler(make_scheduler("asha", max_resource=9), repeats=2)
    for trial in (run(0, state=TrialState.RUNNING), run(1, repeat=1, of=0, state=TrialState.RUNNING)):
        scheduler.on_start(trial)
    assert scheduler.on_report(100, 1, big) is C
    assert scheduler.on_report(101, 1, big) is C
