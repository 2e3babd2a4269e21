"""kind = "tpe": Tree-structured Parzen Estimator (Bergstra et al., NeurIPS 2011; as in hyperopt
and optuna's TPESampler with multivariate = True, constant_liar = True).

For large budgets and many categorical parameters, where a GP's O(n^3) fit and its smooth
kernel are the wrong tools. After `n_startup` random points, the observations are split at the
gamma-quantile into "good" (l) and "bad" (g); Parzen estimators (hpod.suggest._parzen) of both
are built jointly over all coordinates, `n_ei_candidates` points are drawn from l and the one
maximising log l(x) - log g(x) (equivalent to EI under the TPE model) is proposed.

Pending points are constant lies: they join the bad group as if they had the worst value, so
parallel workers are steered away from each other (optuna `constant_liar`).

Randomness: suggestion i draws from (seed, 1 + number of observations + number of pending), so
the same history gives the same point.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hpod.space import Space
from hpod.store.records import Direction
from hpod.suggest._dedupe import first_free, random_free_point
from hpod.suggest._lattice import Lattice
from hpod.suggest._parzen import ParzenEstimator
from hpod.suggest._training import EncodedHistory
from hpod.suggest.base import draw_rng, parse_direction, seed_entropy

logger = logging.getLogger(__name__)

# Full-weight recent observations in the bad group; older ones ramp down (optuna).
_RECENT = 25


def default_gamma(n: int) -> int:
    """Size of the good group among n points: min(ceil(0.1 n), 25) (optuna's default)."""
    return min(math.ceil(0.1 * n), 25)


def _age_weights(n: int) -> np.ndarray:
    """(n,) weights oldest first: 1 for the newest 25, a ramp from 1/n up to 1 before that."""
    if n <= _RECENT:
        return np.ones(n)
    return np.concatenate([np.linspace(1.0 / n, 1.0, n - _RECENT), np.ones(_RECENT)])


class TPESuggester:
    def __init__(self, space: Space, seed: int | None = None,
                 direction: str | Direction = "minimize", *, n_startup: int = 10,
                 n_ei_candidates: int = 24, prior_weight: float = 1.0) -> None:
        for name, value, low in (("n_startup", n_startup, 0), ("n_ei_candidates", n_ei_candidates, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if isinstance(prior_weight, bool) or not isinstance(prior_weight, (int, float)) or not prior_weight > 0:
            raise ValueError(f"prior_weight must be a number > 0, got {prior_weight!r}")
        self.space = space
        self.direction = parse_direction(direction)
        self.n_startup = n_startup
        self.n_ei_candidates = n_ei_candidates
        self.prior_weight = float(prior_weight)
        self._entropy = seed_entropy(seed)
        self._lattice = Lattice(space)
        self._history = EncodedHistory(space)

    def observe(self, params: Mapping[str, Any], value: float | None,
                resource: float | None = None) -> None:
        self._history.add(params, value, resource)

    def suggest(self, pending: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
        pending = list(pending)
        taken = self._history.free_or_exhausted(pending)
        rng = draw_rng(self._entropy, 1 + len(self._history) + len(pending))
        X, v = self._history.training(maximize=self.direction is Direction.MAXIMIZE,
                                      min_points=max(3, self.space.dim + 1))
        if self._history.n_succeeded < self.n_startup or len(X) < 2:
            return random_free_point(self.space, taken, rng)
        good, bad, w_bad = self._split(X, v, self.space.to_unit_many(pending))
        l_est = ParzenEstimator(good, np.ones(len(good)), self._lattice, self.prior_weight)
        g_est = ParzenEstimator(bad, w_bad, self._lattice, self.prior_weight)
        for attempt in range(4):
            # Widen the draw when the best candidates keep hitting taken points.
            cand = l_est.sample(rng, self.n_ei_candidates << (2 * attempt))
            score = l_est.log_pdf(cand) - g_est.log_pdf(cand)
            params = first_free(self.space, cand[np.argsort(-score, kind="stable")], taken)
            if params is not None:
                return params
        return random_free_point(self.space, taken, rng)

    def _split(self, X: np.ndarray, v: np.ndarray,
               Xp: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(good X, bad X, bad weights). X and v are oldest first; pending points are lies with
        the worst value, so they always land in the bad group as its newest members."""
        v = np.where(np.isnan(v), np.inf, v)
        n_good = max(1, default_gamma(len(v) + len(Xp)))
        n_good = min(n_good, len(v) - 1) if len(v) > 1 else 1
        order = np.argsort(v, kind="stable")
        is_good = np.zeros(len(v), dtype=bool)
        is_good[order[:n_good]] = True
        bad = np.vstack([X[~is_good], Xp])
        return X[is_good], bad, _age_weights(len(bad))
