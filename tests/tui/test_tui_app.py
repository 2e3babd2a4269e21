"""The app through Textual's pilot on a seeded database: navigation, sorting, filtering,
live updates, selection kept across refreshes, and the 80x24 layout."""

from __future__ import annotations

from conftest import Seeded, wait_for
from hpod.store import MetricPoint, TrialState, open_store
from hpod.tui.screens.confirm import ConfirmScreen
from hpod.tui.screens.events import EventsScreen
from hpod.tui.screens.help import HelpScreen
from hpod.tui.screens.studies import StudiesScreen
from hpod.tui.screens.study import StudyScreen
from hpod.tui.screens.trial import TrialScreen
from hpod.tui.widgets.chart import Chart
from hpod.tui.widgets.trial_table import TrialTable
from textual.widgets import Input, Log, Static, TabbedContent


async def open_study(app, pilot) -> StudyScreen:
    await wait_for(pilot, lambda: app.screen.table.row_count == 3, "the three studies")
    await pilot.press("enter")  # the cursor starts on the first study, demo
    screen = await wait_for(
        pilot, lambda: isinstance(app.screen, StudyScreen) and app.screen, "the study screen"
    )
    await wait_for(pilot, lambda: screen.table.total == 12 and not screen._loading, "the trials")
    return screen


def lines(log: Log) -> list[str]:
    return [line for line in log.lines if line]  # a text ending in "\n" leaves an empty last line


def numbers(table: TrialTable) -> list[int]:
    return [table.trial(key).number for key in table.order]


async def test_navigation_between_screens(make_app, seeded: Seeded) -> None:
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        assert isinstance(app.screen, StudiesScreen)
        await wait_for(pilot, lambda: app.screen.table.row_count == 3, "the studies")
        assert list(app.screen.table.order) == ["demo", "broken", "finished"]

        # An invalid study shows its error and does not open.
        await pilot.press("down")
        detail = app.screen.query_one("#study-detail", Static)
        assert "budget: is required" in str(detail.render())
        await pilot.press("enter")
        assert isinstance(app.screen, StudiesScreen)
        await pilot.press("up")

        study = await open_study(app, pilot)
        assert numbers(study.table)[0] == 11  # newest first
        await pilot.press("enter")
        trial = await wait_for(pilot, lambda: isinstance(app.screen, TrialScreen) and app.screen,
                               "the trial screen")  # fmt: skip
        assert trial.trial.number == 11
        await wait_for(pilot, lambda: "loss" in trial._points, "the trial's metrics")
        assert [p.step for p in trial._points["loss"]] == list(range(12))
        await pilot.press("escape")
        assert app.screen is study
        await pilot.press("escape")
        assert isinstance(app.screen, StudiesScreen)

        await pilot.press("e")
        events = app.screen
        assert isinstance(events, EventsScreen)
        await wait_for(pilot, lambda: events.table.row_count == 3, "the events")
        ids = [int(key) for key in events.table.order]
        assert ids == sorted(ids, reverse=True)  # newest first
        await pilot.press("w")  # warnings and errors only: all three seeded ones are
        assert events.table.row_count == 3

        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        assert ("w", "Warnings only") in app.screen.keys
        await pilot.press("escape")
        assert app.screen is events
        await pilot.press("escape")
        assert isinstance(app.screen, StudiesScreen)


async def test_sorting_by_key_and_by_header_click(make_app, seeded: Seeded) -> None:
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        study = await open_study(app, pilot)
        table = study.table
        # Trials 10 and 11 are still running with the lowest losses of the seed.
        table.sort_by("best")
        best = [table._rows_data[key].stats.best for key in table.order]
        assert best == sorted(best)
        await pilot.press("r")
        reversed_best = [table._rows_data[key].stats.best for key in table.order]
        assert reversed_best == sorted(best, reverse=True)

        # A click on the "state" header sorts by state: running ones first.
        x = 1 + sum(c.width + 1 for c in table.columns[:1]) + 2
        await pilot.click(TrialTable, offset=(x, 0))
        assert table.sort_column == "state"
        states = [table.trial(key).state for key in table.order]
        running = [s for s in states if s is TrialState.RUNNING]
        assert states[: len(running)] == running and len(running) == 4

        await pilot.press("s")  # cycles to the next column
        assert table.sort_column == "last"


