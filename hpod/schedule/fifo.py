"""`fifo`: no early stopping; every trial trains until it finishes by itself."""

from __future__ import annotations

from hpod.decision import Decision
from hpod.schedule.base import SchedulerBase, check_resources


class FIFOScheduler(SchedulerBase):
    def __init__(
        self,
        *,
        direction: str = "minimize",
        min_resource: float = 1,
        max_resource: float | None = None,
    ) -> None:
        super().__init__(direction)
        check_resources(min_resource, max_resource, required=False)
        self.max_resource = max_resource
        self._started: set[int] = set()

    def on_start(self, trial_id: int) -> None:
        self._seen()
        self._started.add(trial_id)

    def on_report(self, trial_id: int, step: float, value: float) -> Decision:
        self._seen()
        if trial_id not in self._started:
            raise ValueError(f"trial {trial_id} reported before on_start()")
        return Decision.CONTINUE

    def on_complete(self, trial_id: int) -> None:
        self._seen()
        if trial_id not in self._started:
            raise ValueError(f"trial {trial_id} completed before on_start()")

    def next_milestone(self, trial_id: int) -> float | None:
        return self.max_resource
