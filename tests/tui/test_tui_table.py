"""The trials table at scale, in a bare app: 10 000 rows cost only the visible ones."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import hpod.tui
from conftest import T0
from hpod.store import TrialRecord, TrialState
from hpod.tui.model import TrialStats
from hpod.tui.widgets.trial_table import TrialTable
from textual.app import App, ComposeResult

N = 10_000


class Host(App[None]):
    CSS_PATH = Path(hpod.tui.__file__).parent / "hpod.tcss"

    def compose(self) -> ComposeResult:
        yield TrialTable(lambda: T0 + 100, id="trials")


def record(number: int, state: TrialState = TrialState.COMPLETE, value: float = 1.0) -> TrialRecord:
    finished = None if state is TrialState.RUNNING else T0 + 60
    return TrialRecord(number + 1, 1, number, {"x": number % 7}, state, 0, value, 3, None, None,
                       None, "gpu:0", T0, T0, finished)  # fmt: skip


async def test_ten_thousand_trials_format_only_the_rows_on_screen() -> None:
    app = Host()
    async with app.run_test(size=(80, 24)) as pilot:
        table = app.query_one(TrialTable)
        table.configure("loss", ["x"])
        built: list[str] = []
        original = table.build_row

        def counting(key: str):
            built.append(key)
            return original(key)

        table.build_row = counting  # type: ignore[method-assign]
        trials = [record(n, TrialState.RUNNING if n % 1000 == 0 else TrialState.COMPLETE)
                  for n in range(N)]  # fmt: skip
        table.apply(trials, {})
        await pilot.pause()
        assert table.row_count == N
        assert 0 < len(built) <= 24  # one screen of rows, not ten thousand

        # New stats for every trial (the metrics backfill): still only visible rows are built.
        built.clear()
        table.apply([], {t.id: TrialStats(0.5, 2, 3) for t in trials})
        await pilot.pause()
        assert len(built) <= 24
        assert table.trial(table.order[0]).number == N - 1  # newest first

        # Sorting and filtering work on all of them.
        table.sort_by("state")
        assert [table.trial(k).number for k in table.order[:10]] == list(range(0, N, 1000))
        table.set_filter("running x=3")
        assert [table.trial(k).number for k in table.order] == [4000]  # 4000 % 7 == 3
        table.set_filter("")
        assert table.row_count == N


async def test_the_cursor_follows_its_trial_when_an_update_reorders_the_rows() -> None:
    app = Host()
    async with app.run_test(size=(80, 24)) as pilot:
        table = app.query_one(TrialTable)
        table.configure("loss", ["x"])
        trials = [record(n, value=float(n)) for n in range(100)]
        table.apply(trials, {})
        table.sort_by("last")
        await pilot.pause()
        assert table.move_to(str(trials[50].id))
        table.focus()
        for _ in range(3):
            await pilot.press("down")
        chosen = table.cursor_key
        line = table.cursor_index - round(table.scroll_y)
        # Another trial's value drops below everyone's: it moves to the top of the order.
        table.apply([replace(trials[90], value=-1.0)], {})
        await pilot.pause()
        assert table.trial(table.order[0]).number == 90
        assert table.cursor_key == chosen
        assert table.cursor_index - round(table.scroll_y) == line
