"""The app beside a real daemon: trials it starts appear in the table without a keypress."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import wait_for
from helpers import quadratic_study, wait_until, write_study
from hpod.store import TrialState
from hpod.tui.app import HpodApp
from hpod.tui.screens.study import StudyScreen

pytestmark = pytest.mark.slow


async def test_a_study_and_its_trials_appear_on_their_own(tmp_path: Path, start_daemon) -> None:
    db = tmp_path / ".hpod" / "hpod.db"
    daemon = start_daemon(tmp_path)
    wait_until(lambda: "watching" in daemon.log(), what="the daemon to start watching")
    wait_until(db.exists, what="the database")

    app = HpodApp(db, poll_interval=0.1)
    app.animation_level = "none"
    async with app.run_test(size=(100, 30)) as pilot:
        studies = app.screen
        await pilot.pause()
        assert studies.table.row_count == 0
        # Written only now, so the row can only come from the live feed, not from a first read.
        steps = "sleep = 0.1\nsteps = 4"
        write_study(tmp_path, "quad", quadratic_study(trials=4, parallel=2, extra_space=steps))
        await wait_for(pilot, lambda: studies.table.row_count == 1, "the new study", timeout=60)
        await pilot.press("enter")
        screen = await wait_for(pilot, lambda: isinstance(app.screen, StudyScreen) and app.screen,
                                "the study screen")  # fmt: skip
        table = screen.table
        # No key is pressed from here on: every trial and report arrives through the feed.
        await wait_for(
            pilot,
            lambda: table.total == 4
            and all(t.state is TrialState.COMPLETE and t.last_step == 4 for t in table.trials()),
            "four completed trials with their last step",
            timeout=90,
        )
        await wait_for(pilot, lambda: "complete" in str(screen.study.state), "the study complete")
    assert daemon.terminate() == 0, daemon.log()
