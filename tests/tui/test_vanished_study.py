"""A study that vanishes while the TUI shows it: the daemon deletes a study that never had a
valid definition (Store.forget_study), and the real app, driven by its pilot over a real store
file, drops it from the studies table, its details and its "invalid study file(s)" line, moves
the cursor sensibly, survives a study screen whose study is gone, and keeps the study's events
(their study_id now NULL)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from conftest import Clock, Seeded, wait_for
from hpod.store import (
    Direction,
    EventLevel,
    StoreReader,
    StudyState,
    open_store,
)
from hpod.tui.app import HpodApp
from hpod.tui.screens.confirm import ConfirmScreen
from hpod.tui.screens.events import EventsScreen
from hpod.tui.screens.studies import StudiesScreen
from hpod.tui.screens.study import StudyScreen
from textual.widgets import Static
from textual.worker import WorkerState

# A trial's metrics.json caught half-written, recorded as a broken study file (see intake.py).
HALF_NAME = "metrics"
HALF_ERROR = "metrics.json: not a study file: expected a TOML table, found `{\"loss\": 0.4`"


# --- helpers ----------------------------------------------------------------------------------


async def add_invalid(seeded: Seeded, name: str, error: str) -> int:
    async with open_store(seeded.db_path, clock=seeded.clock) as store:
        study = await store.create_study(
            name, str(seeded.db_path.parent.parent / f"{name}.toml"), spec=None, identity="",
            direction=Direction.MINIMIZE, metric="loss", state=StudyState.INVALID, error=error,
        )  # fmt: skip
    return study.id


def study_ids(db_path: Path) -> dict[str, int]:
    with StoreReader(db_path) as reader:
        return {s.name: s.id for s in reader.list_studies()}


async def forget(db_path: Path, clock: Clock, study_id: int, *, event: str | None = None) -> None:
    """The daemon's part: delete the study and, as intake.py does, say so in an INFO event."""
    async with open_store(db_path, clock=clock) as store:
        assert await store.forget_study(study_id) is True
        if event is not None:
            await store.record_event(EventLevel.INFO, event)


def detail(screen: StudiesScreen) -> str:
    return str(screen.query_one("#study-detail", Static).render())


def drawn(table) -> list[str]:
    """The table's body lines as drawn on screen (not its data): what the user sees."""
    return [table.render_line(y).text for y in range(1, table.size.height)]


def healthy(app: HpodApp) -> None:
    """No handler raised (run_test would re-raise it too), the feed worker still runs, and no
    error toast was shown (a crashed feed worker shows one)."""
    assert app.is_running and app.return_code is None
    feed = [w for w in app.workers if w.group == "store-feed"]
    assert feed and all(w.state is WorkerState.RUNNING for w in feed)
    errors = [n.message for n in app._notifications if n.severity == "error"]
    assert errors == []


@asynccontextmanager
async def with_half_written(make_app, seeded: Seeded, size: tuple[int, int],
                            ) -> AsyncIterator[tuple[HpodApp, Any, StudiesScreen, dict[str, int]]]:
    """The seeded studies plus a half-written metrics.json recorded as a broken study, the app
    running on them, its studies screen showing all four: (app, pilot, screen, study ids)."""
    await add_invalid(seeded, HALF_NAME, HALF_ERROR)
    ids = study_ids(seeded.db_path)
    app = make_app()
    async with app.run_test(size=size) as pilot:
        screen = await studies_screen(app, pilot, ["demo", "broken", "finished", HALF_NAME])
        yield app, pilot, screen, ids


async def studies_screen(app: HpodApp, pilot, names: list[str]) -> StudiesScreen:
    screen = app.screen
    assert isinstance(screen, StudiesScreen)
    await wait_for(pilot, lambda: list(screen.table.order) == names, f"the studies {names}")
    return screen


# --- 1. the studies screen --------------------------------------------------------------------


