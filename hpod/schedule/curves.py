"""Synthetic learning-curve families for the simulator (research notes §4.3), all losses.

Each family draws a curve's final quality independently of how fast it learns, so curves cross
and early stopping can be wrong: the honest test for a scheduler. Seeded; no global state.
"""

from __future__ import annotations

import math
import random

from hpod.schedule.simulate import Curve


def _cost(rng: random.Random, cost_spread: float) -> float:
    # Config-dependent seconds per step, log-uniform in [e^-spread, e^spread]: stragglers.
    return math.exp(rng.uniform(-cost_spread, cost_spread)) if cost_spread else 1.0


def _noisy(values: list[float], rng: random.Random, noise: float) -> tuple[float, ...]:
    return tuple(v + rng.gauss(0.0, noise) for v in values) if noise else tuple(values)


def exp_decay_curves(
    n: int, *, n_steps: int = 81, seed: int = 0, noise: float = 0.0, cost_spread: float = 0.0
) -> list[Curve]:
    """y(t) = a + b * exp(-t / tau), asymptote a ~ U(0.05, 0.5), drop b ~ U(0.3, 1),
    time constant tau log-uniform in [1, n_steps / 3]: slow learners may end best."""
    rng = random.Random(seed)
    curves = []
    for _ in range(n):
        a, b = rng.uniform(0.05, 0.5), rng.uniform(0.3, 1.0)
        tau = math.exp(rng.uniform(0.0, math.log(max(n_steps / 3, 1.0))))
        cost = _cost(rng, cost_spread)
        values = [a + b * math.exp(-t / tau) for t in range(1, n_steps + 1)]
        curves.append(Curve(_noisy(values, rng, noise), cost))
    return curves


def power_law_curves(
    n: int, *, n_steps: int = 81, seed: int = 0, noise: float = 0.0, cost_spread: float = 0.0
) -> list[Curve]:
    """y(t) = f + a * t**-b with f ~ U(0.05, 0.6), a ~ U(0.2, 2), b ~ U(0.3, 1.5) independent:
    the parametric form of the research notes, with frequent crossings."""
    rng = random.Random(seed)
    curves = []
    for _ in range(n):
        f, a, b = rng.uniform(0.05, 0.6), rng.uniform(0.2, 2.0), rng.uniform(0.3, 1.5)
        cost = _cost(rng, cost_spread)
        values = [f + a * t**-b for t in range(1, n_steps + 1)]
        curves.append(Curve(_noisy(values, rng, noise), cost))
    return curves
