"""hpod's persistence layer: one async writer (the daemon), read-only readers (CLI, TUI).

    async with open_store(path) as store: ...     # the daemon
    with StoreReader(path) as reader: ...          # other processes
    submit_command(path, CommandAction.STOP_TRIAL, "study", 3)
"""

from .commands import submit_command, wait_command
from .errors import (
    Conflict,
    InvalidTransition,
    NotFound,
    SchemaTooNew,
    StoreError,
    StoreUnavailable,
)
from .queries import INTERRUPTED_REASON, UNSET
from .reader import StoreReader
from .records import (
    ALLOWED_TRANSITIONS,
    CommandAction,
    CommandRecord,
    CommandState,
    Direction,
    EventLevel,
    EventRecord,
    GpuSample,
    MetricPoint,
    StudyRecord,
    StudyState,
    TrialCounts,
    TrialRecord,
    TrialState,
)
from .schema import LATEST_VERSION
from .store import Store, open_store

__all__ = [
    "ALLOWED_TRANSITIONS",
    "INTERRUPTED_REASON",
    "LATEST_VERSION",
    "UNSET",
    "CommandAction",
    "CommandRecord",
    "CommandState",
    "Conflict",
    "Direction",
    "EventLevel",
    "EventRecord",
    "GpuSample",
    "InvalidTransition",
    "MetricPoint",
    "NotFound",
    "SchemaTooNew",
    "Store",
    "StoreError",
    "StoreReader",
    "StoreUnavailable",
    "StudyRecord",
    "StudyState",
    "TrialCounts",
    "TrialRecord",
    "TrialState",
    "open_store",
    "submit_command",
    "wait_command",
]
