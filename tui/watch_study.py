"""The study view's watch: its trials, their best objective values, and the selected curves.

Everything is read incrementally, so a study with 10 000 trials and a million metric rows
costs little per poll:
- trials: only the queued and running ones are re-read (see _read_trials for why that finds
  every change); one that left them is read once by id; new finished ones are found by
  number (numbers are contiguous per study) when the count grows.
- metrics: each trial's rows are read from the last row id seen, for running trials and for
  trials that just changed. Trials already finished when the view opened are read in the
  background, a bounded number of rows per poll, so the table shows up at once. Only the
  objective is read (and the scheduler's resource metric for a curve), as plain tuples: a
  trial reporting 60 000 times a second brings 30 000 new rows per poll.
- values at one step (StepValues), only while the screen asks for them (parameter importance
  before enough trials completed): queries over all the study's metrics, so only after its
  trials or reports changed, at most every STEP_VALUES_EVERY_S (longer when a read is slow),
  and once more after the last change; the same values are not sent twice.
"""

from __future__ import annotations

import time
from collections import Counter, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from hpod.store import NotFound, StoreReader, StudyRecord, TrialRecord, TrialState
from textual.message import Message

from .messages import CurvesUpdated, StepValues, StudyUpdated, TrialsUpdated
from .model import CurvePoint, StudySummary, TrialStats, improve_stats, resource_metric
from .watch_overview import summarize

# Trials in these states are re-read on every poll that follows a write: they are few (the
# parallelism plus the queue) and they are the ones that change.
LIVE_STATES = frozenset({TrialState.QUEUED, TrialState.RUNNING})
# These can still change, but only rarely and there may be thousands (ASHA parks trials at its
# rungs): they are re-read only when their count says one of them left for a final state.
PARKED_STATES = frozenset({TrialState.PAUSED, TrialState.INTERRUPTED})
# Older trials' metric rows read per poll: enough that small studies load in one poll, small
# enough that a poll on a huge study returns quickly and the UI thread keeps the GIL.
BACKFILL_ROWS_PER_POLL = 20_000
# Values at a step are counted and read over the whole study: 0.3 s on a million rows, 2 s on
# five million, so not on every poll.
STEP_VALUES_EVERY_S = 10.0
STEP_VALUES_MAX_SHARE = 0.05

Rows = list[tuple[int, int, float]]  # one metric's (row id, step, value): metric_values


@dataclass(frozen=True, slots=True)
class StudyInterest:
    study_id: int
    curves: frozenset[int] = frozenset()  # trial ids whose learning curves are shown
    step_values: bool = False  # send StepValues too

    def open(self) -> StudyWatch:
        return StudyWatch(self)