async def test_a_forgotten_invalid_study_leaves_the_table_the_details_and_the_invalid_line(
        make_app, seeded: Seeded) -> None:
    async with with_half_written(make_app, seeded, (100, 30)) as (app, pilot, screen, ids):
        table = screen.table
        assert table.cursor_key == "demo"
        assert "2 invalid study file(s): broken, metrics" in detail(screen)

        await forget(seeded.db_path, seeded.clock, ids["broken"])
        await wait_for(pilot, lambda: "broken" not in table.order, "broken gone from the table")
        assert list(table.order) == ["demo", "finished", HALF_NAME]
        assert table.row_count == 3 and "broken" not in screen._summaries
        lines = drawn(table)
        assert [line.split()[0] for line in lines[:3]] == ["demo", "finished", HALF_NAME]
        assert all(not line.strip() for line in lines[3:])  # no stale fourth row drawn
        assert not any("broken" in line for line in lines)
        assert table.cursor_key == "demo"  # the cursor stays on the study it was on
        text = detail(screen)
        assert "1 invalid study file(s): metrics" in text and "broken" not in text

        await forget(seeded.db_path, seeded.clock, ids[HALF_NAME])
        await wait_for(pilot, lambda: table.row_count == 2, "metrics gone from the table")
        assert list(table.order) == ["demo", "finished"]
        text = detail(screen)
        assert "invalid study file" not in text and HALF_NAME not in text
        assert text.startswith("demo")
        healthy(app)


async def test_the_highlighted_study_vanishing_moves_the_cursor_to_a_remaining_row(
        make_app, seeded: Seeded) -> None:
    async with with_half_written(make_app, seeded, (100, 30)) as (app, pilot, screen, ids):
        table = screen.table
        await pilot.press("down")
        assert table.cursor_key == "broken"
        assert "budget: is required" in detail(screen)

        # The row under the cursor vanishes: the cursor stays on its line, now the next study.
        await forget(seeded.db_path, seeded.clock, ids["broken"])
        await wait_for(pilot, lambda: "broken" not in table.order, "broken gone")
        assert table.cursor_key == "finished" and table.cursor_index == 1
        assert screen.selected().study.name == "finished"
        await wait_for(pilot, lambda: detail(screen).startswith("1 invalid study file(s): metrics"),
                       "the details of the study now under the cursor")  # fmt: skip
        assert "finished" in detail(screen) and "budget: is required" not in detail(screen)

        # The last row, under the cursor, vanishes: the cursor goes to the new last row.
        await pilot.press("end")
        assert table.cursor_key == HALF_NAME
        assert "not a study file" in detail(screen)
        await forget(seeded.db_path, seeded.clock, ids[HALF_NAME])
        await wait_for(pilot, lambda: table.row_count == 2, "metrics gone")
        assert table.cursor_key == "finished" and table.cursor_index == 1
        await wait_for(pilot, lambda: detail(screen).startswith("finished"), "finished's details")
        assert "not a study file" not in detail(screen)
        assert "invalid study file" not in detail(screen)
        await pilot.press("up", "down")  # the cursor still moves over the remaining rows
        assert table.cursor_key == "finished"
        healthy(app)


async def test_a_study_vanishing_from_a_sorted_table(make_app, seeded: Seeded) -> None:
    async with with_half_written(make_app, seeded, (120, 30)) as (app, pilot, screen, ids):
        table = screen.table
        await pilot.click("#studies", offset=(2, 0))  # the "study" header: by name
        await pilot.pause()
        assert list(table.order) == ["broken", "demo", "finished", HALF_NAME]
        assert table.cursor_key == "demo"

        await forget(seeded.db_path, seeded.clock, ids["broken"])
        await wait_for(pilot, lambda: "broken" not in table.order, "broken gone")
        assert list(table.order) == ["demo", "finished", HALF_NAME]  # still sorted by name
        assert table.cursor_key == "demo"
        await pilot.click("#studies", offset=(2, 0))  # reversed, without the vanished one
        await pilot.pause()
        assert list(table.order) == [HALF_NAME, "finished", "demo"]
        healthy(app)


