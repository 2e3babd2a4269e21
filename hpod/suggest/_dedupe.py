"""Never propose a point twice: pick the first free point of a ranked list, or a random free one.

"Taken" keys (hpod.space.Space.key) are those of observed points, failed ones included, and of
pending points.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Any

import numpy as np

from hpod.errors import SuggestError
from hpod.space import Space

_RANDOM_TRIES = 64


def first_free(space: Space, points: Iterable[np.ndarray], taken: set[Hashable]) -> dict[str, Any] | None:
    """Decoded params of the first encoded point (d,) whose key is not taken; None if none is.
    Exact duplicate rows (frequent among snapped candidates of a coarse lattice) are decoded
    once."""
    seen: set[bytes] = set()
    for x in points:
        b = np.asarray(x, dtype=float).tobytes()
        if b in seen:
            continue
        seen.add(b)
        params = space.from_unit(x)
        if space.key(params) not in taken:
            return params
    return None


def random_free_point(space: Space, taken: set[Hashable], rng: np.random.Generator) -> dict[str, Any]:
    """A uniform random point that is not taken: rejection sampling, then (finite spaces) a scan
    of the grid from a random start. Raises SuggestError if nothing is free."""
    for _ in range(_RANDOM_TRIES):
        params = space.sample(rng)
        if space.key(params) not in taken:
            return params
    if space.is_finite():
        size = space.grid_size()
        start = int(rng.integers(min(size, 2**62)))
        # Among len(taken) + 1 consecutive grid points at least one is free.
        for offset in range(len(taken) + 1):
            params = space.grid_point((start + offset) % size)
            if space.key(params) not in taken:
                return params
    raise SuggestError("could not find a point that is neither observed nor pending")
