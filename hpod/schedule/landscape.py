"""Synthetic learning curves over a study's own search space, for `hpod simulate` and benchmarks.

Every point of the space gets a learning curve that is a smooth function of its (encoded)
parameters, so that a model-based suggester has something to learn, and that is hard for early
stopping in the ways real curves are (research notes §4.3):

- the final value has one broad basin with ripples, some parameters mattering more than others;
- how high a curve starts and how fast it falls are smooth functions of the point too, drawn
  independently of where it ends (the parametric curves of research notes §4.3, 3): curves
  cross, and a rung-1 ranking is a weak guide to the final ranking (rank correlation with the
  final value about 0.4 to 0.55 at 1/27 of training, 0.7 to 0.9 at 1/9, 0.95 at 1/3);
- every report carries Gaussian noise (the same point always replays the same noise);
- the seconds per epoch depend on the configuration (log-uniform over a factor e^spread
  either way, averaging `epoch_seconds`): stragglers.

Values are losses, loss(t) = f(x) + a(x) * u**-b(x) + noise with u = 27 t / R (at least 0.5):
the same shape over the fraction of training whatever R is; f in [0.05, 0.45], a in [0.2, 2],
b in [0.5, 1.5]. A maximised objective gets 1 - loss (an accuracy-like value). Everything is
drawn from `seed`; no global state.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from hpod.schedule.simulate import Curve
from hpod.space import Space
from hpod.space_params import CategoricalParam

_COST_SAMPLES = 256
_UNITS = 27.0  # u = _UNITS * t / R: a curve's shape is a function of the fraction trained


class SyntheticCurves:
    """Curves for points of `space`, trained up to `max_resource` (epochs, or a fraction).

    With whole-number bounds a curve reports at steps 1, 2, ..., max_resource; otherwise at
    n equal steps up to max_resource, n = ceil(max_resource / min_resource) (10 without
    min_resource).
    """

    def __init__(self, space: Space, *, max_resource: float, min_resource: float | None = None,
                 maximize: bool = False, seed: int = 0, noise: float = 0.01,
                 cost_spread: float = 1.0, epoch_seconds: float = 1.0) -> None:
        if not (math.isfinite(max_resource) and max_resource > 0):
            raise ValueError(f"`max_resource` must be > 0, got {max_resource!r}")
        if min_resource is not None and not 0 < min_resource < max_resource:
            raise ValueError(f"`min_resource` must be in (0, max_resource), got {min_resource!r}")
        if noise < 0 or cost_spread < 0 or not epoch_seconds > 0:
            raise ValueError("`noise` and `cost_spread` must be >= 0 and `epoch_seconds` > 0")
        self.space = space
        self.max_resource = max_resource
        self.min_resource = min_resource
        self.maximize = maximize
        self.seed = seed
        self.noise = noise
        self.cost_spread = cost_spread
        self.epoch_seconds = epoch_seconds
        rng = np.random.default_rng([seed, 0x5EED])
        d = space.dim
        self._center = rng.uniform(0.15, 0.85, d)
        weights = np.exp(rng.uniform(-1.0, 1.0, d))
        self._weight = weights / weights.sum()
        self._directions = rng.normal(size=(3, d)) / math.sqrt(d)
        self._phases = rng.uniform(0.0, 2 * math.pi, 3)
        # Where each choice of a categorical sits on its axis: choices are unordered.
        self._choice_at = {p.name: rng.uniform(0.0, 1.0, p.count)
                           for p in space.params if isinstance(p, CategoricalParam)}
        # Scale the costs so that a uniformly drawn point's epoch averages epoch_seconds.
        self._cost_scale = 1.0
        draws = [self._shape(self._encode(space.sample(rng)))[3] for _ in range(_COST_SAMPLES)]
        self._cost_scale = epoch_seconds / (sum(draws) / len(draws))

    # -- the landscape -------------------------------------------------------------------------

    def _encode(self, params: Mapping[str, Any]) -> np.ndarray:
        x = np.empty(self.space.dim)
        for i, p in enumerate(self.space.params):
            if isinstance(p, CategoricalParam):
                x[i] = self._choice_at[p.name][p.index(params[p.name])]
            else:
                x[i] = min(max(p.encode(params[p.name]), 0.0), 1.0)
        return x

    def _wave(self, k: int, x: np.ndarray) -> float:
        """A smooth function of the point with values in [0, 1]."""
        return 0.5 + 0.5 * math.sin(2 * math.pi * float(self._directions[k] @ x) + self._phases[k])

    def _shape(self, x: np.ndarray) -> tuple[float, float, float, float]:
        """(asymptote f, scale a, decay exponent b, seconds per unit of resource)."""
        delta = x - self._center
        basin = float(self._weight @ delta**2) / 0.08
        ripple = 0.15 * float(self._weight @ np.sin(3 * math.pi * delta) ** 2)
        final = 0.05 + 0.4 * math.tanh((basin + ripple) / 2)  # 0.05 at the optimum
        scale = 0.2 + 1.8 * self._wave(0, x)
        exponent = 0.5 + 1.0 * self._wave(1, x)
        seconds = self._cost_scale * math.exp(self.cost_spread * (2 * self._wave(2, x) - 1))
        return final, scale, exponent, seconds

    def steps(self, max_resource: float | None = None) -> tuple[float, ...]:
        top = self.max_resource if max_resource is None else max_resource
        if float(top).is_integer() and (self.min_resource is None
                                        or float(self.min_resource).is_integer()):
            return tuple(float(t) for t in range(1, int(top) + 1))
        n = 10 if self.min_resource is None else math.ceil(top / self.min_resource - 1e-9)
        return tuple(top * j / n for j in range(1, n + 1))

    def curve(self, params: Mapping[str, Any], max_resource: float | None = None) -> Curve:
        """The curve of `params`, trained to `max_resource` (default: the landscape's)."""
        final, scale, exponent, seconds = self._shape(self._encode(params))
        steps = self.steps(max_resource)
        rng = np.random.default_rng([self.seed, self._point_hash(params)])
        noise = rng.normal(0.0, self.noise, len(steps)) if self.noise else np.zeros(len(steps))
        values = [self._loss(final, scale, exponent, t) + float(e) for t, e in zip(steps, noise)]
        if self.maximize:
            values = [1.0 - v for v in values]
        per_step = seconds * (steps[-1] / len(steps))  # seconds per unit of resource * step size
        whole = all(t == i for i, t in enumerate(steps, 1))
        return Curve(tuple(values), per_step, None if whole else steps)

    def final(self, params: Mapping[str, Any]) -> float:
        """The noise-free value at max_resource: the point's true quality."""
        final, scale, exponent, _seconds = self._shape(self._encode(params))
        loss = self._loss(final, scale, exponent, self.max_resource)
        return 1.0 - loss if self.maximize else loss

    def _loss(self, final: float, scale: float, exponent: float, t: float) -> float:
        u = max(_UNITS * t / self.max_resource, 0.5)
        return final + scale * u**-exponent

    def _point_hash(self, params: Mapping[str, Any]) -> int:
        # Stable across processes (Python's hash() of a str is salted per process).
        text = repr(self.space.key(params)).encode()
        return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little")
