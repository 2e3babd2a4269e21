"""The study view's parameter importance (hpod.importance) over the trials the view already holds.

Pure functions; the study screen runs `compute` in a worker thread (a GP fit takes a fraction of
a second to a second, too long for the UI thread) each time more trials have completed, at most
every `wait_after(cost)` seconds.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from hpod.store import StudyRecord, TrialRecord

if TYPE_CHECKING:  # the module itself loads numpy and scipy: only in the worker, when needed
    from hpod.importance import Importance

REFRESH_S = 10.0
# A computation may take this share of one core at most: the trials the screen watches need the
# CPU more than a refreshed chart title does.
MAX_CPU_SHARE = 0.05


def wait_after(cost: float) -> float:
    """Seconds until the next computation after one that took `cost` seconds."""
    return max(REFRESH_S, cost / MAX_CPU_SHARE)


def compute(study: StudyRecord, trials: Iterable[TrialRecord]) -> Importance | None:
    """The importance of the study's parameters from its complete trials; None without a
    definition or with too few results (the chart then just says nothing about it)."""
    from hpod.importance import importance, min_results, results_of_trials

    if study.spec is None:
        return None
    results = results_of_trials(study, trials)
    if len(results.values) < min_results(results.space):
        return None
    return importance(results.space, results.points, results.values)


def ranked(names: Sequence[str], imp: Importance | None) -> list[str]:
    """The parameters most important first when known, else in the study file's order."""
    if imp is None or not imp.varies:
        return list(names)
    rank = {p.name: i for i, p in enumerate(imp.params)}
    return sorted(names, key=lambda name: rank.get(name, len(rank)))


def note(imp: Importance | None, name: str) -> str:
    """What the params chart's title says of `name`: " · 61% alone, 70% with interactions"."""
    if imp is None or not imp.varies:
        return ""
    share = next((p for p in imp.params if p.name == name), None)
    if share is None:
        return ""
    rough = ", rough" if imp.rough else ""
    return (f" · explains {share.alone:.0%} alone, {share.with_interactions:.0%} with "
            f"interactions{rough}")