async def test_filtering_and_clearing(make_app, seeded: Seeded) -> None:
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        study = await open_study(app, pilot)
        await pilot.press("slash")
        box = study.query_one("#filter", Input)
        assert box.has_focus
        await pilot.press(*"running")
        assert sorted(numbers(study.table)) == [3, 7, 10, 11]
        await pilot.press("space", *"sgd")
        assert sorted(numbers(study.table)) == [3, 7, 11]
        summary = study.query_one("#study-summary", Static)
        assert "filter 'running sgd': 3/12" in str(summary.render())
        await pilot.press("enter")  # back to the table, the filter stays
        assert study.table.has_focus and study.table.row_count == 3
        await pilot.press("escape")  # clears it
        assert study.table.row_count == 12 and not box.display
        assert isinstance(app.screen, StudyScreen)


async def test_new_trials_and_metrics_show_up_without_a_keypress(make_app, seeded: Seeded) -> None:
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        study = await open_study(app, pilot)
        running = seeded.trials[11]
        async with open_store(seeded.db_path, clock=seeded.clock) as store:
            new = await store.create_trial(seeded.study_id, {"lr": 0.5, "depth": 2, "opt": "sgd"})
            await store.transition(new.id, TrialState.RUNNING, placement="gpu:1")
            await store.add_metrics([MetricPoint(new.id, 0, "loss", 0.01, seeded.clock.now)],
                                    {new.id: (0, 0.01)})  # fmt: skip
            await store.add_metrics(
                [MetricPoint(running.id, 12, "loss", 0.001, seeded.clock.now)],
                {running.id: (12, 0.001)},
            )

        def shown() -> bool:
            fresh = study.table.trial(str(new.id))
            old = study.table.trial(str(running.id))
            return fresh is not None and fresh.last_step == 0 and old.last_step == 12

        await wait_for(pilot, shown, "the new trial and the new report in the table")
        assert study.table._rows_data[str(running.id)].stats.best == 0.001
        assert numbers(study.table)[0] == 12  # the new trial, at the top (newest first)
        # The curve of the trial under the cursor (still #11) got the new point too.
        await wait_for(pilot, lambda: any(y == 0.001 for _, y in study._curves.get(running.id, ())),
                       "the new point on the learning curve")  # fmt: skip


async def test_selection_and_scroll_survive_a_live_reorder(make_app, seeded: Seeded) -> None:
    app = make_app()
    async with app.run_test(size=(100, 24)) as pilot:
        study = await open_study(app, pilot)
        table = study.table
        for _ in range(8):
            await pilot.press("down")
        selected = table.cursor_key
        line_before = table.cursor_index - round(table.scroll_y)
        assert table.trial(selected).number == 3

        async with open_store(seeded.db_path, clock=seeded.clock) as store:
            for _ in range(2):
                await store.create_trial(seeded.study_id, {"lr": 0.5, "depth": 2, "opt": "sgd"})
        await wait_for(pilot, lambda: table.total == 14, "two new trials")
        assert table.cursor_key == selected  # the same trial, although it moved two rows down
        assert table.cursor_index - round(table.scroll_y) == line_before  # on the same line


async def test_every_screen_renders_at_80x24_in_both_themes(make_app, seeded: Seeded) -> None:
    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        study = await open_study(app, pilot)
        for _ in range(3):  # curves, best so far, params
            await pilot.press("g")
            await pilot.pause()
            chart = study.query_one(f"#{study.query_one('#charts', TabbedContent).active}-chart",
                                    Chart)  # fmt: skip
            assert chart.size.height >= 4
        await pilot.press("v")  # the table alone
        assert not study.query_one("#charts").display
        await pilot.press("t")
        assert app.theme == "textual-light"
        await pilot.press("enter")
        trial = await wait_for(pilot, lambda: isinstance(app.screen, TrialScreen) and app.screen,
                               "the trial screen")  # fmt: skip
        await pilot.press("m")  # the next metric, on the metrics tab
        assert trial._metric == "acc"
        await pilot.press("g", "g")  # stdout, stderr
        assert trial.query_one("#trial-tabs", TabbedContent).active == "stderr"
        await pilot.press("escape", "escape", "e")
        await pilot.pause()
        await pilot.press("t")
        assert app.theme == "textual-dark"
        await pilot.press("x")  # no control on the events screen: nothing happens
        assert not isinstance(app.screen, ConfirmScreen)


