"""Asynchronous successive halving (ASHA; Li et al., MLSys 2020), stopping and promotion variants.

Stop mode (default; needs no checkpoints), research notes §2.2. When a trial first reaches rung
k its value enters the rung, and it continues iff fewer than max(1, floor(n * q_k)) of the n
entries (itself included) are strictly better: ties continue. While the rung holds fewer than
eta entries every trial continues (nothing to compare with yet), except that a NaN/inf value
never wins a tie, so a diverged trial stops as soon as the rung has eta entries.

Pause mode (promotion, §2.3 and the paper's Algorithm 2). A trial reaching rung k pauses. When a
slot frees, `next_resume()` scans the rungs from the top down and returns the best not yet
promoted paused trial among the top floor(n * q_k) of its rung (rungs with fewer than eta
entries promote nobody); it resumes from its checkpoint and trains to the next rung. Once no
new trial will start (`on_no_more_trials`), every rung may promote at least its best paused
trial, however few entries it holds: with a small budget (8 trials, eta 3: 2 reach the second
rung, floor(2/3) = 0) the study would otherwise end with no trial trained to max_resource, and
its best configuration never trained to the end. When the
trial that just reached a rung is itself the one Algorithm 2 would promote next, it is told to
CONTINUE instead of pausing: the same schedule, without a checkpoint round-trip. A trial that
cannot checkpoint (`cannot_pause`) is never paused: at each rung it gets stop mode's answer,
continuing (as promoted) when stop mode would keep it, else stopping.

A resumed trial that restarts from scratch re-reports steps at or below its rung; they are
ignored (syne-tune's `ignore_data`). Replay after a restart sees only a trial's latest start:
a paused trial's next report stands for the resume the store did not keep (base.replay), so a
promoted trial's later rungs come back as they were.
"""

from __future__ import annotations

import logging
import math

from hpod.decision import Decision
from hpod.schedule.base import (
    SchedulerBase,
    TrialStatus,
    check_choice,
    check_reduction_factor,
    check_resources,
    settled_answer,
)
from hpod.schedule.rungs import Entry, Ladder, Rung, merge_snapshots, rung_levels

logger = logging.getLogger(__name__)

MODES = ("stop", "pause")


