"""What a point costs to train, and acquisitions per unit of that cost ("EI per second").

When the seconds a trial takes depend on its parameters (wider networks, smaller batches), a
point twice as expensive must promise more to be worth trying: the study's budget is hours of
the workers' time, not a number of trials. Snoek, Larochelle and Adams (NeurIPS 2012, "expected
improvement per second") model the cost with a second GP and maximise the acquisition divided
by it; in log form, for log EI,

    a_cost(x) = log EI(x) - log(cost(x) / cost(x_0)),
    cost(x) = startup + resource * exp(g(x)),

with g(x) the cost GP's posterior mean of the log seconds per unit of resource (an epoch) at x,
`startup` and `resource` what every trial of the study adds to that (its process start, and the
resource an average trial trains: hpod.cost_feed), and x_0 a point at the mean log rate. The
same penalty is subtracted from UCB in the portfolio (hpod.suggest.gp.hedge), so both members
weigh a point by what it costs. A cost surface flat up to noise gives a nearly constant
penalty: a study whose points all cost the same is searched as without it.

Notations: m query points, d dimensions; y (n,) the log rates of n observed points.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from typing import Any

import numpy as np

from hpod.suggest.base import as_float
from hpod.suggest.gp.acquisition import Acquisition
from hpod.suggest.gp.model import GPModel
from hpod.suggest.gp.regressor import GPPosterior

# Measured costs carry noise (a busy disk, another trial on the GPU): a floor of 1e-4 of the
# log cost's variance keeps the cost GP from interpolating it.
_COST_NOISE_FLOOR = 1e-4


class CostModel:
    """The log seconds per unit of resource of each point told, and the GP fitted on them."""

    def __init__(self, is_cat: np.ndarray, n_choices: np.ndarray, *, prior: str,
                 max_points: int) -> None:
        self.startup = 0.0
        self.resource = 1.0
        # winsorize=False: a point that is ten times as slow is the information, not an outlier.
        self.model = GPModel(is_cat, n_choices, prior=prior, noise_floor=_COST_NOISE_FLOOR,
                             max_points=max_points, winsorize=False)
        self._costs: dict[Hashable, tuple[np.ndarray, float]] = {}

    def __len__(self) -> int:
        return len(self._costs)

    def observe(self, key: Hashable, x: np.ndarray, seconds_per_unit: float) -> None:
        """The rate of the point `key` (encoded as x (d,)); a later measure of it replaces an
        earlier one. Raises ValueError for a rate that is not a positive finite number."""
        rate = as_float("seconds_per_unit", seconds_per_unit, "a positive number")
        if not (math.isfinite(rate) and rate > 0):
            raise ValueError(f"seconds_per_unit must be a positive number, got {rate!r}")
        self._costs[key] = (x, math.log(rate))

    def observe_overhead(self, startup: float, resource: float) -> None:
        """Seconds every trial spends before training, and the resource an average trial
        trains. Raises ValueError for a negative startup or a resource that is not > 0."""
        startup = as_float("startup", startup, "a number >= 0")
        resource = as_float("resource", resource, "a number > 0")
        if not (math.isfinite(startup) and startup >= 0):
            raise ValueError(f"startup must be a number >= 0, got {startup!r}")
        if not (math.isfinite(resource) and resource > 0):
            raise ValueError(f"resource must be a number > 0, got {resource!r}")
        self.startup, self.resource = startup, resource

    def surface(self, rng: np.random.Generator, min_points: int) -> CostSurface | None:
        """The fitted cost surface; None with fewer than `min_points` costs or when every cost
        is the same (nothing to weigh)."""
        if len(self._costs) < min_points:
            return None
        X = np.array([x for x, _ in self._costs.values()])
        y = np.array([c for _, c in self._costs.values()])
        if float(y.std()) <= 0.0:
            return None
        # The GP models -standardise(y) (hpod.suggest.gp.targets): its mean m(x) is
        # -(log c(x) - mean) / std.
        post, _, _ = self.model.posterior(X, y, rng)
        return CostSurface(post, float(y.mean()), float(y.std()), self.startup, self.resource)

    def state(self) -> dict[str, Any]:
        return self.model.state()

    def load_state(self, state: Mapping[str, Any], where: str) -> None:
        self.model.load_state(state, where)


class CostSurface:
    """log cost(x) - log cost(x_0), from the posterior of the log rate: the GP models
    -(y - mean) / std, so g(x) = mean - std * m(x)."""

    def __init__(self, posterior: GPPosterior, mean: float, std: float, startup: float,
                 resource: float) -> None:
        self.posterior = posterior
        self.mean = mean
        self.std = std
        self.startup = startup
        self.resource = resource

    def penalty(self, m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(penalty, d penalty / d m) at the GP means m."""
        direct = self._direct_penalty(m)
        return direct if direct is not None else self._log_penalty(m)

    def _direct_penalty(self, m: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """The penalty computed in seconds, None where a term overflows (rates near the
        float limits, e.g. 1e-320 s per epoch, put e^-mean or e^(g - mean) past 1.8e308)."""
        # Computed relative to x_0 (g = mean), so startup + resource * e^g stays near the
        # scale of an ordinary cost.
        try:
            base = self.startup * math.exp(-self.mean)
        except OverflowError:
            return None
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            ratio = self.resource * np.exp(-self.std * m)  # resource * e^(g - mean)
            penalty = np.log(base + ratio) - math.log(base + self.resource)
            slope = -self.std * ratio / (base + ratio)
        if not (np.all(np.isfinite(penalty)) and np.all(np.isfinite(slope))):
            return None
        return penalty, slope

    def _log_penalty(self, m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The same penalty with every term kept as its log, finite for any finite rates."""
        log_resource = math.log(self.resource)
        log_base = math.log(self.startup) - self.mean if self.startup > 0 else -math.inf
        log_ratio = log_resource - self.std * m
        log_total = np.logaddexp(log_base, log_ratio)
        penalty = log_total - np.logaddexp(log_base, log_resource)
        return penalty, -self.std * np.exp(log_ratio - log_total)

    def log_cost(self, X: np.ndarray) -> np.ndarray:
        """(m,) log cost(x) - log cost(x_0) at X (m, d)."""
        return self.penalty(self.posterior.mean(X))[0]

    def log_cost_and_grad(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """((m,), (m, d)): log_cost and its gradient in X."""
        mean, dmean = self.posterior.mean_grad(X)
        penalty, slope = self.penalty(mean)
        return penalty, slope[:, None] * dmean


class PerCost:
    """An acquisition minus the point's log cost (relative to x_0): for log EI, log(EI / cost)."""

    def __init__(self, inner: Acquisition, surface: CostSurface) -> None:
        self.inner = inner
        self.surface = surface

    def __call__(self, Xq: np.ndarray) -> np.ndarray:
        return self.inner(Xq) - self.surface.log_cost(Xq)

    def value_and_grad(self, Xq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        values, grad = self.inner.value_and_grad(Xq)
        penalty, dpenalty = self.surface.log_cost_and_grad(Xq)
        return values - penalty, grad - dpenalty
