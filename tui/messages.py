"""What the feed tells the screens. Small dataclasses; the feed posts them, never a widget.

Deltas (TrialsUpdated, CurvesUpdated, TrialMetrics, TrialLog, EventsAppended) carry only what is new
since the previous message to the same screen, so they can never replace one another. Whole
states (StudiesUpdated, StudyUpdated, TrialUpdated) define `can_replace`: when the
screen is busy, only the latest one is handled (as toolong does for its high-rate messages).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from hpod.store import CommandRecord, EventRecord, GpuSample, MetricPoint, TrialRecord
from textual.message import Message

from .model import CurvePoint, EventRow, StudySummary, TrialStats


@dataclass
class StudiesUpdated(Message):
    """Every study, for the overview (sent whole: there are few)."""

    summaries: tuple[StudySummary, ...]

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, StudiesUpdated)


@dataclass
class StudyUpdated(Message):
    summary: StudySummary

    def can_replace(self, message: Message) -> bool:
        if not isinstance(message, StudyUpdated):
            return False
        return message.summary.study.id == self.summary.study.id


@dataclass
class TrialsUpdated(Message):
    """Trials that are new or changed, and objective stats that changed, since the last one."""

    study_id: int
    trials: tuple[TrialRecord, ...]
    stats: Mapping[int, TrialStats] = field(default_factory=dict)  # by trial id
    loading: bool = False  # older trials' metrics are still being read


@dataclass
class CurvesUpdated(Message):
    """New objective points of the trials whose learning curves are shown."""

    study_id: int
    points: Mapping[int, tuple[CurvePoint, ...]]  # by trial id
    reset: frozenset[int] = frozenset()  # these trials' points replace any shown before


@dataclass
class StepValues(Message):
    """The objective at the step most of a study's trials reported, {trial id: value} (whole):
    what parameter importance compares while too few trials completed (under a scheduler most
    stop early). Sent only to a StudyInterest with `step_values`."""

    study_id: int
    step: int
    values: Mapping[int, float]

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, StepValues) and message.study_id == self.study_id


@dataclass
class TrialUpdated(Message):
    trial: TrialRecord

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, TrialUpdated) and message.trial.id == self.trial.id


@dataclass
class TrialMetrics(Message):
    trial_id: int
    points: tuple[MetricPoint, ...]
    reset: bool = False


@dataclass
class TrialEvents(Message):
    trial_id: int
    events: tuple[EventRecord, ...]


@dataclass
class TrialLog(Message):
    """New text of one of a trial's log files (stream: "stdout" or "stderr")."""

    trial_id: int
    stream: str
    text: str
    reset: bool  # the text replaces what was shown (first read, or the file was truncated)


@dataclass
class EventsAppended(Message):
    rows: tuple[EventRow, ...]


@dataclass
class CommandsUpdated(Message):
    """Commands that are new or changed state (pending -> applied/rejected)."""

    commands: tuple[CommandRecord, ...]


@dataclass
class GpusUpdated(Message):
    """The newest sample of each GPU and each GPU's recent samples, oldest first (whole)."""

    latest: tuple[GpuSample, ...]
    recent: Mapping[int, tuple[GpuSample, ...]]  # by GPU index

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, GpusUpdated)


@dataclass
class FeedProblem(Message):
    """The database cannot be read right now (None: it can again)."""

    problem: str | None
