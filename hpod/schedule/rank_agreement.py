"""How well a learning curve's value at each rung level ranks it against its final value.

A rung-based scheduler bets that trials ranked by their value at a rung keep roughly that order
to the end. How good a bet that is can be read off complete curves: the Spearman rank
correlation, across curves, between the value at a level and the final value. On hpod's
multi-fidelity benchmark (docs/benchmarks.md, 30 seeds) the first rung, at epoch 1 of 27, has
0.4-0.55 there, and `asha` + GP judging from it did worse than no stopping at all; judging from
epoch 3 (0.7-0.9) instead took it from 0.177 to 0.144 at half the budget. `hpod simulate` prints
the table and, when the first rung is below `WEAK_AGREEMENT`, what to change.

The value at a level is the report a rung scheduler judges there (hpod.schedule.rungs.Ladder):
the first one at or past the level, unless it is also at or past the next level (or is the
curve's last), in which case the scheduler judges it at that later level only and this level
learns nothing from the curve. Non-finite values count as the worst, as the schedulers count
them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from hpod.schedule.rungs import format_level, reached
from hpod.schedule.simulate import Curve

# Below this rank correlation a rung judges many trials wrongly (see the module docstring).
WEAK_AGREEMENT = 0.7
_MIN_CURVES = 5
# Schedulers that judge every trial from the first rung; the others start some brackets later.
_SINGLE_BRACKET = ("asha", "sh")


@dataclass(frozen=True)
class LevelAgreement:
    level: float
    curves: int  # curves judged at this level (see the module docstring)
    spearman: float  # nan when fewer than _MIN_CURVES curves, or all values tie


def rank_agreement(curves: Sequence[Curve], levels: Sequence[float],
                   maximize: bool = False) -> list[LevelAgreement]:
    """One LevelAgreement per level, over the curves a scheduler would judge there."""
    worst = -math.inf if maximize else math.inf
    out = []
    for k, level in enumerate(levels):
        bound = levels[k + 1] if k + 1 < len(levels) else None
        at_level, final = [], []
        for curve in curves:
            index = _judged_index(curve, level, bound)
            if index is not None:
                at_level.append(_or_worst(curve.values[index], worst))
                final.append(_or_worst(curve.values[-1], worst))
        out.append(LevelAgreement(level, len(final), _spearman(at_level, final)))
    return out


def weak_first_rung_advice(agreements: Sequence[LevelAgreement], scheduler: str) -> str | None:
    """What to change when the first rung ranks trials poorly, or None when it does not (or
    there are too few curves to tell)."""
    if not agreements or not agreements[0].spearman < WEAK_AGREEMENT:
        return None
    first = agreements[0]
    who = (f"`{scheduler}` is" if scheduler in _SINGLE_BRACKET
           else f"the brackets of `{scheduler}` that start there are")
    text = (f"the first rung (resource {format_level(first.level)}) ranks trials poorly "
            f"against their final values (Spearman {first.spearman:.2f} over {first.curves} curves): "
            f"{who} likely to stop trials that would have ended well.")
    # Not the last level: starting there leaves one rung, which saves little (at 9 of 10
    # epochs, 10 %) and is no longer successive halving.
    later = next((a for a in agreements[1:-1] if a.spearman >= WEAK_AGREEMENT), None)
    fixes = []
    if later is not None:
        fixes.append(f"judge later with `min_resource = {format_level(later.level)}` (Spearman "
                     f"{later.spearman:.2f} there)")
    if scheduler == "asha":
        fixes.append('hedge over several first rungs with `kind = "async-hyperband"`')
    if not fixes:
        fixes.append('let every trial run to the end (`kind = "fifo"`)')
    return text + " Consider: " + "; or ".join(fixes) + "."


def _judged_index(curve: Curve, level: float, bound: float | None) -> int | None:
    steps = curve.steps or tuple(float(i) for i in range(1, len(curve.values) + 1))
    index = next((i for i, step in enumerate(steps) if reached(step, level)), None)
    if index is None or index == len(steps) - 1:
        return None  # never reaches the level, or reaches it only at its end: nothing to predict
    if bound is not None and reached(steps[index], bound):
        return None  # jumps past the next level too: judged there, not here
    return index


def _or_worst(value: float, worst: float) -> float:
    return value if math.isfinite(value) else worst


def _spearman(a: Sequence[float], b: Sequence[float]) -> float:
    if len(a) < _MIN_CURVES:
        return math.nan
    from scipy.stats import rankdata  # ties get their mean rank, as Spearman's coefficient needs

    ra, rb = rankdata(a), rankdata(b)
    if ra.std() == 0.0 or rb.std() == 0.0:
        return math.nan
    return float(np.corrcoef(ra, rb)[0, 1])