class ASHAScheduler(SchedulerBase):
    """ASHA over one or more independent rung ladders ("brackets"); this class uses one."""

    def __init__(
        self,
        *,
        max_resource: float | None = None,
        direction: str = "minimize",
        min_resource: float = 1,
        reduction_factor: float = 3,
        mode: str = "stop",
    ) -> None:
        super().__init__(direction)
        check_resources(min_resource, max_resource, required=True)
        assert max_resource is not None  # checked just above; narrows the type
        self.eta = check_reduction_factor(reduction_factor)
        self.mode = check_choice("mode", mode, MODES)
        self.min_resource = min_resource
        self.max_resource = max_resource
        self.levels = rung_levels(min_resource, max_resource, self.eta)
        self._ladders = [Ladder(levels, max_resource) for levels in self._bracket_levels()]
        self._status: dict[int, TrialStatus] = {}
        self._bracket: dict[int, int] = {}
        self._no_pause: set[int] = set()
        self._closed = False  # no new trial will start: every rung promotes at least its best

    # Brackets: ASHA has one ladder starting at min_resource; async Hyperband overrides these.
    def _bracket_levels(self) -> list[tuple[float, ...]]:
        return [self.levels]

    def _assign_bracket(self, trial_id: int) -> int:
        return 0

    def bracket_of(self, trial_id: int) -> int:
        return self._bracket[trial_id]

    def _held_paused(self, trial_id: int) -> bool:
        return self._status.get(trial_id) is TrialStatus.PAUSED

    # --- events ----------------------------------------------------------------------------
    def on_start(self, trial_id: int) -> None:
        self._seen()
        status = self._status.get(trial_id)
        if status is None:
            bracket = self._assign_bracket(trial_id)
            self._bracket[trial_id] = bracket
            self._ladders[bracket].add_trial(trial_id)
        elif status is TrialStatus.PAUSED:
            # A resume: promoted by next_resume(), or resumed from outside (after a restart or
            # by a user). Either way it now trains towards the next rung.
            ladder = self._ladders[self._bracket[trial_id]]
            rung = ladder.rungs[ladder.current_rung(trial_id)]
            rung.promoted.add(trial_id)
        elif status is TrialStatus.STOPPED:
            return  # requeued before it obeyed a STOP: its next report is told STOP again
        # RUNNING (a requeue) or ENDED (a retry of a failed run): it trains on from its rungs.
        self._status[trial_id] = TrialStatus.RUNNING

    def on_report(self, trial_id: int, step: float, value: float) -> Decision:
        self._seen()
        settled = settled_answer(trial_id, self._status.get(trial_id))
        if settled is not None:
            return settled
        ladder = self._ladders[self._bracket[trial_id]]
        k = ladder.crossing(trial_id, step)
        if k is None:
            return Decision.CONTINUE
        entry = ladder.record(trial_id, k, self.score(value), float(value))
        if self.mode == "stop":
            return self._stop_rule(trial_id, ladder, k, entry)
        if trial_id in self._no_pause:
            decision = self._stop_rule(trial_id, ladder, k, entry)
            if decision is Decision.CONTINUE:
                ladder.rungs[k].promoted.add(trial_id)  # it goes on in a promotion's place
            return decision
        return self._pause_rule(trial_id, ladder, k)

    def cannot_pause(self, trial_id: int) -> None:
        self._no_pause.add(trial_id)

    def on_complete(self, trial_id: int) -> None:
        self._seen()
        if trial_id not in self._status:
            raise ValueError(f"trial {trial_id} completed before on_start()")
        # NOTE: its rung entries stay (syne-tune's on_trial_error): they were real observations.
        # A paused trial that ends is never promoted.
        self._status[trial_id] = TrialStatus.ENDED

    def on_no_more_trials(self) -> None:
        super().on_no_more_trials()
        self._closed = True

    def next_resume(self) -> int | None:
        if self.mode != "pause":
            return None
        found = self._promotable()
        if found is None:
            return None
        ladder_index, k, entry = found
        rung = self._ladders[ladder_index].rungs[k]
        rung.promoted.add(entry.trial_id)
        logger.debug("promoting trial %d from rung %s", entry.trial_id, rung.level)
        return entry.trial_id

    def next_milestone(self, trial_id: int) -> float | None:
        if trial_id not in self._bracket:
            return None
        return self._ladders[self._bracket[trial_id]].next_milestone(trial_id)

    def rungs_snapshot(self) -> dict[float, list[tuple[int, float]]]:
        return merge_snapshots([ladder.snapshot() for ladder in self._ladders], self._sign)

    # --- rules -----------------------------------------------------------------------------
    def _stop_rule(self, trial_id: int, ladder: Ladder, k: int, entry: Entry) -> Decision:
        rung = ladder.rungs[k]
        if len(rung) < self.eta or rung.n_better(entry) < max(1, rung.keep()):
            return Decision.CONTINUE
        self._status[trial_id] = TrialStatus.STOPPED
        return Decision.STOP

    def _pause_rule(self, trial_id: int, ladder: Ladder, k: int) -> Decision:
        self._status[trial_id] = TrialStatus.PAUSED
        found = self._promotable()
        if found is not None and found[2].trial_id == trial_id:
            ladder.rungs[k].promoted.add(trial_id)
            self._status[trial_id] = TrialStatus.RUNNING
            return Decision.CONTINUE
        return Decision.PAUSE

    def _promotable(self) -> tuple[int, int, Entry] | None:
        """Algorithm 2's choice: the highest rung first (across brackets, lowest bracket on a
        tie), then the best paused, not yet promoted entry within the top floor(n * q_k)."""
        best: tuple[float, int, int, Entry] | None = None
        for b, ladder in enumerate(self._ladders):
            for k in range(len(ladder.rungs) - 1, -1, -1):
                rung = ladder.rungs[k]
                if best is not None and rung.level <= best[0]:
                    break
                entry = self._promotable_in(rung)
                if entry is not None:
                    best = (rung.level, b, k, entry)
                    break
        return None if best is None else (best[1], best[2], best[3])

    def _promotable_in(self, rung: Rung) -> Entry | None:
        if self._closed:
            keep = max(1, rung.keep())
        elif len(rung) < self.eta:
            return None
        else:
            keep = rung.keep()
        for entry in rung.ranked()[:keep]:
            if math.isinf(entry.score):
                return None
            if entry.trial_id in rung.promoted:
                continue
            if self._status.get(entry.trial_id) is TrialStatus.PAUSED:
                return entry
        return None
