"""The study view's params chart with parameter importance: computed off the UI thread from the
complete trials, most important parameter first, its share in the chart's title."""

from __future__ import annotations

from pathlib import Path

from conftest import SPEC, Clock, wait_for
from hpod.store import Direction, MetricPoint, TrialState, open_store
from hpod.tui import param_importance
from hpod.tui.app import HpodApp
from hpod.tui.screens.study import StudyScreen
from hpod.tui.widgets.chart import Chart


async def seed_study(db_path: Path, clock: Clock, n: int = 16) -> None:
    """`opt` decides the loss, `lr` a little, `depth` not at all; `opt` is last in the file."""
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
            await store.transition(trial.id, TrialState.COMPLETE, exit_code=0)


async def test_the_params_chart_starts_at_the_parameter_that_mattered_and_says_its_share(
        db_path: Path) -> None:
    clock = Clock()
    await seed_study(db_path, clock)
    app = HpodApp(db_path, clock=clock, poll_interval=0.05)
    app.animation_level = "none"
    async with app.run_test(size=(120, 36)) as pilot:
        await wait_for(pilot, lambda: app.screen.table.row_count == 1, "the study")
        await pilot.press("enter")
        screen = await wait_for(pilot, lambda: isinstance(app.screen, StudyScreen) and app.screen,
                                "the study screen")
        await wait_for(pilot, lambda: screen.table.total == 16 and not screen._loading,
                       "the trials")
        chart = screen.query_one("#params-chart", Chart)
        await pilot.press("g", "g")  # curves -> best so far -> params
        title = await wait_for(pilot, lambda: "explains" in chart.plot_data.title
                               and chart.plot_data.title, "the importance in the title")
        assert title.startswith("loss vs opt · explains "), title
        assert "with interactions" in title and "rough" not in title  # 16 results, 3 params
        await pilot.press("right_square_bracket")  # the next most important: lr, then depth
        await wait_for(pilot, lambda: chart.plot_data.title.startswith("loss vs lr · explains"),
                       "lr's chart")


def test_without_enough_complete_trials_there_is_nothing_to_say() -> None:
    from hpod.store import StudyRecord, StudyState

    study = StudyRecord(id=1, name="s", path="s.toml", state=StudyState.RUNNING, spec=SPEC,
                        identity="x", direction=Direction.MINIMIZE, metric="loss", error=None,
                        created_at=0.0, updated_at=0.0, finished_at=None)
    assert param_importance.compute(study, []) is None
    assert param_importance.note(None, "lr") == ""
    assert param_importance.ranked(["lr", "depth"], None) == ["lr", "depth"]


def test_a_costly_computation_waits_longer_before_the_next() -> None:
    assert param_importance.wait_after(0.1) == param_importance.REFRESH_S
    assert param_importance.wait_after(2.0) == 2.0 / param_importance.MAX_CPU_SHARE
