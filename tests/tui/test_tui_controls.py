"""Controls: each key asks first, then writes the right command row; the UI shows the daemon's
answer. No daemon runs here: the test plays its part with the writer's finish_command."""

from __future__ import annotations

import pytest
from conftest import Seeded, wait_for
from hpod.store import CommandAction, CommandState, StoreReader, open_store
from hpod.tui.screens.confirm import ConfirmScreen
from hpod.tui.screens.study import StudyScreen
from hpod.tui.widgets.status import CommandBar


def commands(seeded: Seeded):
    with StoreReader(seeded.db_path) as reader:
        return reader.list_commands()


async def open_study(app, pilot) -> StudyScreen:
    await wait_for(pilot, lambda: app.screen.table.row_count == 3, "the studies")
    await pilot.press("enter")
    screen = await wait_for(pilot, lambda: isinstance(app.screen, StudyScreen) and app.screen,
                            "the study screen")  # fmt: skip
    await wait_for(pilot, lambda: screen.table.total == 12, "the trials")
    return screen


async def test_stop_trial_writes_a_command_and_shows_when_it_took_effect(
    make_app, seeded: Seeded
) -> None:
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        study = await open_study(app, pilot)
        assert study.table.trial(study.table.cursor_key).number == 11  # running, at the top
        await pilot.press("x")
        assert isinstance(app.screen, ConfirmScreen)
        assert "Stop trial demo#11?" in app.screen.question
        await pilot.press("y")
        sent = await wait_for(pilot, lambda: commands(seeded), "the command row")
        assert [(c.action, c.study, c.trial_number, c.state) for c in sent] == [
            (CommandAction.STOP_TRIAL, "demo", 11, CommandState.PENDING)
        ]
        bar = study.query_one(CommandBar)
        await wait_for(pilot, lambda: "waiting for the daemon" in str(bar.render()), "pending")

        async with open_store(seeded.db_path) as store:  # the daemon's part
            await store.finish_command(sent[0].id, CommandState.APPLIED, "trial 11 stopped")

        await wait_for(pilot, lambda: "applied" in str(bar.render()), "the command applied")
        assert "trial 11 stopped" in str(bar.render())
        assert bar.has_class("-applied")
        assert app.latest_command.state is CommandState.APPLIED


async def test_saying_no_writes_nothing(make_app, seeded: Seeded) -> None:
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        study = await open_study(app, pilot)
        await pilot.press("x")
        await pilot.press("n")
        assert app.screen is study
        await pilot.press("X", "escape")
        assert app.screen is study
        await pilot.pause()
    assert commands(seeded) == []


@pytest.mark.parametrize(
    ("keys", "action"),
    [
        (("p",), CommandAction.PAUSE_STUDY),
        (("X",), CommandAction.STOP_STUDY),
    ],
)
async def test_study_controls_on_the_overview(make_app, seeded: Seeded, keys, action) -> None:
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: app.screen.table.row_count == 3, "the studies")
        await pilot.press(*keys)
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        sent = await wait_for(pilot, lambda: commands(seeded), "the command row")
        assert [(c.action, c.study, c.trial_number) for c in sent] == [(action, "demo", None)]

        async with open_store(seeded.db_path) as store:
            await store.finish_command(sent[0].id, CommandState.REJECTED, "no daemon here")
        bar = app.screen.query_one(CommandBar)
        await wait_for(pilot, lambda: "rejected" in str(bar.render()), "the rejection")
        assert bar.has_class("-rejected")


async def test_resume_is_offered_for_a_paused_study(make_app, seeded: Seeded) -> None:
    from hpod.store import StudyState

    async with open_store(seeded.db_path) as store:
        await store.update_study(seeded.study_id, state=StudyState.PAUSED)
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        study = await open_study(app, pilot)
        await wait_for(pilot, lambda: study.study.state is StudyState.PAUSED, "the paused state")
        await pilot.press("p", "y")
        sent = await wait_for(pilot, lambda: commands(seeded), "the command row")
        assert sent[0].action is CommandAction.RESUME_STUDY


async def test_the_command_bar_says_when_no_daemon_serves_the_database(
    make_app, seeded: Seeded
) -> None:
    """The seeded store says a study is running; no daemon holds its lock, so nothing runs,
    and every screen's command bar says so until one does."""
    from hpod.lock import DaemonLock
    from hpod.tui.widgets.status import NO_DAEMON

    app = make_app()
    async with app.run_test(size=(200, 30)) as pilot:
        bar = app.screen.query_one(CommandBar)
        await wait_for(pilot, lambda: bar.display and NO_DAEMON in str(bar.render()),
                       "the warning")
        assert bar.has_class("-no-daemon")
        with DaemonLock(seeded.db_path):  # a daemon starts
            await wait_for(pilot, lambda: not bar.display, "the warning to go")
