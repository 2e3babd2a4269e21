"""acquisition = "hedge": a portfolio of acquisitions that learns which one's picks pay (GP-Hedge,
Hoffman, Brochu and de Freitas, UAI 2011; scikit-optimize's default `gp_hedge`).

Each suggestion, every acquisition of the portfolio nominates its best point; one nominee is
chosen with probability softmax(eta * gains). At the next suggestion each acquisition's gain grows
by the GP's posterior mean (a target to maximise) at its last nominee, under the model that now
knows more: an acquisition whose picks the data says are good gets chosen more often.

Why a portfolio: no single acquisition wins everywhere. On hpod's benchmark UCB alone (beta 1.96)
beats log EI on Ackley-5 and Hartmann-6 and loses 4-5x on Rosenbrock-4 (docs/benchmarks.md). In
the portfolio UCB takes the suggester's `beta` (2 by default).

State: the gains and the last nominees live in the suggester, like the kernel's warm start; the
daemon saves them with every suggestion (hpod.suggest.base.Resumable), so a restarted study keeps
what its portfolio learned.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from hpod.suggest.gp.state import field, finite_array

PORTFOLIO = ("logei", "ucb")
# scikit-optimize's default; the targets are standardised, so a gain of 1 is one standard
# deviation of the data, summed over suggestions.
_ETA = 1.0


class Hedge:
    def __init__(self, members: tuple[str, ...] = PORTFOLIO, eta: float = _ETA) -> None:
        self.members = members
        self.eta = eta
        self.gains = np.zeros(len(members))
        # (members, their nominees (k, d) encoded) of the last suggestion, until credited
        self._last: tuple[np.ndarray, np.ndarray] | None = None

    def update(self, posterior_mean: Callable[[np.ndarray], np.ndarray]) -> None:
        """Credit each member that nominated a point last time with the posterior mean (of the
        model that now knows more) there."""
        if self._last is None:
            return
        members, nominees = self._last
        self.gains[members] += posterior_mean(nominees)
        self._last = None

    def choose(self, members: Sequence[int], nominees: np.ndarray,
               rng: np.random.Generator) -> int:
        """The member (one of `members`, the indices that nominated the rows of nominees (k, d))
        whose nominee is proposed. A member with nothing to nominate (every point it ranked is
        taken) sits the round out, uncredited."""
        index = np.asarray(members, dtype=np.int64)
        self._last = (index, np.array(nominees, dtype=float))
        gains = self.gains[index]
        p = np.exp(self.eta * (gains - gains.max()))
        return int(index[rng.choice(len(p), p=p / p.sum())])

    def state(self) -> dict[str, Any]:
        last = None
        if self._last is not None:
            members, nominees = self._last
            last = {"members": members.tolist(), "nominees": nominees.tolist()}
        return {"gains": self.gains.tolist(), "last": last}

    def load_state(self, state: Mapping[str, Any], dim: int, where: str = "hedge") -> None:
        """`dim`: the nominees' length (the encoded space's)."""
        gains = finite_array(field(state, "gains", where), f"{where}.gains", (len(self.members),))
        saved = field(state, "last", where)
        last = None
        if saved is not None:
            members = field(saved, "members", where)
            if not isinstance(members, list) or not members or any(
                    isinstance(m, bool) or not isinstance(m, int)
                    or not 0 <= m < len(self.members) for m in members):
                raise ValueError(f"{where}.last.members: expected indices below "
                                 f"{len(self.members)}, got {members!r}")
            nominees = finite_array(field(saved, "nominees", where), f"{where}.last.nominees",
                                    (len(members), dim))
            last = (np.asarray(members, dtype=np.int64), nominees)
        self.gains, self._last = gains, last
