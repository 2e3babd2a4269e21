"""The ask/tell contract every suggester follows, and the bookkeeping they share.

A suggester proposes one point per `suggest(pending)` call and is told results by `observe`.
Given the same seed and the same history (observations and pending points) it proposes the same
point, so a daemon that restarts and replays its store gets the same search. A suggester that
learns more than its history holds (a kernel's warm start, a portfolio's gains) is `Resumable`:
the daemon saves its state with each trial and hands it back after a restart.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from hpod.space import Space
from hpod.space_params import real_float
from hpod.store.records import Direction

_DIRECTIONS = {"minimize": Direction.MINIMIZE, "min": Direction.MINIMIZE,
               "maximize": Direction.MAXIMIZE, "max": Direction.MAXIMIZE}


class Suggester(Protocol):
    def suggest(self, pending: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
        """A new point: every name of the space, fixed ones included, as JSON-able values.

        `pending` are the params of trials proposed but not yet observed (running or queued);
        they are never proposed again. Raises SearchExhausted when nothing is left to propose.
        """
        ...

    def observe(self, params: Mapping[str, Any], value: float | None,
                resource: float | None = None) -> None:
        """Record a result. `value` None means the trial failed: the point is remembered and never
        proposed again, but no model learns from it. `resource` is the budget (epochs, steps) the
        value was measured at, None for a final result."""
        ...


@runtime_checkable
class CostAware(Protocol):
    def observe_cost(self, params: Mapping[str, Any], seconds_per_unit: float) -> None:
        """What a trial of `params` costs: seconds per unit of resource (an epoch), measured
        between its reports (hpod.cost_feed)."""
        ...

    def observe_overhead(self, startup: float, resource: float) -> None:
        """What every trial adds to that: `startup` seconds, and the `resource` an average
        trial trains."""
        ...


@runtime_checkable
class Resumable(Protocol):
    def state(self) -> dict[str, Any]:
        """What the suggester knows beyond its history, as JSON-able data."""
        ...

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Take back a state() after the history has been observed again. Raises ValueError,
        leaving the suggester as it was, for a state it cannot take (another kind or format)."""
        ...


@dataclass(frozen=True)
class Observation:
    params: dict[str, Any]
    value: float | None  # None: the trial failed
    resource: float | None = None

    @property
    def failed(self) -> bool:
        return self.value is None


def parse_direction(direction: str | Direction) -> Direction:
    """'minimize' / 'maximize' (or 'min' / 'max', or a Direction) -> Direction; else ValueError."""
    try:
        return _DIRECTIONS[str(direction).lower()]
    except KeyError:
        raise ValueError(f"direction must be 'minimize' or 'maximize', got {direction!r}") from None


def seed_entropy(seed: int | None) -> int:
    """The root entropy a suggester derives all its randomness from (fresh when seed is None)."""
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ValueError(f"seed must be a non-negative integer or None, got {seed!r}")
    entropy = np.random.SeedSequence(seed).entropy
    assert isinstance(entropy, int)
    return entropy


def draw_rng(entropy: int, index: int) -> np.random.Generator:
    """The generator for draw number `index`: a pure function of (seed, index), so a replayed
    history reaches the same draw without replaying the calls that led there."""
    return np.random.default_rng([entropy, index])


def as_float(name: str, value: Any, expected: str) -> float:
    """A real number as a float (hpod.space_params.real_float); otherwise a ValueError naming
    the argument `name` and what was `expected`."""
    return real_float(value, lambda got: ValueError(f"{name} must be {expected}, got {got}"))


class History:
    """Observations in arrival order plus the set of point keys seen (failed ones included)."""

    def __init__(self, space: Space) -> None:
        self.space = space
        self.observations: list[Observation] = []
        self._keys: set[tuple[Any, ...]] = set()

    def add(self, params: Mapping[str, Any], value: float | None,
            resource: float | None = None) -> Observation:
        """Validate and record; the same point may be observed several times (at several
        resources) and counts once for de-duplication."""
        key = self.space.key(params)
        if value is not None:
            value = as_float("value", value, "a number or None")
        if resource is not None:
            resource = as_float("resource", resource, "a finite number or None")
            if not math.isfinite(resource):
                raise ValueError(f"resource must be a finite number or None, got {resource!r}")
        obs = Observation(self.space.validate(params), value, resource)
        self.observations.append(obs)
        self._keys.add(key)
        return obs

    @property
    def keys(self) -> frozenset[tuple[Any, ...]]:
        """Keys of every observed point."""
        return frozenset(self._keys)

    def seen(self, params: Mapping[str, Any]) -> bool:
        return self.space.key(params) in self._keys

    def fresh_pending(self, pending: Iterable[Mapping[str, Any]] = ()) -> set[tuple[Any, ...]]:
        """Keys of pending points that are not observed yet; together with `keys` they are the
        points that must not be proposed (kept apart so nothing copies the observed set)."""
        return {k for k in map(self.space.key, pending) if k not in self._keys}

    def is_taken(self, key: tuple[Any, ...], fresh_pending: set[tuple[Any, ...]]) -> bool:
        return key in self._keys or key in fresh_pending

    @property
    def n_seen(self) -> int:
        """Number of distinct points observed."""
        return len(self._keys)

    def __len__(self) -> int:
        return len(self.observations)
