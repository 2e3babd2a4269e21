"""Grid search: the Cartesian product of every parameter's values, in a seeded shuffled order."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hpod.errors import SearchExhausted
from hpod.space import Space
from hpod.store.records import Direction
from hpod.suggest.base import History, draw_rng, parse_direction, seed_entropy

# Up to this many points the order is a true uniform permutation held in memory (8 bytes each);
# above it, a random affine bijection of the indices, which needs no memory.
_PERMUTATION_LIMIT = 1_000_000


class GridOrder:
    """A seeded bijection position -> grid index on range(n), computed lazily."""

    def __init__(self, n: int, rng: np.random.Generator) -> None:
        self.n = n
        self._perm: np.ndarray | None = None
        if n <= _PERMUTATION_LIMIT:
            self._perm = rng.permutation(n)
            self._a, self._b = 1, 0
        else:
            # (a * pos + b) mod n is a bijection exactly when gcd(a, n) = 1.
            self._a = 0
            while math.gcd(self._a, n) != 1:
                self._a = _big_randint(rng, n)
            self._b = _big_randint(rng, n)

    def __getitem__(self, pos: int) -> int:
        if self._perm is not None:
            return int(self._perm[pos])
        return (self._a * pos + self._b) % self.n


def _big_randint(rng: np.random.Generator, n: int) -> int:
    """Uniform-enough int in [0, n) for any n (grid sizes may exceed int64)."""
    nbytes = (n.bit_length() + 7) // 8 + 8  # 64 extra bits keep the modulo bias negligible
    return int.from_bytes(rng.bytes(nbytes), "big") % n


class GridSuggester:
    """Hands out grid points in a seeded order, skipping observed and pending ones.

    The proposal is a pure function of (seed, observed points, pending points): the first point
    of the order that is neither observed nor pending. A point proposed but then neither observed
    nor passed as pending (its trial never ran) is proposed again.
    """

    def __init__(self, space: Space, seed: int | None = None,
                 direction: str | Direction = "minimize") -> None:
        self.space = space
        self.direction = parse_direction(direction)
        self._size = space.grid_size()  # SpaceError when a float has no step
        self._order = GridOrder(self._size, draw_rng(seed_entropy(seed), 0))
        self._history = History(space)
        self._observed: set[int] = set()
        self._low = 0  # every position before it is observed

    def observe(self, params: Mapping[str, Any], value: float | None,
                resource: float | None = None) -> None:
        self._history.add(params, value, resource)
        self._observed.add(self.space.grid_index(params))

    def suggest(self, pending: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
        order = self._order
        while self._low < self._size and order[self._low] in self._observed:
            self._low += 1
        observed = self._observed
        waiting = {i for i in map(self.space.grid_index, pending) if i not in observed}
        # Every position skipped below holds a taken index: the loop is bounded by their count.
        for pos in range(self._low, self._size):
            index = order[pos]
            if index not in observed and index not in waiting:
                return self.space.grid_point(index)
        waiting_n = len(waiting)
        raise SearchExhausted(f"all {self._size} grid points were proposed"
                              + (f" ({waiting_n} still pending)" if waiting_n else ""))
