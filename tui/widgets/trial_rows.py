"""What one trial looks like as a table row, how it sorts and how a filter matches it (pure)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hpod.store import TrialRecord, TrialState
from rich.text import Text

from .. import format as fmt
from ..model import TrialStats, trial_duration
from .table import Column

# Running first: in a study's table those are what one watches.
STATE_ORDER = {
    TrialState.RUNNING: 0, TrialState.PAUSED: 1, TrialState.QUEUED: 2, TrialState.INTERRUPTED: 3,
    TrialState.COMPLETE: 4, TrialState.STOPPED: 5, TrialState.FAILED: 6,
}  # fmt: skip
STATE_TAG = {
    TrialState.RUNNING: "running",
    TrialState.PAUSED: "warn",
    TrialState.INTERRUPTED: "warn",
    TrialState.FAILED: "bad",
    TrialState.QUEUED: "muted",
    TrialState.STOPPED: "muted",
}
PARAM_PREFIX = "p:"


@dataclass(frozen=True, slots=True)
class TrialRow:
    trial: TrialRecord
    stats: TrialStats


def columns(metric: str, params: Sequence[str], repeats: bool = False) -> list[Column]:
    """`repeats`: the study runs each configuration several times ([trial] repeats); a column
    says which configuration each run belongs to, and which run it is."""
    label = fmt.truncate(metric, 9)
    fixed = [
        Column("number", "#", 5, "right"),
        *([Column("config", "config", 7, "right")] if repeats else []),
        Column("state", "state", 8),
        Column("last", label, 9, "right"),
        Column("best", "best", 9, "right"),
        Column("step", "step", 6, "right"),
        Column("time", "time", 6, "right"),
        Column("where", "where", 5),
    ]
    return fixed + [
        Column(PARAM_PREFIX + name, label, min(10, max(8, len(name))), "right")
        for name, label in zip(params, fmt.distinct_labels(params, 10), strict=True)
    ]


def cells(row: TrialRow, params: Sequence[str], now: float,
          repeats: bool = False) -> tuple[str | Text, ...]:
    t, s = row.trial, row.stats
    return (
        str(t.number),
        *([f"#{t.config_number}·{t.repeat}"] if repeats else []),
        t.state.value,
        fmt.value(t.value),
        fmt.value(s.best),
        fmt.MISSING if t.last_step is None else str(t.last_step),
        fmt.duration(trial_duration(t, now)),
        t.placement or fmt.MISSING,
        *(fmt.param(t.params.get(name)) if name in t.params else fmt.MISSING for name in params),
    )


def tag(row: TrialRow, best_id: int | None) -> str | None:
    if row.trial.id == best_id:
        return "good"
    return STATE_TAG.get(row.trial.state)


def search_text(trial: TrialRecord) -> str:
    """What a filter is matched against: "#12 running gpu:0 lr=0.01 depth=3" in lower case."""
    parts = [f"#{trial.number}", trial.state.value, trial.placement or ""]
    if trial.repeat or trial.repeat_of is not None:  # a run of a repeated configuration
        parts += [f"config=#{trial.config_number}", f"repeat={trial.repeat}"]
    parts += [f"{k}={fmt.param(v)}" for k, v in trial.params.items()]
    return " ".join(parts).lower()


def matches(text: str, tokens: Sequence[str]) -> bool:
    return all(token in text for token in tokens)


def sort_value(row: TrialRow, column: str, now: float) -> Any:
    """The value a column sorts by; None sorts last whichever the direction."""
    t = row.trial
    if column == "number":
        return t.number
    if column == "config":
        return (t.config_number, t.repeat)
    if column == "state":
        return (STATE_ORDER[t.state], t.number)
    if column == "last":
        return _number(t.value)
    if column == "best":
        return _number(row.stats.best)
    if column == "step":
        return t.last_step
    if column == "time":
        return trial_duration(t, now)
    if column == "where":
        return t.placement
    if column.startswith(PARAM_PREFIX):
        value = t.params.get(column[len(PARAM_PREFIX):])
        if value is None:
            return None
        # Mixed choices (numbers and strings) still sort: numbers first, then text.
        if isinstance(value, int | float) and not isinstance(value, bool):
            return (0, float(value), "")
        return (1, 0.0, str(value))
    raise ValueError(f"no column {column!r} in the trials table")


def _number(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else value


def ordered(keys_values: list[tuple[str, Any]], reverse: bool) -> list[str]:
    """Keys sorted by value, missing values last in either direction, ties by key order."""
    present = [(k, v) for k, v in keys_values if v is not None]
    missing = [k for k, v in keys_values if v is None]
    present.sort(key=lambda kv: kv[1], reverse=reverse)
    return [k for k, _ in present] + missing
