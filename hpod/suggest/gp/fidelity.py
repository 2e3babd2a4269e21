"""The joint model over (params, resource): what the GP learns from, and where it looks.

MOBSTER-JOINT-lite (algorithms.md 2.7, v2): every value a point reached at every level (ASHA's
rungs, and the final result) is one training row, with the level as one more continuous
coordinate, log(resource) / log(top) in [0, 1]; new points maximise the acquisition with that
coordinate pinned at r_acq, the level the single-level model would learn from. Unlike that model,
a point stopped at a low rung still tells the GP something about its neighbourhood at r_acq,
through the correlation along the resource axis.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence

import numpy as np

from hpod.suggest.base import Observation
from hpod.suggest.gp.regressor import GPPosterior


class Levels:
    """Encodes a resource level (None: a final result) as a coordinate in [0, 1].

    `top` is the resource of a final result (the scheduler's max_resource). Unknown, it is taken
    as `top_guess_factor` times the largest finite level seen, so that finals sit above every
    rung rather than on the highest one."""

    def __init__(self, top: float | None, finite_levels: Sequence[float],
                 top_guess_factor: float = 3.0) -> None:
        largest = max(finite_levels, default=1.0)
        self.top = float(top) if top is not None else max(largest, 1.0) * top_guess_factor
        self._log_top = math.log(max(self.top, 1.0 + 1e-9))

    def encode(self, level: float) -> float:
        if math.isinf(level):
            return 1.0
        return min(max(math.log(max(level, 1.0)) / self._log_top, 0.0), 1.0)


def joint_training_indices(observations: Sequence[Observation], keys: Sequence[Hashable], *,
                           min_points: int) -> tuple[list[int], list[float], float]:
    """(indices, level of each, r_acq): the latest observation of each point at each level
    (final results at level inf), and the level the acquisition looks at: the largest with at
    least `min_points` points, else the one with the most."""
    latest: dict[tuple[Hashable, float], int] = {}
    counts: dict[float, int] = {}
    for i, obs in enumerate(observations):
        if obs.value is None:
            continue
        level = math.inf if obs.resource is None else float(obs.resource)
        if (keys[i], level) not in latest:
            counts[level] = counts.get(level, 0) + 1
        latest[(keys[i], level)] = i
    if not latest:
        return [], [], math.inf
    full = [lv for lv, n in counts.items() if n >= min_points]
    acq_level = max(full) if full else max(counts, key=lambda lv: (counts[lv], lv))
    rows = sorted((i, level) for (_key, level), i in latest.items())
    return [i for i, _ in rows], [level for _, level in rows], acq_level


class AtLevel:
    """A posterior over [x, level] seen as one over x, with the level pinned: the acquisitions
    built on it are functions of x, and several of them share this one object, hence each
    prediction (hpod.suggest.gp.optimize)."""

    def __init__(self, posterior: GPPosterior, level: float) -> None:
        self._posterior = posterior
        self._level = level
        self.alpha = posterior.alpha  # (n,) | (n, F): tells the acquisitions about fantasies

    def _with_level(self, Xq: np.ndarray) -> np.ndarray:
        return np.column_stack([Xq, np.full(len(Xq), self._level)])

    def mean_var(self, Xq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self._posterior.mean_var(self._with_level(Xq))

    def mean_var_grad(self, Xq: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        mean, var, dmean, dvar = self._posterior.mean_var_grad(self._with_level(Xq))
        return mean, var, dmean[..., :-1], dvar[:, :-1]
