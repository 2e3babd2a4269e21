"""The per-coordinate structure of a Space's encoded cube, vectorised for suggesters.

hpod.space encodes one point at a time; model-based suggesters handle thousands of candidates, so
this module precomputes, per coordinate j, what values x_j may take:
- continuous (float without step): any u in [0, 1];
- discrete (int, float with step): the `count` grid values, at their encoded coordinates;
- categorical: the choice indices 0 .. count - 1.

Notations: d coordinates; X (m, d) encoded points; an index array holds grid value numbers.
"""

from __future__ import annotations

import math

import numpy as np

from hpod.space import CategoricalParam, FloatParam, IntParam, Param, Space

# Discrete coordinates with at most this many values keep their coordinates in an array.
_ARRAY_LIMIT = 1 << 16


class Lattice:
    def __init__(self, space: Space) -> None:
        self.space = space
        self.dim = space.dim
        self.is_cat = np.asarray(space.is_categorical, dtype=bool)  # (d,)
        self.n_choices = np.asarray(space.n_choices, dtype=np.int64)  # (d,)
        self.counts: list[int | None] = [p.count for p in space.params]
        self.is_continuous = np.array([c is None for c in self.counts], dtype=bool)  # (d,)
        self._params: tuple[Param, ...] = space.params
        self._values: list[np.ndarray | None] = [self._grid_coords(p) for p in space.params]

    @staticmethod
    def _grid_coords(p: Param) -> np.ndarray | None:
        if p.count is None:
            return None
        if isinstance(p, CategoricalParam):
            return np.arange(p.count, dtype=float)
        if p.count > _ARRAY_LIMIT:
            return None
        return np.array([p.encode(p.grid_value(k)) for k in range(p.count)])

    def count(self, j: int) -> int | None:
        return self.counts[j]

    def coords(self, j: int, index: np.ndarray) -> np.ndarray:
        """Encoded coordinates of grid values number `index` (any shape) of coordinate j."""
        values = self._values[j]
        if values is not None:
            return values[index]
        return _long_grid_coords(self._numeric(j), np.asarray(index, dtype=np.int64))

    def index_of(self, j: int, u: np.ndarray) -> np.ndarray:
        """Number of the grid value nearest to each coordinate in u (any shape) for discrete j."""
        values = self._values[j]
        if values is not None:
            if self.is_cat[j]:
                return np.clip(np.rint(u), 0, len(values) - 1).astype(np.int64)
            mid = 0.5 * (values[1:] + values[:-1])
            return np.searchsorted(mid, u).astype(np.int64)
        return _long_grid_index(self._numeric(j), np.asarray(u, dtype=float))

    def _numeric(self, j: int) -> IntParam | FloatParam:
        p = self._params[j]
        assert not isinstance(p, CategoricalParam)
        return p

    def snap(self, X: np.ndarray) -> np.ndarray:
        """X (m, d) moved onto the lattice: numeric clipped to [0, 1], discrete to the nearest
        grid value, categorical to a valid index."""
        out = np.clip(X, 0.0, 1.0)
        for j in range(self.dim):
            if self.is_cat[j]:
                out[:, j] = np.clip(np.rint(X[:, j]), 0, self.n_choices[j] - 1)
            elif not self.is_continuous[j]:
                out[:, j] = self.coords(j, self.index_of(j, out[:, j]))
        return out

    def from_uniform(self, U: np.ndarray) -> np.ndarray:
        """Map U (m, d) in [0, 1)^d (Sobol or uniform draws) onto the lattice with equal mass per
        grid value and per choice."""
        X = np.array(U, dtype=float)
        for j in range(self.dim):
            if self.is_cat[j]:
                X[:, j] = np.minimum(np.floor(U[:, j] * self.n_choices[j]), self.n_choices[j] - 1)
        return self.snap(X)


def _long_grid_coords(p: IntParam | FloatParam, index: np.ndarray) -> np.ndarray:
    """p.encode(p.grid_value(k)) for every k in `index`, in closed form: a grid too long to
    tabulate is also too long to encode value by value in Python (2**53 values for an int)."""
    lo, hi = p.unit_bounds()
    if isinstance(p, IntParam):
        # int64 holds every grid value exactly (|value| <= 2**53), float64 then as encode does.
        v = (p.low + index * p.step).astype(float)
    else:
        assert p.step is not None
        v = p.low + index * p.step
    if p.log:
        v = np.log(v)
    return (v - lo) / (hi - lo)


def _long_grid_index(p: IntParam | FloatParam, u: np.ndarray) -> np.ndarray:
    """The grid number p.decode snaps each u to, in closed form (see _long_grid_coords)."""
    lo, hi = p.unit_bounds()
    v = lo + np.clip(u, 0.0, 1.0) * (hi - lo)
    if p.log:
        v = np.exp(v)
    count = p.count
    assert p.step is not None and count is not None
    return np.clip(np.rint((v - p.low) / p.step), 0, count - 1).astype(np.int64)


def sobol(d: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, d) scrambled-Sobol points in [0, 1)^d drawn with `rng` (n a power of 2 keeps the
    sequence balanced; other n are its first n points)."""
    from scipy.stats import qmc

    try:
        engine = qmc.Sobol(d, scramble=True, rng=rng)
    except TypeError:  # scipy < 1.15 names it `seed`
        engine = qmc.Sobol(d, scramble=True, seed=rng)
    m = max(int(math.ceil(math.log2(max(n, 1)))), 0)
    return engine.random_base2(m)[:n]
