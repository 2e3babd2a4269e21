"""The virtual-clock simulator: exact and deterministic; other scheduler tests stand on it."""

from __future__ import annotations

import pytest

from hpod import make_scheduler
from hpod.decision import Decision
from hpod.schedule.base import Ended, NoMoreTrials, Paused, Reported, Started
from hpod.schedule.curves import exp_decay_curves
from hpod.schedule.simulate import Curve, simulate
from hpod.store.records import TrialState


def non_crossing(n: int = 81, n_steps: int = 27) -> list[Curve]:
    """Curve t ends at f_t + 1/27 and never crosses another: early ranks are final ranks."""
    finals = [((t * 37) % n) / 100 for t in range(n)]
    return [Curve.from_function(lambda s, f=f: f + 1.0 / s, n_steps) for f in finals]


def test_asha_trains_far_fewer_steps_than_fifo_and_finds_the_same_best():
    curves = non_crossing()
    fifo = simulate(make_scheduler("fifo"), curves, workers=4)
    assert fifo.total_steps == 81 * 27
    assert fifo.best == pytest.approx(1 / 27)  # the trial with f = 0
    for mode in ("stop", "pause"):
        asha = simulate(make_scheduler("asha", max_resource=27, mode=mode), curves, workers=4)
        assert len(asha.trials) == 81
        assert asha.best == fifo.best
        assert asha.total_steps * 8 < fifo.total_steps
        assert asha.total_time * 8 < fifo.total_time


def test_fifo_with_one_worker_is_sequential():
    curves = [Curve((1.0, 0.5, 0.25), 2.0), Curve((3.0, 2.0), 0.5)]
    result = simulate(make_scheduler("fifo"), curves, workers=1)
    assert result.total_time == 3 * 2.0 + 2 * 0.5
    assert result.incumbent == ((6.0, 0.25),)
    assert [t.started_at for t in result.trials] == [0.0, 6.0]
    assert result.events == (
        Started(0), Reported(0, 1, 1.0), Reported(0, 2, 0.5), Reported(0, 3, 0.25), Ended(0),
        Started(1), NoMoreTrials(),  # the budget is spent once the last trial has started
        Reported(1, 1, 3.0), Reported(1, 2, 2.0), Ended(1),
    )


def test_workers_run_in_parallel_and_launches_cost_time():
    curves = [Curve((1.0, 0.5), 1.0) for _ in range(4)]
    result = simulate(make_scheduler("fifo"), curves, workers=4, launch_seconds=0.5)
    assert result.total_time == 2.5
    assert result.worker_seconds == 4 * 2.5
    assert result.best_at(2.4) is None and result.best_at(2.5) == 0.5
    assert result.time_to_reach(0.5) == 2.5 and result.time_to_reach(0.1) is None


def test_is_deterministic():
    curves = exp_decay_curves(60, n_steps=27, seed=3, noise=0.01, cost_spread=1.0)
    runs = [simulate(make_scheduler("asha", max_resource=27, mode="pause"), curves, workers=4)
            for _ in range(2)]
    assert runs[0] == runs[1]


def test_a_time_budget_cuts_running_trials():
    curves = non_crossing(8)
    result = simulate(make_scheduler("fifo"), curves, workers=4, max_seconds=10.0)
    assert result.total_time == 10.0
    assert {t.state for t in result.trials} == {TrialState.RUNNING}
    assert [t.last_step for t in result.trials] == [10] * 4
    assert result.total_steps == 40 and result.best is None


def test_trials_come_from_a_function_until_it_runs_dry_or_max_trials():
    source = non_crossing(10)
    result = simulate(make_scheduler("fifo"), lambda i: source[i] if i < 6 else None, workers=4,
                      max_trials=100)
    assert len(result.trials) == 6
    result = simulate(make_scheduler("fifo"), lambda i: source[i], workers=2, max_trials=3)
    assert len(result.trials) == 3
    with pytest.raises(ValueError, match="max_trials"):
        simulate(make_scheduler("fifo"), lambda i: source[i])


def test_pause_mode_leaves_unpromoted_trials_paused_and_logs_pauses():
    result = simulate(make_scheduler("asha", max_resource=27, mode="pause"), non_crossing(),
                      workers=4)
    states = {t.state for t in result.trials}
    assert states == {TrialState.PAUSED, TrialState.COMPLETE}
    assert any(isinstance(e, Paused) for e in result.events)
    assert Decision.PAUSE in result.decisions
    assert any(t.resumes for t in result.trials)


def test_resume_without_checkpoint_retrains_and_the_old_steps_are_ignored():
    curves = exp_decay_curves(40, n_steps=27, seed=5)
    runs = {}
    for checkpoints in (True, False):
        scheduler = make_scheduler("asha", max_resource=27, mode="pause")
        runs[checkpoints] = (simulate(scheduler, curves, workers=4, checkpoints=checkpoints),
                             scheduler.rungs_snapshot())
    (warm, warm_rungs), (cold, cold_rungs) = runs[True], runs[False]
    assert cold.total_steps > warm.total_steps
    resumed = [t for t in cold.trials if t.resumes]
    assert resumed and all(t.steps_trained > t.last_step for t in resumed)
    assert {level: sorted(e) for level, e in cold_rungs.items()} == {
        level: sorted(e) for level, e in warm_rungs.items()
    }


def test_synchronous_losers_are_stopped_through_take_stopped():
    result = simulate(make_scheduler("sh", max_resource=9, cohort_size=9), non_crossing(9, 9),
                      workers=4)
    states = [t.state for t in result.trials]
    assert states.count(TrialState.COMPLETE) == 1
    assert states.count(TrialState.STOPPED) == 8
    assert result.best == pytest.approx(1 / 9)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"workers": 0}, "workers"), ({"max_trials": 0}, "max_trials"),
     ({"launch_seconds": -1.0}, "launch_seconds")],
)
def test_arguments_are_validated(kwargs, match):
    with pytest.raises(ValueError, match=match):
        simulate(make_scheduler("fifo"), non_crossing(2), **kwargs)


def test_curves_are_validated():
    with pytest.raises(ValueError, match="at least one"):
        Curve(())
    with pytest.raises(ValueError, match="seconds_per_step"):
        Curve((1.0,), 0.0)