class StudyWatch:
    def __init__(self, interest: StudyInterest,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._interest = interest
        self._clock = clock
        self._step_values_at = -float("inf")  # clock() of the last read of values at a step
        self._step_values_due = True  # the database changed since that read
        self._step_values_sent: StepValues | None = None  # the last one sent
        self._step_values_wait = STEP_VALUES_EVERY_S  # grows with the read's cost
        self._reports_came = False  # the last poll read new reports of live or changed trials
        self._summary: StudySummary | None = None
        self._trials: dict[int, TrialRecord] = {}
        self._numbers: set[int] = set()
        self._live: set[int] = set()  # ids in LIVE_STATES at the last poll
        self._parked: set[int] = set()  # ids in PARKED_STATES
        self._left_live: set[int] = set()
        self._left_parked: set[int] = set()
        self._count: Counter[TrialState] = Counter()
        self._cursor: dict[int, int] = {}  # trial id -> last metric row id folded into stats
        self._stats: dict[int, TrialStats] = {}
        self._backfill: deque[int] = deque()
        self._curve_cursor: dict[int, int] = {}  # trial id -> last metric row id sent as curve
        self._resource: dict[int, dict[int, float]] = {}  # trial id -> step -> resource value
        self._loaded = False
        self._sent_loading = False

    @property
    def busy(self) -> bool:
        return bool(self._backfill)

    def retarget(self, interest: object) -> None:
        if not isinstance(interest, StudyInterest) or interest.study_id != self._interest.study_id:
            raise ValueError(f"a study watch cannot follow {interest!r}")
        if interest.step_values and not self._interest.step_values \
                and self._step_values_sent is None:
            # Asked again: the screen keeps what was sent; read again only when due, at the
            # usual pace (the due flag follows the study's changes while not asked).
            self._step_values_at, self._step_values_due = -float("inf"), True
        self._interest = interest

    def poll(self, reader: StoreReader, changed: bool) -> list[Message]:
        interest = self._interest
        new_curves = interest.curves - self._curve_cursor.keys()
        if not (changed or self._backfill or new_curves or not self._loaded
                or self._step_values_wanted()):
            return []
        for gone in self._curve_cursor.keys() - interest.curves:
            del self._curve_cursor[gone]
        out: list[Message] = []
        with reader.snapshot():
            try:
                study = reader.get_study(interest.study_id)
            except NotFound:
                return []  # deleted under us (a database swapped by hand): nothing to show
            summary = summarize(reader, study)
            if summary != self._summary:
                self._summary = summary
                out.append(StudyUpdated(summary))
            first = not self._loaded
            trials = self._read_trials(reader, summary) if changed or first else []
            reads: dict[int, tuple[int, Rows]] = {}
            stats = self._read_stats(reader, study, trials, reads)
            curves, reset = self._read_curves(reader, study, interest.curves, reads)
            # Only a change of this study's trials or reports: the rest of the database (other
            # studies, GPU samples every few seconds) changes nothing at a step.
            # (not a backfill poll's stats: those reports were there at the last read)
            self._step_values_due = self._step_values_due or bool(trials) or self._reports_came
            wanted = self._step_values_wanted()
            at_step = self._read_step_values(reader, study) if wanted else None
        loading = bool(self._backfill)
        if first or trials or stats or loading != self._sent_loading:
            self._sent_loading = loading
            out.append(TrialsUpdated(study.id, tuple(trials), stats, loading))
        if curves or reset:
            out.append(CurvesUpdated(study.id, curves, frozenset(reset)))
        if at_step is not None:
            out.append(at_step)
        return out

    def _step_values_wanted(self) -> bool:
        return self._interest.step_values and self._step_values_due and \
            self._clock() - self._step_values_at >= self._step_values_wait

    def _read_step_values(self, reader: StoreReader, study: StudyRecord) -> StepValues | None:
        from hpod.importance import step_to_compare  # loaded by the importance worker already

        started = self._clock()
        self._step_values_at, self._step_values_due = started, False
        step = step_to_compare(reader, study)
        values = None if step is None else reader.values_at_step(study.id, study.metric, step)
        # Scans of the study's metrics: seconds on tens of millions of rows, and the feed does
        # nothing else meanwhile, so never more than STEP_VALUES_MAX_SHARE of its time.
        self._step_values_wait = max(STEP_VALUES_EVERY_S,
                                     (self._clock() - started) / STEP_VALUES_MAX_SHARE)
        if step is None or values is None:
            return None
        message = StepValues(study.id, step, values)
        if message == self._step_values_sent:
            return None  # nothing new to fit a surface to
        self._step_values_sent = message
        return message

    # --- trials -------------------------------------------------------------------------------

    def _read_trials(self, reader: StoreReader, summary: StudySummary) -> list[TrialRecord]:
        """Changed and new trials since the last poll (all of them on the first).

        Every move between states passes through a live state except two: a parked trial
        stopped for good, and a failed one retried (FAILED -> QUEUED, which the live query
        sees). So a query of the live states, a read by id of those that left them, and a
        count of the parked ones find every change.
        """
        study_id = summary.study.id
        if not self._loaded:
            self._loaded = True
            changed = reader.list_trials(study_id)
            for trial in changed:
                self._remember(trial)
            return changed
        changed = self._changed_among(reader.list_trials(study_id, LIVE_STATES), self._live)
        for trial_id in self._left_live:
            self._note(changed, reader.get_trial(trial_id))
        counts = summary.counts
        if (counts.paused, counts.interrupted) != (
            self._count[TrialState.PAUSED], self._count[TrialState.INTERRUPTED]
        ):
            parked = reader.list_trials(study_id, PARKED_STATES)
            changed += self._changed_among(parked, self._parked)
            for trial_id in self._left_parked:
                self._note(changed, reader.get_trial(trial_id))
        for trial in self._missing_trials(reader, study_id, counts.total):
            self._note(changed, trial)
        return changed

    def _changed_among(self, trials: list[TrialRecord], tracked: set[int]) -> list[TrialRecord]:
        """Remember the trials of one query; the tracked ones it no longer returned are kept
        in _left_* for a read by id."""
        seen = {t.id for t in trials}
        left = tracked - seen
        if tracked is self._live:
            self._left_live = left
        else:
            self._left_parked = left
        changed: list[TrialRecord] = []
        for trial in trials:
            self._note(changed, trial)
        return changed

    def _note(self, changed: list[TrialRecord], trial: TrialRecord) -> None:
        if self._trials.get(trial.id) != trial:
            self._remember(trial)
            changed.append(trial)

    def _missing_trials(
        self, reader: StoreReader, study_id: int, total: int
    ) -> list[TrialRecord]:
        """Trials created straight into a final state since the last poll (rare: imports).

        Numbers are contiguous per study, so the missing ones are the gaps in 0..total-1.
        """
        if len(self._numbers) >= total:
            return []
        found = []
        for number in sorted(set(range(total)) - self._numbers):
            try:
                found.append(reader.get_trial_by_number(study_id, number))
            except NotFound:
                continue
        return found

    def _remember(self, trial: TrialRecord) -> None:
        old = self._trials.get(trial.id)
        self._trials[trial.id] = trial
        self._numbers.add(trial.number)
        if old is not None:
            self._count[old.state] -= 1
        self._count[trial.state] += 1
        for states, tracked in ((LIVE_STATES, self._live), (PARKED_STATES, self._parked)):
            if trial.state in states:
                tracked.add(trial.id)
            else:
                tracked.discard(trial.id)
        if old is None:
            self._stats[trial.id] = TrialStats()
            if trial.state is TrialState.QUEUED and trial.started_at is None:
                self._cursor[trial.id] = 0  # never ran: nothing to read until it runs
            elif trial.state is not TrialState.RUNNING:
                self._backfill.append(trial.id)

    # --- metrics ------------------------------------------------------------------------------

    @staticmethod
    def _rows(
        reader: StoreReader,
        study: StudyRecord,
        trial_id: int,
        since: int,
        reads: dict[int, tuple[int, Rows]],
    ) -> Rows:
        """The objective's rows after `since`; the stats and the curve of a trial share one
        read."""
        cached = reads.get(trial_id)
        if cached is None or cached[0] > since:
            cached = (since, reader.metric_values(trial_id, study.metric, since_id=since))
            reads[trial_id] = cached
        first, rows = cached
        return rows if first == since else [r for r in rows if r[0] > since]

    def _read_stats(
        self,
        reader: StoreReader,
        study: StudyRecord,
        changed: list[TrialRecord],
        reads: dict[int, tuple[int, Rows]],
    ) -> dict[int, TrialStats]:
        due = {t.id for t in changed if t.id in self._cursor}
        due |= {tid for tid in self._live if self._trials[tid].state is TrialState.RUNNING}
        out: dict[int, TrialStats] = {}
        budget = BACKFILL_ROWS_PER_POLL
        for trial_id in sorted(due):
            budget -= self._fold(reader, study, trial_id, reads, out)
        self._reports_came = bool(out)  # new reports, before the backfill adds old ones
        while self._backfill and budget > 0:
            trial_id = self._backfill.popleft()
            if trial_id not in self._cursor:
                budget -= self._fold(reader, study, trial_id, reads, out)
        return out

    def _fold(
        self,
        reader: StoreReader,
        study: StudyRecord,
        trial_id: int,
        reads: dict[int, tuple[int, Rows]],
        out: dict[int, TrialStats],
    ) -> int:
        since = self._cursor.get(trial_id, 0)
        rows = self._rows(reader, study, trial_id, since, reads)
        # Set even when empty: it marks the trial as read, so its next change reads again.
        self._cursor[trial_id] = rows[-1][0] if rows else since
        if not rows:
            return 0
        before = self._stats.get(trial_id, TrialStats())
        after = improve_stats(before, [(step, value) for _, step, value in rows], study.direction)
        if after != before:
            self._stats[trial_id] = after
            out[trial_id] = after
        return len(rows)

    def _read_curves(
        self, reader: StoreReader, study: StudyRecord, wanted: Iterable[int],
        reads: dict[int, tuple[int, Rows]],
    ) -> tuple[dict[int, tuple[CurvePoint, ...]], set[int]]:
        points: dict[int, tuple[CurvePoint, ...]] = {}
        reset: set[int] = set()
        for trial_id in sorted(wanted):
            trial = self._trials.get(trial_id)
            if trial is None:
                continue
            since = self._curve_cursor.get(trial_id)
            if since is None:
                reset.add(trial_id)
                self._resource.pop(trial_id, None)
                since = 0
            elif trial_id not in reads and trial.state is not TrialState.RUNNING:
                continue  # nothing new can have arrived for it
            rows = self._rows(reader, study, trial_id, since, reads)
            if rows:
                self._curve_cursor[trial_id] = rows[-1][0]
                points[trial_id] = self._curve_points(reader, study, trial_id, since, rows)
            else:
                self._curve_cursor.setdefault(trial_id, since)
        return points, reset

    def _curve_points(
        self, reader: StoreReader, study: StudyRecord, trial_id: int, since: int, rows: Rows
    ) -> tuple[CurvePoint, ...]:
        resource = resource_metric(study)
        if resource is None:
            return tuple([CurvePoint(step, value) for _, step, value in rows])
        # A report usually carries both metrics at one step, in either order: map steps first.
        # Rows of the resource after the last objective row are read again next time: harmless.
        at_step = self._resource.setdefault(trial_id, {})
        for _, step, value in reader.metric_values(trial_id, resource, since_id=since):
            at_step[step] = value
        return tuple(CurvePoint(at_step.get(step, float(step)), value) for _, step, value in rows)
