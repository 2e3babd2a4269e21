"""The data the feed hands to the screens, and pure derivations from it (no I/O, no Textual).

Records come from hpod.store unchanged; what is added here is what a screen needs on top of
them: a study's summary line, a trial's best objective value, the rung levels to mark on a
learning curve, and the time-left estimate.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from hpod.config import trial_dir, trials_dir_of
from hpod.store import (
    Direction,
    EventRecord,
    StudyRecord,
    StudyState,
    TrialCounts,
    TrialRecord,
    TrialState,
)

# Schedulers whose decisions happen at rung levels (hpod/spec_sections.py RUNG_SCHEDULERS).
_RUNG_KINDS = frozenset({"sh", "hyperband", "asha", "async-hyperband"})
_DEFAULT_REDUCTION_FACTOR = 3.0
_MAX_RUNGS = 32  # a guard against a pathological spec (eta barely above 1)


@dataclass(frozen=True, slots=True)
class StudySummary:
    """One study as the overview shows it; `gpus` are the placements of its running trials."""

    study: StudyRecord
    counts: TrialCounts
    best: TrialRecord | None
    placements: tuple[str, ...]

    @property
    def finished(self) -> int:
        c = self.counts
        return c.complete + c.stopped + c.failed


@dataclass(frozen=True, slots=True)
class TrialStats:
    """What the metrics table adds to a trial row: its best objective value and where."""

    best: float | None = None
    best_step: int | None = None
    points: int = 0  # objective reports read so far


@dataclass(frozen=True, slots=True)
class EventRow:
    """An event with the names the events screen shows instead of ids."""

    event: EventRecord
    study: str | None
    trial_number: int | None


class CurvePoint(NamedTuple):
    """A tuple, not a dataclass: the feed makes tens of thousands a second for a running
    trial's curve, and the chart takes them as (x, y) pairs."""

    x: float  # the step, or the scheduler's resource metric when the study names one
    y: float


def spec_section(study: StudyRecord, key: str) -> dict[str, Any]:
    """A table of the study's normalised spec, empty when absent (an invalid study has none)."""
    spec = study.spec or {}
    value = spec.get(key)
    return value if isinstance(value, dict) else {}


def param_names(study: StudyRecord) -> list[str]:
    """The searched parameters in the order of the study file (fixed values are not searched)."""
    space = spec_section(study, "space")
    return [name for name, table in space.items() if isinstance(table, dict) and "type" in table]


def param_is_log(study: StudyRecord, name: str) -> bool:
    table = spec_section(study, "space").get(name)
    return isinstance(table, dict) and bool(table.get("log"))


def param_choices(study: StudyRecord, name: str) -> list[Any] | None:
    table = spec_section(study, "space").get(name)
    if isinstance(table, dict) and table.get("type") == "categorical":
        return list(table.get("choices") or [])
    return None


def resource_metric(study: StudyRecord) -> str | None:
    """The metric the scheduler counts progress in; None means the step itself."""
    name = spec_section(study, "scheduler").get("resource")
    return name if isinstance(name, str) and name else None


def rung_levels(study: StudyRecord) -> list[float]:
    """Where a successive-halving scheduler compares trials: min_resource * eta**k <= max_resource.

    Empty for schedulers without rungs (fifo, median) and for incomplete specs.
    """
    scheduler = spec_section(study, "scheduler")
    if scheduler.get("kind") not in _RUNG_KINDS:
        return []
    high = scheduler.get("max_resource")
    low = scheduler.get("min_resource") or 1.0
    eta = scheduler.get("reduction_factor") or _DEFAULT_REDUCTION_FACTOR
    if not isinstance(high, int | float) or low <= 0 or eta <= 1 or high < low:
        return []
    levels: list[float] = []
    level = float(low)
    # NOTE: a relative tolerance, so 1 * 3**4 == 81 is not lost to float rounding.
    while level <= high * (1 + 1e-9) and len(levels) < _MAX_RUNGS:
        levels.append(level)
        level *= eta
    return levels


def elapsed(study: StudyRecord, now: float) -> float:
    end = study.finished_at if study.finished_at is not None else now
    return max(0.0, end - study.created_at)


def estimate_left(summary: StudySummary, now: float) -> float | None:
    """Seconds until the budget runs out at the rate seen so far; None when it cannot be told.

    A trial budget is extrapolated from the finished-trials throughput (early-stopped trials
    count: they are what makes a rung scheduler fast); an hours budget is a deadline. With
    both, whichever ends first.
    """
    study = summary.study
    if study.state is not StudyState.RUNNING:
        return None
    budget = spec_section(study, "budget")
    spent = elapsed(study, now)
    guesses: list[float] = []
    trials = budget.get("trials")
    if isinstance(trials, int) and summary.finished > 0 and spent > 0:
        remaining = max(0, trials - summary.finished)
        guesses.append(remaining * spent / summary.finished)
    hours = budget.get("hours")
    if isinstance(hours, int | float):
        guesses.append(max(0.0, hours * 3600.0 - spent))
    return min(guesses) if guesses else None


def trial_duration(trial: TrialRecord, now: float) -> float | None:
    if trial.started_at is None:
        return None
    end = trial.finished_at if trial.finished_at is not None else now
    return max(0.0, end - trial.started_at)


def improve_stats(
    stats: TrialStats, points: Iterable[tuple[int, float]], direction: Direction
) -> TrialStats:
    """Fold new (step, value) objective reports into a trial's stats; NaN is never best.

    The best is the first report of the batch's extreme value, if strictly better than the
    old best: the same as comparing one by one, with builtins doing the loop (a running trial
    may bring 30 000 reports per poll).
    """
    pairs = points if isinstance(points, list) else list(points)
    values = [value for _, value in pairs]
    usable = [value for value in values if value == value]  # NaN != NaN
    best, best_step = stats.best, stats.best_step
    if usable:
        extreme = min(usable) if direction is Direction.MINIMIZE else max(usable)
        if best is None or direction.better(extreme, best):
            best, best_step = extreme, pairs[values.index(extreme)][0]
    return TrialStats(best, best_step, stats.points + len(pairs))


def best_so_far(
    trials: Iterable[TrialRecord], direction: Direction
) -> list[tuple[float, float]]:
    """(finish time, best value so far) at each completed trial that improved on the best.

    Trial-level, like the study's best trial: the final value of COMPLETE trials only.
    """
    done = sorted(
        (t.finished_at, t.value)
        for t in trials
        if t.state is TrialState.COMPLETE
        and t.finished_at is not None
        and t.value is not None
        and math.isfinite(t.value)
    )
    curve: list[tuple[float, float]] = []
    for time, value in done:
        if not curve or direction.better(value, curve[-1][1]):
            curve.append((time, value))
    return curve


def placements_in_use(running: Sequence[TrialRecord]) -> tuple[str, ...]:
    """Distinct devices of the running trials, GPUs only (a CPU slot is not worth a column)."""
    seen: dict[str, None] = {}
    for trial in running:
        for part in (trial.placement or "").split(","):
            part = part.strip()
            if part.startswith("gpu"):
                seen.setdefault(part, None)
    return tuple(seen)


def trial_log_dir(db_path: Path, study: str, number: int) -> Path:
    """Where the daemon puts a trial's stdout.log / stderr.log."""
    return trial_dir(trials_dir_of(db_path), study, number)
