"""kind = "gp-grid": Bayesian optimisation guiding a grid search (algorithms.md 1.11).

The same GP as kind = "gp" (hpod.suggest.gp) ranks the points of the space's finite grid (ints,
stepped floats, categoricals) and the best one neither observed nor pending is proposed; the
initial design is the grid points nearest to scrambled-Sobol points. The study ends
(SearchExhausted) when every grid point was proposed and observed or is pending.

Grids up to `max_enumerate` points are scored whole. Larger ones are searched locally, as Ax's
`optimize_acqf_discrete_local_search`: score `n_random` random grid points plus the best observed
ones, then repeatedly the grid neighbours (one step along one axis; any other choice of a
categorical) of the current top points, until the top stops changing.

Notations: d axes; a grid point is a digit vector g (d,) with 0 <= g_j < count_j; G (m, d).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from hpod.space import Space
from hpod.store.records import Direction
from hpod.suggest.gp.acquisition import Acquisition
from hpod.suggest.gp.suggester import GPSuggester

logger = logging.getLogger(__name__)

_CHUNK = 4096
_TOP = 20
_MAX_ROUNDS = 20


class GPGridSuggester(GPSuggester):
    STATE_KIND = "gp-grid"

    # NOTE: the GP options are spelled out (no **kwargs) so make_suggester can list and check them.
    def __init__(self, space: Space, seed: int | None = None,
                 direction: str | Direction = "minimize", *, max_enumerate: int = 20_000,
                 n_random: int = 2048, acquisition: str = "logei", beta: float = 2.0,
                 n_startup: int | None = None, pending: str = "believer", n_fantasies: int = 16,
                 prior: str = "hvarfner", deterministic: bool = False, max_points: int = 500,
                 refit_every: int | None = None, blas_threads: int | None = 1,
                 cost: str = "auto") -> None:
        self.grid_size = space.grid_size()  # SpaceError when a float has no step
        for name, value in (("max_enumerate", max_enumerate), ("n_random", n_random)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        super().__init__(space, seed, direction, acquisition=acquisition, beta=beta,
                         n_startup=n_startup, pending=pending, n_fantasies=n_fantasies,
                         prior=prior, deterministic=deterministic, max_points=max_points,
                         refit_every=refit_every, blas_threads=blas_threads, cost=cost)
        self.max_enumerate = max_enumerate
        self.n_random = n_random
        self._counts = np.array([c for c in self._lattice.counts], dtype=np.int64)  # (d,)

    def _state_options(self) -> dict[str, Any]:
        return {**super()._state_options(), "max_enumerate": self.max_enumerate,
                "n_random": self.n_random}

    def _ranked_points(self, acqs: Sequence[Acquisition], rng: np.random.Generator,
                       best_x: np.ndarray, lengthscales: np.ndarray,
                       taken_X: np.ndarray) -> list[np.ndarray]:
        return [self._ranked_grid_points(acq, rng, taken_X) for acq in acqs]

    def _ranked_grid_points(self, acq: Acquisition, rng: np.random.Generator,
                            taken_X: np.ndarray) -> np.ndarray:
        """(r, d) unevaluated grid points, best first."""
        taken = {g.tobytes() for g in self._digits(taken_X)}
        if self.grid_size <= self.max_enumerate:
            G = np.stack(np.unravel_index(np.arange(self.grid_size), tuple(self._counts)), axis=1)
        else:
            G = self._local_search(acq, rng, taken_X)
        G = G[np.array([g.tobytes() not in taken for g in G], dtype=bool)] if taken else G
        X = self._coords(G)
        values = np.concatenate([acq(X[i:i + _CHUNK]) for i in range(0, len(X), _CHUNK)]) if len(X) else np.empty(0)
        return X[np.argsort(-values, kind="stable")]

    # -- grid helpers ------------------------------------------------------------------------------

    def _digits(self, X: np.ndarray) -> np.ndarray:
        """G (m, d) of encoded lattice points X (m, d)."""
        G = np.empty(X.shape, dtype=np.int64)
        for j in range(X.shape[1]):
            G[:, j] = self._lattice.index_of(j, X[:, j])
        return G

    def _coords(self, G: np.ndarray) -> np.ndarray:
        X = np.empty(G.shape, dtype=float)
        for j in range(G.shape[1]):
            X[:, j] = self._lattice.coords(j, G[:, j])
        return X

    def _neighbours(self, G: np.ndarray) -> np.ndarray:
        """Every point one step away from a row of G along one axis (all other choices along a
        categorical axis), clipped to the grid."""
        out = []
        for j in range(G.shape[1]):
            if self._lattice.is_cat[j]:
                for c in range(int(self._counts[j])):
                    H = G.copy()
                    H[:, j] = c
                    out.append(H)
            else:
                for step in (-1, 1):
                    H = G.copy()
                    H[:, j] = np.clip(H[:, j] + step, 0, self._counts[j] - 1)
                    out.append(H)
        return np.vstack(out)

    def _local_search(self, acq: Acquisition, rng: np.random.Generator,
                      taken_X: np.ndarray) -> np.ndarray:
        """Grid points scored during a local search from random points and the observed ones;
        the caller ranks them."""
        G = np.stack([rng.integers(0, c, size=self.n_random) for c in self._counts], axis=1)
        if len(taken_X):
            G = np.vstack([G, self._digits(taken_X)])
        known: set[bytes] = set()
        G = _take_unseen(G, known)
        values = acq(self._coords(G))
        for _ in range(_MAX_ROUNDS):
            top = G[np.argsort(-values, kind="stable")[:_TOP]]
            fresh = _take_unseen(self._neighbours(top), known)
            if not len(fresh):
                break
            fresh_values = acq(self._coords(fresh))
            threshold = np.sort(values)[-min(_TOP, len(values))]
            G = np.vstack([G, fresh])
            values = np.concatenate([values, fresh_values])
            if fresh_values.max() <= threshold:
                break  # no neighbour enters the top: a local optimum of the grid
        return G


def _take_unseen(G: np.ndarray, known: set[bytes]) -> np.ndarray:
    """Rows of G not in `known` and not repeated, first occurrences in order; they join `known`.
    One set kept across the search's rounds, rather than rebuilt from every point scored so far
    and a sort per round, keeps a round's cost to its new points."""
    keep = np.zeros(len(G), dtype=bool)
    for i, g in enumerate(G):
        key = g.tobytes()
        if key not in known:
            known.add(key)
            keep[i] = True
    return G[keep]
