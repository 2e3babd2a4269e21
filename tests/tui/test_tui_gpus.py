"""GPU utilisation in the TUI: the panel on the studies overview (latest figures and a
sparkline of the recent ones, live), hidden without samples; a trial's peak GPU memory."""

from __future__ import annotations

import dataclasses
import io
import re

from conftest import T0, Seeded, wait_for
from hpod.store import GpuSample, open_store
from hpod.tui.screens.trial import info_table
from hpod.tui.widgets.gpu_panel import ENTRY_WIDTH, GpuPanel, panel_text, sparkline
from rich.console import Console

TOTAL = 16376.0  # MiB: a 16 GiB card


def gpu_round(t: float, utils: list[float | None], used: float = 9318.0) -> list[GpuSample]:
    return [GpuSample(t, gpu, util, used, TOTAL) for gpu, util in enumerate(utils)]


# --- pure ------------------------------------------------------------------------------------


def test_a_sparkline_is_on_a_fixed_percent_scale_newest_right() -> None:
    assert sparkline([0, 50, 100, None], 6) == "  ▁▅█·"
    assert sparkline([12.4, 99.9], 2) == "▁█"
    # More samples than columns: each column shows the highest of its share (bursts stay).
    assert sparkline([0, 100, 0, 0, 50, 0], 3) == "█▁▅"
    assert sparkline([], 4) == "    " and sparkline([10], 0) == ""


def test_the_panel_puts_as_many_gpus_on_a_line_as_fit_and_says_when_samples_are_old() -> None:
    latest = gpu_round(T0, [87.0, None, 5.0])
    recent = {0: tuple(gpu_round(T0 - 10, [20.0]) + gpu_round(T0, [87.0]))}
    narrow = str(panel_text(latest, recent, 80, now=T0)).splitlines()
    assert len(narrow) == 3
    assert narrow[0].startswith("gpu:0") and "▂▇" in narrow[0]
    assert " 87%" in narrow[0] and "9.1/16.0 GiB" in narrow[0]
    assert "gpu:1" in narrow[1] and " -  " in narrow[1]  # utilisation not reported
    wide = str(panel_text(latest, recent, 2 * ENTRY_WIDTH + 3, now=T0)).splitlines()
    assert [line.count("gpu:") for line in wide] == [2, 1]
    stale = str(panel_text(latest, recent, 80, now=T0 + 3600)).splitlines()
    assert len(stale) == 4 and "no daemon samples the GPUs now" in stale[-1]


# --- the app ---------------------------------------------------------------------------------


async def test_the_overview_shows_each_gpu_live_and_hides_the_panel_without_samples(
        make_app, seeded: Seeded) -> None:
    app = make_app()
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_for(pilot, lambda: app.screen.table.row_count == 3, "the studies")
        panel = app.screen.query_one(GpuPanel)
        assert panel.display is False  # no NVML samples in the seeded database

        now = seeded.clock.now  # the app's clock: these samples are fresh
        async with open_store(seeded.db_path, clock=seeded.clock) as store:
            for i in range(5):
                await store.add_gpu_samples(gpu_round(now - 40 + 10 * i, [20.0 * i, 90.0]))
        await wait_for(pilot, lambda: panel.display and panel.latest
                       and panel.latest[0].time == now, "the GPU panel")
        await pilot.pause()  # laid out at its width
        text = str(panel.render())
        assert "gpu:0" in text and "gpu:1" in text
        assert " 80%" in text and " 90%" in text and "9.1/16.0 GiB" in text
        assert "▁▂▄▅▇  80%" in text  # GPU 0 climbed from 0 % to 80 %: newest on the right
        assert panel.region.height == 1  # both GPUs on one line at 120 columns

        async with open_store(seeded.db_path, clock=seeded.clock) as store:
            await store.add_gpu_samples(gpu_round(now + 10, [3.0, 91.0], used=512.0))
        await wait_for(pilot, lambda: panel.latest[0].time == now + 10, "the next round")
        text = str(panel.render())
        assert "  3%" in text and " 91%" in text and "0.5/16.0 GiB" in text
        assert "no daemon samples" not in text


def test_a_trial_shows_its_peak_gpu_memory_where_known(seeded: Seeded) -> None:
    trial = seeded.trials[11]
    assert "peak GPU memory" not in _plain(info_table(trial, T0))  # none seen: no line
    with_peak = dataclasses.replace(trial, peak_gpu_memory_mb=2150.0)
    assert re.search(r"peak GPU memory\s+2\.1 GiB", _plain(info_table(with_peak, T0)))


def _plain(renderable: object) -> str:
    out = io.StringIO()
    Console(file=out, width=120).print(renderable)
    return out.getvalue()