async def test_the_studies_table_hides_its_least_needed_columns_on_a_narrow_terminal(
        make_app, seeded: Seeded) -> None:
    def labels(table) -> list[str]:
        return [c.label for c in table.columns]

    app = make_app()
    async with app.run_test(size=(80, 24)) as pilot:
        table = app.screen.table
        await wait_for(pilot, lambda: table.row_count == 3, "the studies")
        assert "gpus" not in labels(table) and "trial" not in labels(table)
        assert labels(table)[:2] == ["study", "state"] and "left" in labels(table)
        assert table.virtual_size.width <= table.scrollable_content_region.width
        # A row shows the cells of the shown columns, in order, under their headers.
        header, line = table.render_line(0).text, table.render_line(1).text
        assert table.cursor_key == "demo"
        cells = dict(zip(["study", "state", "run", "done", "stop", "fail", "queue", "best",
                          "trial", "elapsed", "left", "gpus"],
                         (str(c) for c in table.row("demo").cells), strict=True))
        assert cells["trial"].startswith("#") and cells["trial"] not in line
        x = 1  # the gutter
        for column in table.columns:
            assert header[x:x + column.width].strip() == column.label
            assert line[x:x + column.width].strip() == cells[column.label], column.label
            x += column.width + 1
        await pilot.resize_terminal(140, 30)
        await wait_for(pilot, lambda: "gpus" in labels(table), "every column at 140 wide")
        assert len(labels(table)) == 12


async def test_a_studies_header_click_sorts_reverses_then_restores_the_order(
        make_app, seeded: Seeded) -> None:
    app = make_app()
    async with app.run_test(size=(120, 30)) as pilot:
        table = app.screen.table
        await wait_for(pilot, lambda: table.row_count == 3, "the studies")
        assert list(table.order) == ["demo", "broken", "finished"]  # the feed's order

        async def click(label: str) -> None:
            x = 1
            for column in table.columns:
                if column.label == label:
                    break
                x += column.width + 1
            await pilot.click("#studies", offset=(x + 1, 0))
            await pilot.pause()

        await click("study")
        assert list(table.order) == ["broken", "demo", "finished"]
        await click("study")
        assert list(table.order) == ["finished", "demo", "broken"]
        await click("study")
        assert list(table.order) == ["demo", "broken", "finished"]
        await click("best")  # studies with no best yet (the invalid one) come last
        with_best = [name for name in table.order if app.screen._summaries[name].best]
        assert with_best and list(table.order)[:len(with_best)] == with_best
        assert "broken" not in with_best


async def test_a_trial_shows_its_log_tails_as_they_grow(make_app, seeded: Seeded) -> None:
    trial = seeded.trials[11]
    log_dir = seeded.db_path.parent / "trials" / "demo" / f"{trial.number:05d}"
    log_dir.mkdir(parents=True)
    (log_dir / "stdout.log").write_text("epoch 1\n")
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await open_study(app, pilot)
        await pilot.press("enter")
        screen = await wait_for(pilot, lambda: isinstance(app.screen, TrialScreen) and app.screen,
                                "the trial screen")  # fmt: skip
        out = screen.query_one("#stdout-log", Log)
        await wait_for(pilot, lambda: lines(out) == ["epoch 1"], "the first log line")
        with (log_dir / "stdout.log").open("a") as f:
            f.write("epoch 2\n")
        (log_dir / "stderr.log").write_text("warning: slow\n")
        await wait_for(pilot, lambda: lines(out) == ["epoch 1", "epoch 2"], "the new line")
        err = screen.query_one("#stderr-log", Log)
        await wait_for(pilot, lambda: lines(err) == ["warning: slow"], "stderr")


async def test_keys_reach_the_table_after_the_layout_cycles_and_a_modal_closes(
        make_app, seeded: Seeded) -> None:
    """`v` through charts-only and back, then the help and back: the table has the keys again,
    and none of them went into the hidden filter (which emptied the table)."""
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        study = await open_study(app, pilot)
        await pilot.press("v", "v", "v")
        assert study.table.has_focus
        await pilot.press("question_mark")
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is study, "the study screen back")
        theme = app.theme
        await pilot.press("t")
        assert app.theme != theme  # the app's key, not a letter typed into the filter
        box = study.query_one("#filter", Input)
        assert box.value == "" and not box.display and not box.has_focus
        assert study.table.row_count == 12
