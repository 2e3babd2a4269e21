"""Rung values of running trials, passed on to the suggester (BOHB / MOBSTER style).

A trial that enters a rung has a value at that rung's resource long before it ends. Told at once,
the suggester models the rung levels with the trials still running instead of only with those
that ended, and the joint GP (fidelity = "joint") sees every level a point reached.

The values are queued as reports arrive (on the event loop, while a suggestion may be running in
a thread) and handed over by `drain()`, which the policy calls where the controller already
holds its suggest lock. After a restart the scheduler's rebuilt rungs give the same values back.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from hpod.store.records import TrialRecord

Observation = tuple[dict[str, Any], float, float]  # (params, value, resource)


class RungFeed:
    def __init__(self) -> None:
        self._params: dict[int, dict[str, Any]] = {}
        self._queued: list[Observation] = []
        # The highest rung each trial entered: where a trial stopped there is observed, in the
        # scheduler's unit (its `resource` metric), not the report's step counter.
        self._last_level: dict[int, float] = {}

    def started(self, trial: TrialRecord) -> None:
        self._params[trial.id] = trial.params

    def entered(self, trial_id: int, level: float, value: float) -> None:
        """The trial's report entered the rung at `level`. NaN/inf never reach a model."""
        self._last_level[trial_id] = float(level)
        params = self._params.get(trial_id)
        if params is not None and math.isfinite(value):
            self._queued.append((params, float(value), float(level)))

    def last_level(self, trial_id: int) -> float | None:
        return self._last_level.get(trial_id)

    def ended(self, trial_id: int) -> None:
        self._params.pop(trial_id, None)

    def rebuilt(self, rungs: Mapping[float, Sequence[tuple[int, float]]],
                trials: Sequence[TrialRecord]) -> None:
        """Queue every rung entry of the scheduler rebuilt after a restart."""
        params = {trial.id: trial.params for trial in trials}
        for level, entries in sorted(rungs.items()):
            for trial_id, value in entries:
                self._last_level[trial_id] = float(level)
                if trial_id in params and math.isfinite(value):
                    self._queued.append((params[trial_id], float(value), float(level)))

    def drain(self) -> list[Observation]:
        queued, self._queued = self._queued, []
        return queued
