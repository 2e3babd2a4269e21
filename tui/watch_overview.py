"""The overview's watch: one summary per study, re-read whenever the database changed.

There are few studies, so the whole list is read and compared; a message goes out only when a
summary differs from the last one sent.
"""

from __future__ import annotations

from dataclasses import dataclass

from hpod.store import StoreReader, StudyRecord, TrialState
from textual.message import Message

from .messages import StudiesUpdated
from .model import StudySummary, placements_in_use


def summarize(reader: StoreReader, study: StudyRecord) -> StudySummary:
    """A study's counts, best trial and devices in use (call inside reader.snapshot())."""
    counts = reader.count_trials(study.id)
    # An invalid study never ran, so it has no best and nothing running: skip the queries.
    if study.spec is None:
        return StudySummary(study, counts, None, ())
    best = reader.best_trial(study.id, study.direction)
    running = reader.list_trials(study.id, [TrialState.RUNNING]) if counts.running else []
    return StudySummary(study, counts, best, placements_in_use(running))


@dataclass(frozen=True, slots=True)
class OverviewInterest:
    def open(self) -> OverviewWatch:
        return OverviewWatch()


class OverviewWatch:
    def __init__(self) -> None:
        self._last: tuple[StudySummary, ...] | None = None

    @property
    def busy(self) -> bool:
        return False

    def retarget(self, interest: object) -> None:
        self._last = None  # a re-subscription asks for the whole state again

    def poll(self, reader: StoreReader, changed: bool) -> list[Message]:
        if not changed and self._last is not None:
            return []
        with reader.snapshot():
            summaries = tuple(summarize(reader, s) for s in reader.list_studies())
        if summaries == self._last:
            return []
        self._last = summaries
        return [StudiesUpdated(summaries)]
