"""Synchronous successive halving: cohorts judged together at each rung (sklearn's halving search).

A cohort of n trials trains to its first rung and waits there (PAUSE); once every member has
reported at the rung (or ended), exactly the top max(1, floor(m * q_k)) of the m entries go on
(ties broken by arrival at the rung; NaN/inf never go on), the rest are stopped. The member
whose report completes the rung gets its verdict at once (CONTINUE or STOP); paused winners are
handed out by `next_resume()` and paused losers by `take_stopped()`. On geometric levels
q_k = 1/eta, so a cohort of 81 with eta = 3 goes 81 -> 27 -> 9 -> 3 -> 1.

Cohorts overlap in time: a new trial joins the open cohort, and when it is full the next one
opens, so a free slot never waits for a cohort's slowest member (syne-tune's synchronous
Hyperband does the same). A cohort's decisions depend only on its members' values, so the
selection is exactly the synchronous one. When the controller will start no more trials
(`on_no_more_trials`), the open cohort is judged with the members it has.

A member whose report jumps past its rung is judged at that rung with the value it reported
there: synchronous halving needs every member's verdict at every rung.
"""

from __future__ import annotations

import logging
import math
from collections import deque

from hpod.decision import Decision
from hpod.schedule.base import (
    SchedulerBase,
    TrialStatus,
    check_positive,
    check_reduction_factor,
    check_resources,
    settled_answer,
)
from hpod.schedule.rungs import Rung, merge_snapshots, reached, rung_levels

logger = logging.getLogger(__name__)


class Cohort:
    """One synchronous successive-halving bracket."""

    def __init__(self, size: int, levels: tuple[float, ...], max_resource: float) -> None:
        bounds = (*levels, max_resource)[1:]
        self.size = size
        self.rungs = [Rung(level, nxt) for level, nxt in zip(levels, bounds, strict=True)]
        self.max_resource = max_resource
        self.members: list[int] = []
        self.closed = False  # no more members will join
        self.stage = 0  # the rung being filled
        self.expected: set[int] = set()  # members still owing a report at the current stage
        self.next_k: dict[int, int] = {}  # member -> next rung it must report at

    @property
    def accepting(self) -> bool:
        return not self.closed and len(self.members) < self.size

    def join(self, trial_id: int) -> None:
        self.members.append(trial_id)
        self.next_k[trial_id] = 0
        if self.stage == 0:
            self.expected.add(trial_id)
        if len(self.members) == self.size:
            self.closed = True

    def snapshot(self) -> dict[float, list[tuple[int, float]]]:
        return {r.level: [(e.trial_id, e.value) for e in r.ranked()] for r in self.rungs}


