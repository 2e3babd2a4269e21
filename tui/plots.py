"""The study view's three charts as data (pure): learning curves, best so far, parameter scatter."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from hpod.store import StudyRecord, TrialRecord, TrialState

from . import format as fmt
from .messages import StepValues
from .model import (
    best_so_far,
    param_choices,
    param_is_log,
    resource_metric,
    rung_levels,
)
from .widgets.chart import Plot, Series
from .widgets.points import Points

MAX_CURVES = 12  # beyond this a braille chart is a blur; the legend says how many are hidden


def curves_plot(
    study: StudyRecord,
    curves: Mapping[int, Points],
    numbers: Mapping[int, int],
    focus: int | None,
) -> Plot:
    """The objective over steps (or the scheduler's resource) for the chosen trials."""
    axis = resource_metric(study) or "step"
    rungs = tuple(rung_levels(study))
    shown = sorted(curves, key=lambda tid: (tid != focus, numbers.get(tid, tid)))[:MAX_CURVES]
    series = tuple(
        Series(
            f"#{numbers.get(tid, '?')}",
            curves[tid],  # as is: the chart decimates long curves from their columns
            emphasis=tid == focus and len(shown) > 1,
        )
        for tid in sorted(shown, key=lambda tid: numbers.get(tid, tid))
    )
    title = f"{study.metric} by {axis}"
    if rungs:
        title += " · rungs ┊"
    if len(curves) > len(shown):
        title += f" · {len(curves) - len(shown)} more marked"
    ticks = tuple((r, fmt.value(r, 3)) for r in rungs) or None
    return Plot(
        series,
        markers=rungs,
        x_ticks=ticks,
        title=title,
        empty="no reports yet for the selected trial (space marks more trials to compare)",
    )


def best_plot(study: StudyRecord, trials: Iterable[TrialRecord], now: float) -> Plot:
    """Every completed trial's value (dots) and the best so far (a step line) against time."""
    trials = list(trials)
    start = study.created_at
    done = [
        (t.finished_at - start, t.value)
        for t in trials
        if t.state is TrialState.COMPLETE
        and t.finished_at is not None
        and t.value is not None
        and math.isfinite(t.value)
    ]
    steps: list[tuple[float, float]] = []
    for time, value in best_so_far(trials, study.direction):
        if steps:
            steps.append((time - start, steps[-1][1]))  # hold the old best until this moment
        steps.append((time - start, value))
    if steps:
        end = (study.finished_at or now) - start
        steps.append((max(end, steps[-1][0]), steps[-1][1]))
    return Plot(
        (Series("trials", done, lines=False), Series("best so far", steps, emphasis=True)),
        x_format=fmt.duration,
        title=f"{study.direction.value} {study.metric} · since the study started",
        empty="no completed trial yet",
    )


def params_plot(
    study: StudyRecord, trials: Iterable[TrialRecord], name: str | None, best_id: int | None,
    note: str = "", at_step: StepValues | None = None,
) -> Plot:
    """The objective of each completed trial against one parameter, or what each trial
    reported `at_step`; the best trial stands out. `note` follows the parameter's name in the
    title (its importance)."""
    if name is None:
        return Plot(title="no searched parameters", empty="this study searches no parameter")
    choices = param_choices(study, name)
    points: list[tuple[float, float]] = []
    best: list[tuple[float, float]] = []
    for trial in trials:
        if at_step is not None:
            value = at_step.values.get(trial.id)
        else:
            value = trial.value if trial.state is TrialState.COMPLETE else None
        x = _x(trial.params.get(name), choices)
        if x is None or value is None or not math.isfinite(value):
            continue
        (best if trial.id == best_id else points).append((x, value))
    ticks = None
    if choices is not None:
        ticks = tuple((float(i), fmt.truncate(fmt.param(c), 8)) for i, c in enumerate(choices))
    if at_step is None:
        metric, best_label = study.metric, "best"
        empty = f"no completed trial yet to plot against {name}"
    else:
        # The study's best trial is the best by its final value, not by its value here.
        metric, best_label = f"{study.metric} at step {at_step.step}", "best at the end"
        empty = (f"no trial reported a finite {study.metric} at step {at_step.step}"
                 if at_step.values else f"no trial reported step {at_step.step} yet")
    return Plot(
        (Series("", points, lines=False), Series(best_label, best, lines=False, emphasis=True)),
        x_log=param_is_log(study, name) and choices is None,
        x_ticks=ticks,
        title=f"{metric} vs {name}{note} · [ ] other parameter",
        empty=empty,
    )


def _x(value: object, choices: list[object] | None) -> float | None:
    if choices is not None:
        return float(choices.index(value)) if value in choices else None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)
