"""The persisted vocabulary: states, their legal moves, and the frozen records the store returns.

Everything above the store (daemon, CLI, TUI) speaks in these types; nothing above it sees a
cursor or a row tuple.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple


class TrialState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETE = "complete"
    STOPPED = "stopped"
    FAILED = "failed"
    INTERRUPTED = "interrupted"

    def is_finished(self) -> bool:
        return self in _FINISHED


_FINISHED = frozenset({TrialState.COMPLETE, TrialState.STOPPED, TrialState.FAILED})

# NOTE: the single table of legal state moves. FAILED -> QUEUED is a retry of the same
# configuration; INTERRUPTED -> QUEUED is the requeue after a daemon died under a trial;
# PAUSED -> QUEUED is a promotion waiting for a slot.
ALLOWED_TRANSITIONS: dict[TrialState, frozenset[TrialState]] = {
    TrialState.QUEUED: frozenset({TrialState.RUNNING, TrialState.STOPPED, TrialState.FAILED}),
    TrialState.RUNNING: frozenset(
        {
            TrialState.COMPLETE,
            TrialState.STOPPED,
            TrialState.FAILED,
            TrialState.PAUSED,
            TrialState.INTERRUPTED,
        }
    ),
    TrialState.PAUSED: frozenset({TrialState.QUEUED, TrialState.RUNNING, TrialState.STOPPED}),
    TrialState.INTERRUPTED: frozenset({TrialState.QUEUED, TrialState.STOPPED}),
    TrialState.FAILED: frozenset({TrialState.QUEUED}),
    TrialState.COMPLETE: frozenset(),
    TrialState.STOPPED: frozenset(),
}


class StudyState(StrEnum):
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETE = "complete"
    STOPPED = "stopped"  # its file was removed, or a user stopped it
    FAILED = "failed"  # too many consecutive trial failures
    INVALID = "invalid"  # the study file does not validate; `error` says why


class Direction(StrEnum):
    MINIMIZE = "minimize"
    MAXIMIZE = "maximize"

    def better(self, a: float, b: float) -> bool:
        """True when value `a` is strictly better than `b`; NaN is never better."""
        if math.isnan(a):
            return False
        if math.isnan(b):
            return True
        return a < b if self is Direction.MINIMIZE else a > b


class EventLevel(StrEnum):
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


class CommandAction(StrEnum):
    PAUSE_STUDY = "pause-study"
    RESUME_STUDY = "resume-study"
    STOP_STUDY = "stop-study"
    STOP_TRIAL = "stop-trial"
    ENQUEUE = "enqueue"  # payload: {"params": {...}} (partial points are completed)


class CommandState(StrEnum):
    PENDING = "pending"
    APPLIED = "applied"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class StudyRecord:
    id: int
    name: str
    path: str
    state: StudyState
    spec: dict[str, Any] | None  # the normalised study definition, None when it never validated
    identity: str  # hash of the fields that may not change under a running study
    direction: Direction
    metric: str
    error: str | None
    created_at: float
    updated_at: float
    finished_at: float | None


@dataclass(frozen=True, slots=True)
class TrialRecord:
    id: int
    study_id: int
    number: int  # 0-based, per study
    params: dict[str, Any]
    state: TrialState
    attempt: int  # 0 for the first run; retries and requeues count up
    value: float | None  # the last reported value of the objective metric
    last_step: int | None
    reason: str | None  # why it stopped or failed, in words
    exit_code: int | None
    checkpoint: str | None
    placement: str | None  # "cpu:0", "gpu:1", ...
    created_at: float
    started_at: float | None
    finished_at: float | None
    # None: suggested; "file:<digest>": enqueued in the file (hpod.enqueue.file_origins; older
    # trials: "file:<index>"); "user:<command id>": `hpod enqueue`
    # ("user" alone before the command's id was recorded).
    origin: str | None = None
    peak_gpu_memory_mb: float | None = None  # the most GPU memory its processes held (NVML)
    repeat: int = 0  # which run of its configuration ([trial] repeats), from 0
    repeat_of: int | None = None  # number of the configuration's first run; None for that run

    @property
    def config_number(self) -> int:
        """The trial number that names this trial's configuration (its first run's)."""
        return self.number if self.repeat_of is None else self.repeat_of


class MetricPoint(NamedTuple):
    """One metric of one report. A tuple, because reports arrive by the ten thousand a second
    and go to SQLite's executemany as they are."""

    trial_id: int
    step: int
    name: str
    value: float
    time: float


class GpuSample(NamedTuple):
    """One GPU at one moment, as the daemon sampled it (NVML). A tuple in the column order, so
    a batch goes to executemany as it is; None where the GPU did not say."""

    time: float
    gpu: int
    utilization: float | None  # percent of the time a kernel ran
    memory_used_mb: float | None
    memory_total_mb: float | None


@dataclass(frozen=True, slots=True)
class EventRecord:
    id: int
    time: float
    level: EventLevel
    study_id: int | None
    trial_id: int | None
    message: str


@dataclass(frozen=True, slots=True)
class CommandRecord:
    id: int
    time: float
    action: CommandAction
    study: str
    trial_number: int | None
    state: CommandState
    applied_at: float | None
    result: str | None
    payload: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class TrialCounts:
    queued: int = 0
    running: int = 0
    paused: int = 0
    complete: int = 0
    stopped: int = 0
    failed: int = 0
    interrupted: int = 0

    @property
    def total(self) -> int:
        return (
            self.queued
            + self.running
            + self.paused
            + self.complete
            + self.stopped
            + self.failed
            + self.interrupted
        )
