"""The study view's parameter importance (hpod.importance) over the trials the view already holds.

Pure functions; the study screen runs `compute` in a worker thread (a GP fit takes a fraction of
a second to a second, too long for the UI thread) each time more trials have completed, at most
every `wait_after(cost)` seconds. Like `hpod importance`, it compares the complete trials' final
values; while they are too few for more than a rough reading (under a scheduler most trials stop
early) it compares what more trials reported at the step most of them reached, as
`hpod importance --step` would.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hpod.store import StudyRecord, TrialRecord, TrialState

from .messages import StepValues

if TYPE_CHECKING:  # the module itself loads numpy and scipy: only in the worker, when needed
    from hpod.importance import Importance

REFRESH_S = 10.0
# A computation may take this share of one core at most: the trials the screen watches need the
# CPU more than a refreshed chart title does.
MAX_CPU_SHARE = 0.05


def wait_after(cost: float) -> float:
    """Seconds until the next computation after one that took `cost` seconds."""
    return max(REFRESH_S, cost / MAX_CPU_SHARE)


@dataclass(frozen=True, slots=True)
class Reading:
    """What `compute` found: the importance (None: too few results for one), the values at a
    step it compared (None: the complete trials' final values), and whether values at a step
    are wanted (the complete trials are too few)."""

    importance: Importance | None = None
    at_step: StepValues | None = None
    wants_step_values: bool = False


def compute(study: StudyRecord, trials: Sequence[TrialRecord],
            at_step: StepValues | None = None) -> Reading:
    """The importance of the study's parameters from its complete trials; while those are
    too few for more than a rough reading, from the values `at_step` when there are more of
    them; nothing without a definition or with too few results of either kind (the chart
    then just says nothing about it)."""
    from hpod.importance import ROUGH_BELOW_PER_PARAM, importance, min_results, results_of_trials

    if study.spec is None:
        return Reading()
    final = results_of_trials(study, trials)
    if len(final.values) >= ROUGH_BELOW_PER_PARAM * final.space.dim:
        return Reading(importance(final.space, final.points, final.values))
    need = min_results(final.space)
    if at_step is not None:
        stepped = results_of_trials(study, trials, at_step.values, at_step.step)
        # Counted over the settled trials, as the step is chosen: a trial between its last
        # report and its exit is not one more result than the final values have.
        settled = sum(1 for t in trials if t.id in at_step.values
                      and t.state not in (TrialState.QUEUED, TrialState.RUNNING))
        if len(stepped.values) >= need and settled > len(final.values):
            return Reading(importance(stepped.space, stepped.points, stepped.values),
                           at_step, wants_step_values=True)
    if len(final.values) >= need:
        return Reading(importance(final.space, final.points, final.values),
                       wants_step_values=True)
    return Reading(wants_step_values=True)


def ranked(names: Sequence[str], imp: Importance | None) -> list[str]:
    """The parameters most important first when known, else in the study file's order."""
    if imp is None or not imp.varies:
        return list(names)
    rank = {p.name: i for i, p in enumerate(imp.params)}
    return sorted(names, key=lambda name: rank.get(name, len(rank)))


def note(reading: Reading | None, name: str) -> str:
    """What the params chart's title says of `name`: " · explains 61% alone, 70% with
    interactions"."""
    imp = None if reading is None else reading.importance
    if imp is None or not imp.varies:
        return ""
    share = next((p for p in imp.params if p.name == name), None)
    if share is None:
        return ""
    rough = ", rough" if imp.rough else ""
    return (f" · explains {share.alone:.0%} alone, {share.with_interactions:.0%} with "
            f"interactions{rough}")
