"""Rung levels and rung bookkeeping shared by every successive-halving scheduler.

Rules (research notes §2.1):
- levels r_k = min_resource * eta**k while r_k < max_resource; max_resource itself is the end of
  training, not a rung. Whole-number resources (both bounds whole numbers) give levels rounded
  half-up and de-duplicated, so levels are strictly increasing.
- the promotion quantile of rung k is q_k = r_k / r_{k+1} with r_{K} = max_resource: 1/eta on
  a geometric ladder, and resource-balanced when max/min is not a power of eta (81 -> 100 keeps
  81 % of the last rung).
- snapping: the first report whose step is >= r_k counts for rung k (a report that jumps over
  several rungs counts for the highest one only: comparing a step-10 value against others'
  step-3 values would favour it). A report at or past max_resource enters no rung.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator
from dataclasses import dataclass, field

# Float resources (data fractions) accumulate rounding error: 1/9 * 3**2 is not exactly 1.
_REL_TOL = 1e-9


def rung_levels(min_resource: float, max_resource: float, eta: float) -> tuple[float, ...]:
    # Whole-number bounds (1 and 81, or 1.0 and 81.0 as a study file parser may give them)
    # mean a countable resource such as epochs: whole-number levels.
    integer = float(min_resource).is_integer() and float(max_resource).is_integer()
    if integer:
        min_resource, max_resource = int(min_resource), int(max_resource)
    levels: list[float] = []
    k = 0
    while True:
        raw = min_resource * eta**k
        level: float = math.floor(raw + 0.5) if integer else raw
        if level >= max_resource if integer else reached(level, max_resource):
            break
        if not levels or level > levels[-1]:
            levels.append(level)
        k += 1
    return tuple(levels)


def format_level(level: float) -> str:
    """A level as a user writes it: 3 rather than 3.0, 0.25 as it is."""
    return str(int(level)) if float(level).is_integer() else f"{level:g}"


def reached(step: float, level: float) -> bool:
    """True when `step` is at or past `level` (with a relative tolerance for float resources)."""
    return step >= level - _REL_TOL * abs(level)


def keep_count(n: int, level: float, next_level: float) -> int:
    """floor(n * q) with q = level / next_level; exact for integer levels."""
    if isinstance(level, int) and isinstance(next_level, int):
        return (n * level) // next_level
    return math.floor(n * level / next_level + _REL_TOL)


@dataclass(slots=True)
class Entry:
    trial_id: int
    score: float  # the value as a loss to minimise; non-finite -> +inf
    value: float  # as reported, for display
    seq: int  # arrival order in this rung: the deterministic tie-break


@dataclass
class Rung:
    level: float
    next_level: float  # the next rung's level, or max_resource for the last rung
    promoted: set[int] = field(default_factory=set)
    # Kept sorted by (score, seq) on insertion: judging is a bisect, not a sort per report.
    _keys: list[tuple[float, int]] = field(default_factory=list, repr=False)
    _ranked: list[Entry] = field(default_factory=list, repr=False)

    def add(self, trial_id: int, score: float, value: float) -> Entry:
        entry = Entry(trial_id, score, value, len(self._ranked))
        at = bisect.bisect(self._keys, (score, entry.seq))
        self._keys.insert(at, (score, entry.seq))
        self._ranked.insert(at, entry)
        return entry

    def __len__(self) -> int:
        return len(self._ranked)

    def keep(self) -> int:
        return keep_count(len(self._ranked), self.level, self.next_level)

    def n_better(self, entry: Entry) -> int:
        """How many other entries rank strictly ahead. A non-finite entry is behind all others:
        ties among diverged trials must not let one through."""
        if math.isinf(entry.score):
            return len(self._ranked) - 1
        return bisect.bisect_left(self._keys, (entry.score, -1))

    def ranked(self) -> list[Entry]:
        """Entries best first; ties by arrival. The caller must not modify the list."""
        return self._ranked


class Ladder:
    """The rungs of one bracket, and where each trial stands on them."""

    def __init__(self, levels: tuple[float, ...], max_resource: float) -> None:
        bounds = (*levels, max_resource)[1:]
        self.rungs = [Rung(level, nxt) for level, nxt in zip(levels, bounds, strict=True)]
        self.max_resource = max_resource
        self._next: dict[int, int] = {}  # trial -> index of the next rung it has not entered

    def __iter__(self) -> Iterator[Rung]:
        return iter(self.rungs)

    def add_trial(self, trial_id: int) -> None:
        self._next.setdefault(trial_id, 0)

    def __contains__(self, trial_id: int) -> bool:
        return trial_id in self._next

    def crossing(self, trial_id: int, step: float) -> int | None:
        """Index of the rung this report enters, or None (between rungs, already recorded
        there, or fully trained)."""
        if reached(step, self.max_resource):
            return None
        hit = None
        for k in range(self._next[trial_id], len(self.rungs)):
            if not reached(step, self.rungs[k].level):
                break
            hit = k
        return hit

    def record(self, trial_id: int, k: int, score: float, value: float) -> Entry:
        self._next[trial_id] = k + 1
        return self.rungs[k].add(trial_id, score, value)

    def current_rung(self, trial_id: int) -> int:
        """Index of the last rung the trial entered (-1 when none)."""
        return self._next[trial_id] - 1

    def next_milestone(self, trial_id: int) -> float:
        k = self._next.get(trial_id, 0)
        return self.rungs[k].level if k < len(self.rungs) else self.max_resource

    def snapshot(self) -> dict[float, list[tuple[int, float]]]:
        return {r.level: [(e.trial_id, e.value) for e in r.ranked()] for r in self.rungs}


def merge_snapshots(
    snapshots: list[dict[float, list[tuple[int, float]]]], sign: float
) -> dict[float, list[tuple[int, float]]]:
    """One rung table out of several brackets/cohorts, each level best first."""
    merged: dict[float, list[tuple[int, float]]] = {}
    for snap in snapshots:
        for level, entries in snap.items():
            merged.setdefault(level, []).extend(entries)

    def key(item: tuple[int, float]) -> float:
        value = item[1]
        return sign * value if math.isfinite(value) else math.inf

    return {level: sorted(merged[level], key=key) for level in sorted(merged)}
