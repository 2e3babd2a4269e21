"""Fixtures for the TUI tests: a database seeded through the real writer, a frozen clock, and
a bounded wait that lets the app's feed thread and message loop run."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hpod.store import (
    Direction,
    EventLevel,
    MetricPoint,
    StudyState,
    TrialRecord,
    TrialState,
    open_store,
)
from hpod.tui.app import HpodApp
from textual.pilot import Pilot

T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC: every seeded time is relative to it

SPEC: dict[str, Any] = {
    "name": "demo",
    "objective": {"metric": "loss", "direction": "minimize"},
    "budget": {"trials": 40, "hours": None},
    "parallel": 2,
    "space": {
        "lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
        "depth": {"type": "int", "low": 1, "high": 8},
        "opt": {"type": "categorical", "choices": ["adam", "sgd"]},
    },
    "suggester": {"kind": "gp"},
    "scheduler": {"kind": "asha", "resource": None, "min_resource": 1, "max_resource": 27,
                  "reduction_factor": 3},
}  # fmt: skip


class Clock:
    """A clock the test sets; the writer stamps rows with it and the app reads it."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Seeded:
    db_path: Path
    clock: Clock
    study_id: int
    trials: dict[int, TrialRecord]  # by number


def curve(number: int, step: int) -> float:
    """A deterministic learning curve per trial: lower numbers learn faster."""
    return 1.0 / (1 + step) + 0.05 * (number % 5) + 0.01 * math.sin(step)


async def seed(db_path: Path, clock: Clock, n_trials: int = 12) -> Seeded:
    """A study "demo" with trials in every state and metrics; an invalid and a finished study."""
    async with open_store(db_path, clock=clock) as store:
        study = await store.create_study(
            "demo", str(db_path.parent.parent / "demo.toml"), spec=SPEC, identity="x",
            direction=Direction.MINIMIZE, metric="loss",
        )  # fmt: skip
        await store.create_study(
            "broken", str(db_path.parent.parent / "broken.toml"), spec=None, identity="",
            direction=Direction.MINIMIZE, metric="loss", state=StudyState.INVALID,
            error="budget: is required: give a number of trials, hours, or both",
        )  # fmt: skip
        trials: dict[int, TrialRecord] = {}
        finals = [TrialState.COMPLETE, TrialState.STOPPED, TrialState.FAILED, TrialState.RUNNING]
        for number in range(n_trials):
            params = {"lr": 10 ** -(1 + number % 3), "depth": 1 + number % 8,
                      "opt": ["adam", "sgd"][number % 2]}  # fmt: skip
            clock.now += 30
            trial = await store.create_trial(study.id, params)
            trial = await store.transition(
                trial.id, TrialState.RUNNING, placement=f"gpu:{number % 2}"
            )
            steps = 3 + (number % 4) * 3
            points = [MetricPoint(trial.id, s, "loss", curve(number, s), clock.now + s)
                      for s in range(steps)]  # fmt: skip
            points += [MetricPoint(trial.id, s, "acc", 1 - curve(number, s), clock.now + s)
                       for s in range(steps)]  # fmt: skip
            await store.add_metrics(points, {trial.id: (steps - 1, curve(number, steps - 1))})
            final = finals[number % 4] if number < n_trials - 2 else TrialState.RUNNING
            if final is not TrialState.RUNNING:
                clock.now += 60
                reason = {TrialState.STOPPED: "stopped early by the asha scheduler at step 3",
                          TrialState.FAILED: "exited with code 1"}.get(final)  # fmt: skip
                trial = await store.transition(
                    trial.id, final, reason=reason,
                    exit_code=1 if final is TrialState.FAILED else 0,
                )  # fmt: skip
                if final is TrialState.FAILED:
                    await store.record_event(EventLevel.WARNING, f"trial demo#{number} failed: "
                                             "exited with code 1", study_id=study.id,
                                             trial_id=trial.id)  # fmt: skip
            trials[number] = await store.get_trial(trial.id)
        await store.record_event(EventLevel.ERROR, "broken.toml: budget: is required")
        finished = await store.create_study(
            "finished", str(db_path.parent.parent / "finished.toml"), spec=SPEC, identity="y",
            direction=Direction.MINIMIZE, metric="loss",
        )  # fmt: skip
        await store.update_study(finished.id, state=StudyState.COMPLETE)
    return Seeded(db_path, clock, study.id, trials)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "studies" / ".hpod" / "hpod.db"


@pytest.fixture
async def seeded(db_path: Path) -> Seeded:
    return await seed(db_path, Clock())


@pytest.fixture
def make_app(seeded: Seeded) -> Callable[..., HpodApp]:
    def make(**kwargs: Any) -> HpodApp:
        # A short poll keeps the tests quick; the app still reads only through the feed.
        kwargs.setdefault("poll_interval", 0.05)
        app = HpodApp(seeded.db_path, clock=seeded.clock, **kwargs)
        app.animation_level = "none"  # tab underlines and scrolls land at once
        return app

    return make


async def wait_for(pilot: Pilot[Any], predicate: Callable[[], Any], what: str,
                   timeout: float = 15.0) -> Any:  # fmt: skip
    """Let the app run until `predicate()` is truthy; fail clearly after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        await pilot.pause(0.02)
