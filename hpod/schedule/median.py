"""`median`: the median stopping rule (Golovin et al., "Google Vizier", KDD 2017).

At a report at step s (once s >= `grace`), the trial stops when its best value so far is
strictly worse than the median, over the other trials that have reached step s, of their
running averages (the mean of their values at steps <= s); at least `min_trials` other trials
must have reached s. This is Vizier's definition, also ray's and NNI's. Other trials count
whatever their state (running, completed, stopped): a stopped trial counts up to where it got.

A trial whose current value is NaN/inf counts as worst (its earlier best does not rescue a
diverged run); others' NaN/inf values make their running averages worst.
"""

from __future__ import annotations

import bisect
import math
import statistics

from hpod.decision import Decision
from hpod.schedule.base import SchedulerBase, check_positive


class _Curve:
    __slots__ = ("steps", "cumsum", "best", "stopped")

    def __init__(self) -> None:
        self.steps: list[float] = []
        self.cumsum: list[float] = []  # running sums of scores, for O(log n) averages
        self.best = math.inf
        self.stopped = False

    def add(self, step: float, score: float) -> None:
        self.steps.append(step)
        self.cumsum.append(score + (self.cumsum[-1] if self.cumsum else 0.0))
        self.best = min(self.best, score)

    def average_up_to(self, step: float) -> float | None:
        """Mean of the values at steps <= `step`, if the curve reached `step` (None if not)."""
        if not self.steps or self.steps[-1] < step:
            return None
        i = bisect.bisect_right(self.steps, step)
        return self.cumsum[i - 1] / i if i else None


class MedianStoppingScheduler(SchedulerBase):
    def __init__(
        self,
        *,
        direction: str = "minimize",
        grace: float = 1,
        min_trials: int = 3,
        max_resource: float | None = None,
    ) -> None:
        super().__init__(direction)
        if isinstance(grace, bool) or not isinstance(grace, (int, float)) or not grace >= 0:
            raise ValueError(
                f"`grace` must be a number >= 0 (the first step at which a trial may be "
                f"stopped), got {grace!r}."
            )
        check_positive("min_trials", min_trials, integer=True)
        if max_resource is not None:
            check_positive("max_resource", max_resource)
        self.grace = grace
        self.min_trials = int(min_trials)
        self.max_resource = max_resource
        self._curves: dict[int, _Curve] = {}

    def on_start(self, trial_id: int) -> None:
        self._seen()
        self._curves.setdefault(trial_id, _Curve())

    def on_report(self, trial_id: int, step: float, value: float) -> Decision:
        self._seen()
        curve = self._curves.get(trial_id)
        if curve is None:
            raise ValueError(f"trial {trial_id} reported before on_start()")
        if curve.stopped:
            return Decision.STOP
        if curve.steps and step <= curve.steps[-1]:
            return Decision.CONTINUE  # a restart from scratch re-reporting old steps
        score = self.score(value)
        curve.add(step, score)
        if step < self.grace:
            return Decision.CONTINUE
        if self.max_resource is not None and step >= self.max_resource:
            return Decision.CONTINUE
        averages = [
            average
            for tid, other in self._curves.items()
            if tid != trial_id and (average := other.average_up_to(step)) is not None
        ]
        if len(averages) < self.min_trials:
            return Decision.CONTINUE
        mine = math.inf if math.isinf(score) else curve.best
        if mine > statistics.median(averages):
            curve.stopped = True
            return Decision.STOP
        return Decision.CONTINUE

    def on_complete(self, trial_id: int) -> None:
        self._seen()
        if trial_id not in self._curves:
            raise ValueError(f"trial {trial_id} completed before on_start()")

    def next_milestone(self, trial_id: int) -> float | None:
        return self.max_resource
