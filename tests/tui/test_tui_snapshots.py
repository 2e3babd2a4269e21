"""SVG snapshots of the main screens on the seeded database, with a frozen clock and timezone.

Needs the pytest-textual-snapshot plugin; without it these tests are skipped. Update the
pictures after an intended change with `pytest tests/tui --snapshot-update` and look at them.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

pytest.importorskip("pytest_textual_snapshot")

from conftest import Clock, seed, wait_for
from hpod.lock import DaemonLock
from hpod.tui.app import HpodApp
from hpod.tui.screens.study import StudyScreen
from hpod.tui.screens.trial import TrialScreen

DB = Path("studies/.hpod/hpod.db")  # relative: the picture must not show tmp_path


@pytest.fixture
async def snap_app(tmp_path, monkeypatch) -> HpodApp:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    clock = Clock()
    await seed(DB, clock)
    app = HpodApp(DB, clock=clock, poll_interval=0.05)
    app.animation_level = "none"
    # The screens as they look with a daemon serving the database: its lock, held here.
    with DaemonLock(DB):
        yield app
    monkeypatch.delenv("TZ")
    time.tzset()


async def studies_loaded(pilot) -> None:
    await wait_for(pilot, lambda: pilot.app.screen.table.row_count == 3, "the studies")


async def study_loaded(pilot) -> None:
    await studies_loaded(pilot)
    await pilot.press("enter")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, StudyScreen), "the study")
    screen = pilot.app.screen
    await wait_for(pilot, lambda: screen.table.total == 12 and not screen._loading, "trials")
    await wait_for(pilot, lambda: screen._curves, "the curve of the trial under the cursor")
    await pilot.pause()


async def trial_loaded(pilot) -> None:
    await study_loaded(pilot)
    await pilot.press("down", "enter")  # trial #10, running
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, TrialScreen), "the trial")
    screen = pilot.app.screen
    await wait_for(pilot, lambda: "loss" in screen._points, "its metrics")
    await pilot.press("g")  # the metrics tab
    await pilot.pause()


async def events_loaded(pilot) -> None:
    await studies_loaded(pilot)
    await pilot.press("e")
    await wait_for(pilot, lambda: pilot.app.screen.table.row_count == 3, "the events")


def test_studies_overview(snap_compare, snap_app) -> None:
    assert snap_compare(snap_app, terminal_size=(80, 24), run_before=studies_loaded)


def test_studies_overview_large(snap_compare, snap_app) -> None:
    assert snap_compare(snap_app, terminal_size=(160, 48), run_before=studies_loaded)


def test_study_view(snap_compare, snap_app) -> None:
    assert snap_compare(snap_app, terminal_size=(80, 24), run_before=study_loaded)


def test_study_view_large(snap_compare, snap_app) -> None:
    assert snap_compare(snap_app, terminal_size=(160, 48), run_before=study_loaded)


def test_trial_view(snap_compare, snap_app) -> None:
    assert snap_compare(snap_app, terminal_size=(80, 24), run_before=trial_loaded)


def test_trial_view_large(snap_compare, snap_app) -> None:
    assert snap_compare(snap_app, terminal_size=(160, 48), run_before=trial_loaded)


def test_events(snap_compare, snap_app) -> None:
    assert snap_compare(snap_app, terminal_size=(80, 24), run_before=events_loaded)


def test_events_large(snap_compare, snap_app) -> None:
    assert snap_compare(snap_app, terminal_size=(160, 48), run_before=events_loaded)
