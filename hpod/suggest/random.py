"""Random search: uniform in the encoded space (log-uniform for log parameters)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from hpod.errors import SearchExhausted
from hpod.space import Space
from hpod.store.records import Direction
from hpod.suggest.base import History, draw_rng, parse_direction, seed_entropy

logger = logging.getLogger(__name__)

# Rejection sampling tries before the deterministic scan for a free grid point takes over.
_MAX_TRIES = 32


class RandomSuggester:
    """Independent uniform draws; in a finite space, never a point already observed or pending.

    Draw number i uses a generator seeded by (seed, i) where i = max(calls so far, points seen),
    so replaying a history after a restart continues the sequence instead of repeating it.
    """

    def __init__(self, space: Space, seed: int | None = None,
                 direction: str | Direction = "minimize") -> None:
        self.space = space
        self.direction = parse_direction(direction)
        self._entropy = seed_entropy(seed)
        self._history = History(space)
        self._calls = 0

    def observe(self, params: Mapping[str, Any], value: float | None,
                resource: float | None = None) -> None:
        self._history.add(params, value, resource)

    def suggest(self, pending: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
        history = self._history
        waiting = history.fresh_pending(pending)
        n_taken = history.n_seen + len(waiting)
        index = max(self._calls, n_taken)
        self._calls = index + 1
        rng = draw_rng(self._entropy, index)
        if not self.space.is_finite():
            # NOTE: a repeat of a continuous point has probability zero; no de-duplication.
            return self.space.sample(rng)
        size = self.space.grid_size()
        if n_taken >= size:
            raise SearchExhausted(f"all {size} points of the space were observed or are pending")
        for _ in range(_MAX_TRIES):
            point = self.space.sample(rng)
            if not history.is_taken(self.space.key(point), waiting):
                return point
        # Nearly full space: scan the grid from a random start. Among any n_taken + 1
        # consecutive grid points one is free, so this ends within that many steps.
        start = int(rng.integers(size)) if size < 2**62 else int.from_bytes(rng.bytes(32), "big") % size
        logger.debug("random search: %d of %d points taken, scanning from %d", n_taken, size, start)
        for offset in range(n_taken + 1):
            point = self.space.grid_point((start + offset) % size)
            if not history.is_taken(self.space.key(point), waiting):
                return point
        raise AssertionError("unreachable: a free grid point must exist")
