"""The study view's params chart with parameter importance: computed off the UI thread from the
complete trials (or, while they are too few, the values at the step most trials reported), most
important parameter first, its share in the chart's title."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from conftest import SPEC, Clock, wait_for
from hpod.store import (
    Direction,
    MetricPoint,
    StudyRecord,
    StudyState,
    TrialRecord,
    TrialState,
    open_store,
)
from hpod.tui import param_importance
from hpod.tui.app import HpodApp
from hpod.tui.messages import StepValues
from hpod.tui.screens.study import StudyScreen
from hpod.tui.widgets.chart import Chart
from textual.pilot import Pilot


async def seed_study(db_path: Path, clock: Clock, n: int = 16,
                     went_on: int | None = None) -> int:
    """`opt` decides the loss at step 1, `lr` a little, `depth` not at all; `opt` is last in
    the file. Every trial completes there, or, as under a scheduler, only the first `went_on`
    go on to complete at step 27, where `depth` decides, and the others stop. Returns the
    study's id."""
    async with open_store(db_path, clock=clock) as store:
        study = await store.create_study(
            "which", str(db_path.parent.parent / "which.toml"), spec=SPEC, identity="x",
            direction=Direction.MINIMIZE, metric="loss")
        for number in range(n):
            params = {"lr": 10 ** -(1 + (number * 7 % 11) / 4), "depth": 1 + number * 5 % 8,
                      "opt": ["adam", "sgd"][number % 2]}
            loss = (1.0 if params["opt"] == "sgd" else 0.0) + 0.02 * params["lr"] * 10
            clock.now += 10
            trial = await store.create_trial(study.id, params)
            await store.transition(trial.id, TrialState.RUNNING)
            await store.add_metrics([MetricPoint(trial.id, 1, "loss", loss, clock.now)],
                                    {trial.id: (1, loss)})
            if went_on is not None and number < went_on:
                final = float(params["depth"])
                await store.add_metrics([MetricPoint(trial.id, 27, "loss", final, clock.now)],
                                        {trial.id: (27, final)})
            stopped = went_on is not None and number >= went_on
            await store.transition(trial.id, TrialState.STOPPED if stopped
                                   else TrialState.COMPLETE, exit_code=0)
        return study.id


@asynccontextmanager
async def params_chart(db_path: Path, clock: Clock,
                       ) -> AsyncIterator[tuple[Pilot[None], StudyScreen, Chart]]:
    """The app on the only study's screen, its params chart shown and its 16 trials read."""
    app = HpodApp(db_path, clock=clock, poll_interval=0.05)
    app.animation_level = "none"
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_for(pilot, lambda: app.screen.table.row_count == 1, "the study")
        await pilot.press("enter")
        screen = await wait_for(pilot, lambda: isinstance(app.screen, StudyScreen)
                                and app.screen, "the study screen")
        await wait_for(pilot, lambda: screen.table.total == 16 and not screen._loading,
                       "the trials")
        await pilot.press("g", "g")  # curves -> best so far -> params
        yield pilot, screen, screen.query_one("#params-chart", Chart)


def a_study() -> StudyRecord:
    return StudyRecord(id=1, name="s", path="s.toml", state=StudyState.RUNNING, spec=SPEC,
                       identity="x", direction=Direction.MINIMIZE, metric="loss", error=None,
                       created_at=0.0, updated_at=0.0, finished_at=None)


def a_trial(i: int, state: TrialState, value: float | None = None) -> TrialRecord:
    """Trial `i` of a_study(), with seed_study's params."""
    return TrialRecord(id=i, study_id=1, number=i, params={
        "lr": 10 ** -(1 + (i * 7 % 11) / 4), "depth": 1 + i * 5 % 8,
        "opt": ["adam", "sgd"][i % 2]}, state=state, attempt=0, value=value, last_step=1,
        reason=None, exit_code=0, checkpoint=None, placement=None, created_at=0.0,
        started_at=0.0, finished_at=0.0)


async def test_the_params_chart_starts_at_the_parameter_that_mattered_and_says_its_share(
        db_path: Path) -> None:
    clock = Clock()
    await seed_study(db_path, clock)
    async with params_chart(db_path, clock) as (pilot, screen, chart):
        title = await wait_for(pilot, lambda: "explains" in chart.plot_data.title
                               and chart.plot_data.title, "the importance in the title")
        assert title.startswith("loss vs opt · explains "), title
        assert "with interactions" in title and "rough" not in title  # 16 results, 3 params
        await pilot.press("right_square_bracket")  # the next most important: lr, then depth
        await wait_for(pilot, lambda: chart.plot_data.title.startswith("loss vs lr · explains"),
                       "lr's chart")


async def complete_more(db_path: Path, clock: Clock, study_id: int, n: int = 12) -> None:
    """`n` more complete trials, whose final loss `depth` decides."""
    async with open_store(db_path, clock=clock) as store:
        for number in range(n):
            params = {"lr": 10 ** -(1 + (number * 5 % 11) / 4), "depth": 1 + number * 3 % 8,
                      "opt": ["adam", "sgd"][number % 2]}
            clock.now += 10
            trial = await store.create_trial(study_id, params)
            await store.transition(trial.id, TrialState.RUNNING)
            await store.add_metrics([MetricPoint(trial.id, 27, "loss", params["depth"],
                                                 clock.now)], {trial.id: (27, params["depth"])})
            await store.transition(trial.id, TrialState.COMPLETE, exit_code=0)