class CohortScheduler(SchedulerBase):
    """Runs successive cohorts; subclasses say how big each is and at which rung it starts."""

    def __init__(
        self,
        *,
        max_resource: float | None = None,
        direction: str = "minimize",
        min_resource: float = 1,
        reduction_factor: float = 3,
    ) -> None:
        super().__init__(direction)
        check_resources(min_resource, max_resource, required=True)
        assert max_resource is not None  # checked just above; narrows the type
        self.eta = check_reduction_factor(reduction_factor)
        self.min_resource = min_resource
        self.max_resource = max_resource
        self.levels = rung_levels(min_resource, max_resource, self.eta)
        self.cohorts: list[Cohort] = []
        self._cohort_of: dict[int, Cohort] = {}
        self._status: dict[int, TrialStatus] = {}
        self._resumable: deque[int] = deque()
        self._stopped: list[int] = []
        self._reporting: int | None = None  # the trial whose report is being handled

    def _cohort_spec(self, index: int) -> tuple[int, int]:
        """(size, index of the first rung) of the index-th cohort."""
        raise NotImplementedError

    # --- events ----------------------------------------------------------------------------
    def on_start(self, trial_id: int) -> None:
        self._seen()
        status = self._status.get(trial_id)
        if status is None:
            self._join(trial_id)
        elif status is TrialStatus.PAUSED:
            if trial_id in self._resumable:
                self._resumable.remove(trial_id)
        elif status is TrialStatus.STOPPED:
            return  # requeued before it obeyed a STOP: its next report is told STOP again
        elif status is TrialStatus.ENDED:
            self._status[trial_id] = self._retried(trial_id)
            return
        self._status[trial_id] = TrialStatus.RUNNING

    def on_report(self, trial_id: int, step: float, value: float) -> Decision:
        self._seen()
        settled = settled_answer(trial_id, self._status.get(trial_id))
        if settled is not None:
            return settled
        cohort = self._cohort_of[trial_id]
        k = cohort.next_k[trial_id]
        if reached(step, self.max_resource) or k >= len(cohort.rungs):
            return Decision.CONTINUE
        if not reached(step, cohort.rungs[k].level):
            return Decision.CONTINUE
        cohort.rungs[k].add(trial_id, self.score(value), float(value))
        cohort.next_k[trial_id] = k + 1
        cohort.expected.discard(trial_id)
        self._status[trial_id] = TrialStatus.PAUSED
        self._reporting = trial_id
        try:
            self._advance(cohort)
        finally:
            self._reporting = None
        status = self._status[trial_id]
        if status is TrialStatus.RUNNING:
            return Decision.CONTINUE
        return Decision.STOP if status is TrialStatus.STOPPED else Decision.PAUSE

    def on_complete(self, trial_id: int) -> None:
        self._seen()
        if trial_id not in self._status:
            raise ValueError(f"trial {trial_id} completed before on_start()")
        self._status[trial_id] = TrialStatus.ENDED
        if trial_id in self._resumable:
            self._resumable.remove(trial_id)
        if trial_id in self._stopped:
            self._stopped.remove(trial_id)
        cohort = self._cohort_of[trial_id]
        cohort.expected.discard(trial_id)
        self._advance(cohort)

    def on_no_more_trials(self) -> None:
        self._seen()
        for cohort in self.cohorts:
            if not cohort.closed:
                cohort.closed = True
                self._advance(cohort)

    def _held_paused(self, trial_id: int) -> bool:
        return self._status.get(trial_id) is TrialStatus.PAUSED

    def _retried(self, trial_id: int) -> TrialStatus:
        """Where a retried member (a failed run started again) stands: its cohort went on
        while it was down."""
        cohort = self._cohort_of[trial_id]
        k = cohort.next_k[trial_id]
        if k > 0 and cohort.stage < k:
            return TrialStatus.PAUSED  # its last rung is not judged yet: it waits there
        if k > 0 and trial_id not in cohort.rungs[k - 1].promoted:
            return TrialStatus.STOPPED  # it lost there
        if k < len(cohort.rungs):
            if cohort.stage != k:
                return TrialStatus.STOPPED  # the rung it owed was judged without it
            cohort.expected.add(trial_id)
        return TrialStatus.RUNNING

    def next_resume(self) -> int | None:
        # Reserved by removal: two free slots must not get the same trial; a reservation that
        # never reaches on_start is re-derived by replay after a restart.
        return self._resumable.popleft() if self._resumable else None

    def take_stopped(self) -> list[int]:
        taken, self._stopped = self._stopped, []
        return taken

    def next_milestone(self, trial_id: int) -> float | None:
        cohort = self._cohort_of.get(trial_id)
        if cohort is None:
            return None
        k = cohort.next_k[trial_id]
        return cohort.rungs[k].level if k < len(cohort.rungs) else self.max_resource

    def rungs_snapshot(self) -> dict[float, list[tuple[int, float]]]:
        return merge_snapshots([c.snapshot() for c in self.cohorts], self._sign)

    # --- cohort mechanics ------------------------------------------------------------------
    def _join(self, trial_id: int) -> None:
        if not self.cohorts or not self.cohorts[-1].accepting:
            size, first = self._cohort_spec(len(self.cohorts))
            self.cohorts.append(Cohort(size, self.levels[first:], self.max_resource))
        cohort = self.cohorts[-1]
        cohort.join(trial_id)
        self._cohort_of[trial_id] = cohort

    def _advance(self, cohort: Cohort) -> None:
        """Judge the current rung if it is complete; repeat while judging completes the next."""
        while cohort.stage < len(cohort.rungs) and cohort.closed and not cohort.expected:
            rung = cohort.rungs[cohort.stage]
            winners = self._judge(rung)
            cohort.stage += 1
            if cohort.stage < len(cohort.rungs):
                cohort.expected = {t for t in winners if self._status[t] is not TrialStatus.ENDED}

    def _judge(self, rung: Rung) -> list[int]:
        keep = max(1, rung.keep())
        ranked = rung.ranked()
        winners = [e.trial_id for e in ranked[:keep] if not math.isinf(e.score)]
        losers = [e.trial_id for e in ranked[len(winners):]]
        logger.debug("rung %s: %d of %d go on", rung.level, len(winners), len(ranked))
        for trial_id in winners:
            rung.promoted.add(trial_id)
            if trial_id == self._reporting:
                # The member whose report completed the rung still holds its slot: it goes on
                # in place rather than through a pause and a resume.
                self._status[trial_id] = TrialStatus.RUNNING
            elif self._status[trial_id] is TrialStatus.PAUSED:
                self._resumable.append(trial_id)
        for trial_id in losers:
            if trial_id == self._reporting:
                self._status[trial_id] = TrialStatus.STOPPED
            elif self._status[trial_id] is TrialStatus.PAUSED:
                self._stopped.append(trial_id)
                self._status[trial_id] = TrialStatus.STOPPED
            elif self._status[trial_id] is TrialStatus.RUNNING:
                self._status[trial_id] = TrialStatus.STOPPED  # resumed from outside: STOP next report
        return winners


class SuccessiveHalvingScheduler(CohortScheduler):
    """`sh`: every cohort starts at min_resource; `cohort_size` defaults to ceil(eta**K), K the
    number of rungs, so about one member of a full cohort is trained to max_resource."""

    def __init__(
        self,
        *,
        max_resource: float | None = None,
        direction: str = "minimize",
        min_resource: float = 1,
        reduction_factor: float = 3,
        cohort_size: int | None = None,
    ) -> None:
        super().__init__(
            max_resource=max_resource,
            direction=direction,
            min_resource=min_resource,
            reduction_factor=reduction_factor,
        )
        if cohort_size is None:
            cohort_size = max(1, math.ceil(self.eta ** len(self.levels) - 1e-9))
        self.cohort_size = int(check_positive("cohort_size", cohort_size, integer=True))

    def _cohort_spec(self, index: int) -> tuple[int, int]:
        return self.cohort_size, 0
