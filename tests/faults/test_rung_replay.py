"""The scheduler's rungs, rebuilt from the store after a restart, must be the rungs the live
scheduler had: the same records at the same rungs, the same next promotion.

Deterministic and in-process: a real store (SQLite in tmp_path) written the way the controller
writes it (transitions, then reports with their times), a real ASHA scheduler driven the way the
controller drives it, then the controller's own rebuild (history_events + replay) into a fresh
scheduler. The end-to-end version with real processes and kill -9 is in test_crash_recovery.py.
"""

from __future__ import annotations

from pathlib import Path

from hpod.decision import Decision
from hpod.schedule import make_scheduler
from hpod.store import Direction, MetricPoint, TrialState, open_store
from hpod.study_policy import history_events

OPTIONS = {"direction": "minimize", "min_resource": 1, "max_resource": 9,
           "reduction_factor": 3}
# Each trial's loss at step s is base + 1/s; the order of the bases decides the promotions.
BASES = [0.5, 0.1, 0.3, 0.05, 0.7, 0.2, 0.02, 0.9, 0.4]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def tick(self) -> float:
        self.now += 1.0
        return self.now


async def _drive(store, study_id: int, live, clock: Clock, stop_after: int) -> dict[int, int]:
    """Run trials one at a time like the controller: promotions first, then new points, until
    `stop_after` runs happened (the daemon stops there). Returns trial id -> pauses."""
    pauses: dict[int, int] = {}
    progress: dict[int, tuple[float, int]] = {}  # trial id -> (base, last step)
    bases = iter(BASES)
    for _ in range(stop_after):
        trial_id = live.next_resume()
        if trial_id is None:
            base = next(bases, None)
            if base is None:
                break
            trial = await store.create_trial(study_id, {"base": base})
            trial_id = trial.id
            progress[trial_id] = (trial.params["base"], 0)
        clock.tick()
        await store.transition(trial_id, TrialState.RUNNING)
        live.on_start(trial_id)
        base, last = progress[trial_id]
        for step in range(last + 1, 10):
            value = base + 1.0 / step
            await store.add_metrics([MetricPoint(trial_id, step, "loss", value, clock.tick())],
                                    {trial_id: (step, value)})
            decision = live.on_report(trial_id, float(step), value)
            progress[trial_id] = (base, step)
            if decision is Decision.PAUSE:
                clock.tick()
                await store.transition(trial_id, TrialState.PAUSED)
                pauses[trial_id] = pauses.get(trial_id, 0) + 1
                break
            if decision is Decision.STOP or step == 9:
                clock.tick()
                final = TrialState.COMPLETE if step == 9 else TrialState.STOPPED
                await store.transition(trial_id, final, value=value)
                live.on_complete(trial_id)
                break
    return pauses


async def test_replayed_rungs_match_the_live_ones_after_promotions(tmp_path: Path) -> None:
    clock = Clock()
    live = make_scheduler("asha", mode="pause", **OPTIONS)
    async with open_store(tmp_path / "hpod.db", clock=clock) as store:
        study = await store.create_study("s", "s.toml", spec={}, identity="i",
                                         direction=Direction.MINIMIZE, metric="loss")
        pauses = await _drive(store, study.id, live, clock, stop_after=12)
        # The case that matters: some trial was paused, promoted, and paused again.
        assert max(pauses.values()) >= 2, pauses
        trials = await store.list_trials(study.id)
        metrics = {t.id: [p for _row, p in await store.metrics(t.id)] for t in trials}

    fresh = make_scheduler("asha", mode="pause", **OPTIONS)
    fresh.replay(history_events(trials, metrics, "loss", None))
    assert fresh.rungs_snapshot() == live.rungs_snapshot()
    assert fresh.next_resume() == live.next_resume()


async def test_replay_of_trials_run_once_each_matches(tmp_path: Path) -> None:
    """Without promotions (stop mode) every trial has one start and the rebuild is exact."""
    clock = Clock()
    live = make_scheduler("asha", mode="stop", **OPTIONS)
    async with open_store(tmp_path / "hpod.db", clock=clock) as store:
        study = await store.create_study("s", "s.toml", spec={}, identity="i",
                                         direction=Direction.MINIMIZE, metric="loss")
        await _drive(store, study.id, live, clock, stop_after=len(BASES))
        trials = await store.list_trials(study.id)
        metrics = {t.id: [p for _row, p in await store.metrics(t.id)] for t in trials}
    assert any(t.state is TrialState.STOPPED for t in trials)
    fresh = make_scheduler("asha", mode="stop", **OPTIONS)
    fresh.replay(history_events(trials, metrics, "loss", None))
    assert fresh.rungs_snapshot() == live.rungs_snapshot()
