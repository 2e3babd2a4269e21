"""Synchronous Hyperband (Li et al., JMLR 2018): successive-halving cohorts over several brackets.

With K rung levels below max_resource there are S = K + 1 brackets. Bracket s (s halvings,
s = K .. 0) starts at rung level index K - s with n_s = ceil(S / (s + 1) * eta**s) trials; s = 0
trains n_0 trials straight to max_resource. Cohorts cycle through the brackets, most aggressive
first, as in the paper's outer loop. For min_resource = 1, max_resource = 81, eta = 3 this is
the paper's table: (n, r) = (81, 1), (34, 3), (15, 9), (8, 27), (5, 81), and within bracket
s = 3 the cohort goes 34 -> 11 -> 3 -> 1.

Each cohort is run by the synchronous rule in `hpod.schedule.sh` (pause at the rung, top
max(1, floor(m * q_k)) go on, overlapping cohorts).
"""

from __future__ import annotations

import math

from hpod.schedule.rungs import rung_levels
from hpod.schedule.sh import CohortScheduler


def hyperband_brackets(
    min_resource: float, max_resource: float, reduction_factor: float
) -> list[tuple[int, float]]:
    """(n trials, starting resource) per bracket, most aggressive bracket first."""
    levels = rung_levels(min_resource, max_resource, reduction_factor)
    starts = [*levels, max_resource]
    n_brackets = len(levels) + 1
    brackets = []
    for s in range(len(levels), -1, -1):
        n = math.ceil(n_brackets / (s + 1) * reduction_factor**s - 1e-9)
        brackets.append((n, starts[len(levels) - s]))
    return brackets


class HyperbandScheduler(CohortScheduler):
    def __init__(
        self,
        *,
        max_resource: float | None = None,
        direction: str = "minimize",
        min_resource: float = 1,
        reduction_factor: float = 3,
    ) -> None:
        super().__init__(
            max_resource=max_resource,
            direction=direction,
            min_resource=min_resource,
            reduction_factor=reduction_factor,
        )
        self.brackets = hyperband_brackets(min_resource, self.max_resource, self.eta)

    def _cohort_spec(self, index: int) -> tuple[int, int]:
        n, _ = self.brackets[index % len(self.brackets)]
        s = len(self.levels) - index % len(self.brackets)  # halvings in this bracket
        return n, len(self.levels) - s