async def test_the_only_study_vanishing_leaves_an_empty_list(db_path: Path) -> None:
    clock = Clock()
    async with open_store(db_path, clock=clock) as store:
        broken = await store.create_study(
            "broken", str(db_path.parent.parent / "broken.toml"), spec=None, identity="",
            direction=Direction.MINIMIZE, metric="loss", state=StudyState.INVALID,
            error="budget: is required",
        )  # fmt: skip
    app = HpodApp(db_path, clock=clock, poll_interval=0.05)
    app.animation_level = "none"
    async with app.run_test(size=(100, 30)) as pilot:
        screen = app.screen
        await wait_for(pilot, lambda: list(screen.table.order) == ["broken"], "the one study")
        assert "budget: is required" in detail(screen)

        await forget(db_path, clock, broken.id)
        await wait_for(pilot, lambda: screen.table.row_count == 0, "an empty table")
        assert screen.table.cursor_key is None and screen.selected() is None
        await wait_for(pilot, lambda: detail(screen).startswith("no studies yet"),
                       "the empty list's hint")  # fmt: skip
        assert not any(line.strip() for line in drawn(screen.table))
        await pilot.press("enter", "p", "X", "down", "end")  # nothing to act on: nothing happens
        await pilot.pause()
        assert app.screen is screen and not isinstance(app.screen, ConfirmScreen)
        healthy(app)


# --- 2. a study screen ------------------------------------------------------------------------


async def test_an_invalid_study_does_not_open_and_enter_after_it_vanished_opens_the_next(
        make_app, seeded: Seeded) -> None:
    """The app never opens a study screen on an invalid study (the only kind forget_study
    deletes): enter says why instead. Once it vanished, enter opens the row now under the
    cursor, never the gone study."""
    ids = study_ids(seeded.db_path)
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        screen = await studies_screen(app, pilot, ["demo", "broken", "finished"])
        await pilot.press("down", "enter")
        await pilot.pause()
        assert app.screen is screen
        warnings = [n.message for n in app._notifications if n.severity == "warning"]
        assert any(m.startswith("broken is invalid: budget: is required") for m in warnings)

        await forget(seeded.db_path, seeded.clock, ids["broken"])
        await wait_for(pilot, lambda: "broken" not in screen.table.order, "broken gone")
        await pilot.press("enter")
        study = await wait_for(pilot, lambda: isinstance(app.screen, StudyScreen) and app.screen,
                               "a study screen")  # fmt: skip
        assert study.study.name == "finished"
        await pilot.press("escape")
        assert app.screen is screen
        healthy(app)


async def test_a_study_screen_whose_study_is_deleted_under_it_does_not_crash(
        make_app, seeded: Seeded) -> None:
    """No key opens a study screen on a study forget_study can delete, so the screen is pushed
    here as the app would push it (what a screen sees when its study is deleted under it). Its
    watch stops sending (watch_study.py: "deleted under us"); the screen stays usable and goes
    back to a list without the study. It does not say that the study is gone (see the report)."""
    ids = study_ids(seeded.db_path)
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        studies = await studies_screen(app, pilot, ["demo", "broken", "finished"])
        record = studies._summaries["broken"].study
        app.push_screen(StudyScreen(app.ctx, record))
        study = await wait_for(pilot, lambda: isinstance(app.screen, StudyScreen) and app.screen,
                               "the study screen")  # fmt: skip
        await wait_for(pilot, lambda: study.summary is not None and not study._loading,
                       "the (empty) study read once")  # fmt: skip
        assert study.table.total == 0

        await forget(seeded.db_path, seeded.clock, ids["broken"])
        # The studies screen below is still subscribed: once it has dropped the study, the
        # feed has polled every watch, the study screen's included, after the deletion.
        await wait_for(pilot, lambda: "broken" not in studies.table.order, "the deletion seen")
        async with open_store(seeded.db_path, clock=seeded.clock) as store:  # one poll more
            await store.update_study(ids["finished"], state=StudyState.STOPPED)
        await wait_for(pilot, lambda: studies._summaries["finished"].study.state
                       is StudyState.STOPPED, "a later poll")  # fmt: skip
        assert app.screen is study
        await pilot.press("g", "g", "g", "v", "s", "slash", "escape")  # keys on the empty screen
        await pilot.pause()
        healthy(app)
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is studies, "back to the list")
        assert list(studies.table.order) == ["demo", "finished"]
        healthy(app)


# --- 3. the events screen ---------------------------------------------------------------------


