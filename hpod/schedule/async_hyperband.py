"""Asynchronous Hyperband: ASHA run over several brackets (research notes §2.4).

Bracket s (0-based) starts judging trials at rung level r_s = levels[s]; the last possible
bracket, s = number of rungs, trains everything to max_resource (plain random search, the
hedge of Li et al.'s Hyperband). Each bracket has its own rung ladder (ray's and optuna's
design, the stronger hedge): a trial is only ever compared with trials of its own bracket.

Bracket probabilities follow synchronous Hyperband's bracket sizes (syne-tune's default
distribution): P(s) proportional to 1 / ((S - s) * r_s), with S brackets and r_S = max_resource.

Assignment is deterministic and order-based, not hashed: the j-th new trial gets the bracket
where the golden-ratio sequence u_j = frac(offset + j * 0.618...) falls in the cumulative
distribution. The sequence is low-discrepancy, so even 20 trials split close to the target
proportions; `seed` only moves the offset. Replaying the same starts gives the same brackets.
"""

from __future__ import annotations

import math
import random

from hpod.schedule.asha import ASHAScheduler
from hpod.schedule.base import check_positive

_GOLDEN = (math.sqrt(5.0) - 1.0) / 2.0


class AsyncHyperbandScheduler(ASHAScheduler):
    def __init__(
        self,
        *,
        max_resource: float | None = None,
        direction: str = "minimize",
        min_resource: float = 1,
        reduction_factor: float = 3,
        mode: str = "stop",
        brackets: int | None = None,
        seed: int = 0,
    ) -> None:
        if brackets is not None:
            check_positive("brackets", brackets, integer=True)
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ValueError(f"`seed` must be an integer, got {seed!r}.")
        self._brackets_option = brackets
        self._offset = random.Random(seed).random()
        self._n_assigned = 0
        super().__init__(
            max_resource=max_resource,
            direction=direction,
            min_resource=min_resource,
            reduction_factor=reduction_factor,
            mode=mode,
        )
        self.probabilities = bracket_probabilities(self.levels, self.max_resource,
                                                   len(self._ladders))
        self._cumulative = [sum(self.probabilities[: s + 1]) for s in range(len(self._ladders))]

    def _bracket_levels(self) -> list[tuple[float, ...]]:
        most = len(self.levels) + 1
        n = most if self._brackets_option is None else int(self._brackets_option)
        if n > most:
            raise ValueError(
                f"`brackets` is {n}, but min_resource={self.min_resource}, "
                f"max_resource={self.max_resource} and reduction_factor={self.eta} allow at most "
                f"{most} (one per rung level plus one without stopping). Fix: brackets <= {most}."
            )
        return [self.levels[s:] for s in range(n)]

    def _assign_bracket(self, trial_id: int) -> int:
        u = (self._offset + self._n_assigned * _GOLDEN) % 1.0
        self._n_assigned += 1
        for s, edge in enumerate(self._cumulative):
            if u < edge:
                return s
        return len(self._cumulative) - 1  # u within rounding of 1.0


def bracket_probabilities(
    levels: tuple[float, ...], max_resource: float, n_brackets: int
) -> list[float]:
    """P(s) proportional to 1 / ((S - s) * r_s): synchronous Hyperband's bracket sizes
    n_s = ceil(S / (S - s) * eta**(S-1-s)) up to rounding, for geometric levels."""
    starts = [*levels, max_resource]
    weights = [1.0 / ((n_brackets - s) * starts[s]) for s in range(n_brackets)]
    total = sum(weights)
    return [w / total for w in weights]