async def test_while_few_trials_completed_the_chart_compares_them_at_the_busiest_step(
        db_path: Path, monkeypatch) -> None:
    # Each computation waits after the last one: not in this test, which needs two.
    monkeypatch.setattr(param_importance, "REFRESH_S", 0.0)
    monkeypatch.setattr(param_importance, "MAX_CPU_SHARE", 1.0)
    clock = Clock()
    study_id = await seed_study(db_path, clock, went_on=2)  # far too few to fit a surface to
    async with params_chart(db_path, clock) as (pilot, screen, chart):
        title = await wait_for(pilot, lambda: "explains" in chart.plot_data.title
                               and chart.plot_data.title, "the importance at step 1")
        assert title.startswith("loss at step 1 vs opt · explains "), title
        assert len(chart.plot_data.series[0].points) + len(
            chart.plot_data.series[1].points) == 16  # every trial's value at step 1
        assert screen._interest.step_values

        # 16 complete in all: past the rough line (5 results per parameter), so the final
        # values take over from the 16 at step 1.
        await complete_more(db_path, clock, study_id, n=14)
        title = await wait_for(pilot, lambda: chart.plot_data.title.startswith("loss vs ")
                               and "explains" in chart.plot_data.title
                               and chart.plot_data.title, "the importance of the final values")
        assert title.startswith("loss vs depth · explains "), title
        await wait_for(pilot, lambda: not screen._interest.step_values,
                       "the feed told to stop reading values at a step")


async def test_the_feed_reads_values_at_a_step_only_while_the_params_chart_shows(
        db_path: Path, monkeypatch) -> None:
    # The wait between computations is long here: a chart that came only after it would
    # never come within the test. A computation that fitted nothing starts no wait.
    monkeypatch.setattr(param_importance, "REFRESH_S", 3600.0)
    clock = Clock()
    await seed_study(db_path, clock, went_on=2)
    async with params_chart(db_path, clock) as (pilot, screen, chart):
        await wait_for(pilot, lambda: chart.plot_data.title.startswith("loss at step 1 vs opt")
                       and "explains" in chart.plot_data.title, "the chart at step 1")
        await pilot.press("g")  # params -> curves
        await wait_for(pilot, lambda: not screen._interest.step_values,
                       "the feed told to stop reading values at a step")
        await pilot.press("g", "g")  # back to params
        await wait_for(pilot, lambda: screen._interest.step_values, "asked again")


def test_rough_final_values_give_way_to_more_values_at_a_step() -> None:
    study = a_study()
    trials = [a_trial(i, TrialState.COMPLETE, float(i % 8)) if i < 6
              else a_trial(i, TrialState.STOPPED) for i in range(30)]
    at_step = StepValues(1, 1, {t.id: float(t.params["opt"] == "sgd") for t in trials})
    # 6 final values for 3 parameters: enough for a rough reading, and 30 at step 1.
    reading = param_importance.compute(study, trials, at_step)
    assert reading.at_step is at_step and reading.wants_step_values
    assert reading.importance is not None and not reading.importance.rough
    without = param_importance.compute(study, trials)
    assert without.at_step is None and without.importance.rough and without.wants_step_values
    final = [dataclasses.replace(t, state=TrialState.COMPLETE, value=float(t.params["depth"]))
             for t in trials]  # 30 final values: no longer rough
    reading = param_importance.compute(study, final, at_step)
    assert reading.at_step is None and not reading.wants_step_values


def test_the_chart_does_not_flap_as_each_trial_completes() -> None:
    # Without a scheduler every settled trial reported every step; a trial between its last
    # report and its exit is one value more at the step than in the final values, until it
    # exits a moment later. That is no reason to switch back and forth.
    study = a_study()
    sources = []
    trials = [a_trial(i, TrialState.COMPLETE, float(i % 5)) for i in range(6)]
    for i in range(6, 10):
        trials.append(a_trial(i, TrialState.RUNNING))  # reported step 9, not yet exited
        at_step = StepValues(1, 9, {t.id: float(t.id % 5) for t in trials})
        sources.append(param_importance.compute(study, trials, at_step).at_step is not None)
        trials[-1] = dataclasses.replace(trials[-1], state=TrialState.COMPLETE, value=i % 5)
        sources.append(param_importance.compute(study, trials, at_step).at_step is not None)
    assert sources == [False] * 8


def test_a_step_where_every_value_diverged_says_so() -> None:
    from hpod.tui.plots import params_plot

    study = a_study()
    trial = a_trial(7, TrialState.STOPPED)
    plot = params_plot(study, [trial], "lr", None, "", StepValues(1, 1, {7: math.nan}))
    assert plot.empty == "no trial reported a finite loss at step 1"
    plot = params_plot(study, [trial], "lr", None, "", StepValues(1, 1, {}))
    assert plot.empty == "no trial reported step 1 yet"


def test_without_enough_results_there_is_nothing_to_say() -> None:
    study = a_study()
    reading = param_importance.compute(study, [])
    assert reading.importance is None and reading.wants_step_values
    few = StepValues(study.id, 3, {})
    assert param_importance.compute(study, [], few).importance is None
    assert param_importance.note(None, "lr") == ""
    assert param_importance.ranked(["lr", "depth"], None) == ["lr", "depth"]


def test_a_costly_computation_waits_longer_before_the_next() -> None:
    assert param_importance.wait_after(0.1) == param_importance.REFRESH_S
    assert param_importance.wait_after(2.0) == 2.0 / param_importance.MAX_CPU_SHARE