async def test_events_of_a_forgotten_study_show_without_it(make_app, seeded: Seeded) -> None:
    ids = study_ids(seeded.db_path)
    async with open_store(seeded.db_path, clock=seeded.clock) as store:
        tied_id = await store.record_event(EventLevel.ERROR, "broken.toml: budget: is required",
                                           study_id=ids["broken"])  # fmt: skip
    removed = "study broken, which never had a valid definition, is removed: file deleted"
    await forget(seeded.db_path, seeded.clock, ids["broken"], event=removed)
    with StoreReader(seeded.db_path) as reader:
        (event,) = [e for e in reader.list_events() if e.id == tied_id]
        assert event.study_id is None  # ON DELETE SET NULL

    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await studies_screen(app, pilot, ["demo", "finished"])
        await pilot.press("e")
        events = app.screen
        assert isinstance(events, EventsScreen)
        await wait_for(pilot, lambda: events.table.row_count == 5, "the five events")
        row = events.table.row(str(tied_id))
        assert (row.cells[1], row.cells[2], row.cells[4]) == (
            "error", "-", "broken.toml: budget: is required")
        assert events.table.cursor_key == events.table.order[0]  # newest first
        assert events._rows[events.table.cursor_key].event.message == removed
        while events.table.cursor_key != str(tied_id):
            await pilot.press("down")
        text = str(events.query_one("#event-detail", Static).render())
        assert "broken.toml: budget: is required" in text
        await pilot.press("w")  # warnings and errors only: the tied error stays
        assert str(tied_id) in events.table.order
        healthy(app)


async def test_an_open_events_screen_keeps_a_vanished_studys_events(
        make_app, seeded: Seeded) -> None:
    ids = study_ids(seeded.db_path)
    async with open_store(seeded.db_path, clock=seeded.clock) as store:
        await store.record_event(EventLevel.ERROR, "broken.toml: budget: is required",
                                 study_id=ids["broken"])  # fmt: skip
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await studies_screen(app, pilot, ["demo", "broken", "finished"])
        await pilot.press("e")
        events = app.screen
        await wait_for(pilot, lambda: events.table.row_count == 4, "the four events")
        tied = events.table.order[0]
        assert events.table.row(tied).cells[2] == "broken"  # named while the study existed

        removed = "study broken, which never had a valid definition, is removed: file deleted"
        await forget(seeded.db_path, seeded.clock, ids["broken"], event=removed)
        await wait_for(pilot, lambda: events.table.row_count == 5, "the removal's event")
        newest = events._rows[events.table.order[0]]
        assert newest.event.message == removed and newest.study is None
        # Events are appended, never re-read: the earlier row keeps the name it was shown with.
        assert events.table.row(tied).cells[4] == "broken.toml: budget: is required"
        await pilot.press("escape")
        studies = app.screen
        assert isinstance(studies, StudiesScreen)
        await wait_for(pilot, lambda: list(studies.table.order) == ["demo", "finished"],
                       "the list without broken")  # fmt: skip
        healthy(app)


async def test_an_open_events_screen_names_a_new_study_that_reuses_a_forgotten_id(
        make_app, seeded: Seeded) -> None:
    half_id = await add_invalid(seeded, HALF_NAME, HALF_ERROR)  # the highest id
    async with open_store(seeded.db_path, clock=seeded.clock) as store:
        await store.record_event(EventLevel.ERROR, HALF_ERROR, study_id=half_id)
    app = make_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await studies_screen(app, pilot, ["demo", "broken", "finished", HALF_NAME])
        await pilot.press("e")
        events = app.screen
        await wait_for(pilot, lambda: events.table.row_count == 4, "the four events")
        assert events.table.row(events.table.order[0]).cells[2] == HALF_NAME

        await forget(seeded.db_path, seeded.clock, half_id)
        async with open_store(seeded.db_path, clock=seeded.clock) as store:
            fresh = await store.create_study(
                "fresh", str(seeded.db_path.parent.parent / "fresh.toml"), spec=None,
                identity="", direction=Direction.MINIMIZE, metric="loss",
                state=StudyState.INVALID, error="fresh.toml: budget: is required",
            )  # fmt: skip
            assert fresh.id == half_id  # SQLite gives the freed highest rowid again
            await store.record_event(EventLevel.ERROR, "fresh.toml: budget: is required",
                                     study_id=fresh.id)  # fmt: skip
        await wait_for(pilot, lambda: events.table.row_count == 5, "the new study's event")
        healthy(app)
        assert events.table.row(events.table.order[0]).cells[2] == "fresh"  # shows "metrics"
