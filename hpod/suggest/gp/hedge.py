"""acquisition = "hedge": a portfolio of acquisitions that learns which one's picks pay (GP-Hedge,
Hoffman, Brochu and de Freitas, UAI 2011; scikit-optimize's default `gp_hedge`).

Each suggestion, every acquisition of the portfolio nominates its best point; one nominee is
chosen with probability softmax(eta * gains). At the next suggestion each acquisition's gain grows
by the GP's posterior mean (a target to maximise) at its last nominee, under the model that now
knows more: an acquisition whose picks the data says are good gets chosen more often.

Why a portfolio: no single acquisition wins everywhere. On hpod's benchmark UCB (beta 1.96)
beats log EI on Ackley-5 and Hartmann-6 and loses 4-5x on Rosenbrock-4 (docs/benchmarks.md).

State: the gains and the last nominees live in the suggester, like the kernel's warm start; a
restarted daemon starts the gains from zero.
"""

from __future__ import annotations

import numpy as np

from collections.abc import Callable

PORTFOLIO = ("logei", "ucb")
# scikit-optimize's default; the targets are standardised, so a gain of 1 is one standard
# deviation of the data, summed over suggestions.
_ETA = 1.0


class Hedge:
    def __init__(self, members: tuple[str, ...] = PORTFOLIO, eta: float = _ETA) -> None:
        self.members = members
        self.eta = eta
        self.gains = np.zeros(len(members))
        self._nominees: np.ndarray | None = None  # (k, d) encoded, from the last suggestion

    def update(self, posterior_mean: Callable[[np.ndarray], np.ndarray]) -> None:
        """Credit each member with the posterior mean (of the model that now knows more) at its
        last nominee."""
        if self._nominees is None:
            return
        self.gains += posterior_mean(self._nominees)
        self._nominees = None

    def choose(self, nominees: np.ndarray, rng: np.random.Generator) -> int:
        """Index of the member whose nominee (row of nominees (k, d)) is proposed."""
        self._nominees = np.array(nominees, dtype=float)
        logits = self.eta * (self.gains - self.gains.max())
        p = np.exp(logits)
        return int(rng.choice(len(p), p=p / p.sum()))
