"""The TUI's pure parts: rungs, estimates, stats, row ordering, formatting, the braille canvas."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from conftest import SPEC, T0
from hpod.store import Direction, StudyRecord, StudyState, TrialCounts, TrialRecord, TrialState
from hpod.tui import format as fmt
from hpod.tui.model import (
    StudySummary,
    TrialStats,
    best_so_far,
    estimate_left,
    improve_stats,
    param_names,
    placements_in_use,
    rung_levels,
)
from hpod.tui.widgets import trial_rows as tr
from hpod.tui.widgets.braille import BrailleCanvas


def study(spec=SPEC, state=StudyState.RUNNING, created=T0) -> StudyRecord:
    return StudyRecord(1, "demo", "demo.toml", state, spec, "x", Direction.MINIMIZE, "loss",
                       None, created, created, None)  # fmt: skip


def trial(number: int, state=TrialState.COMPLETE, value=None, finished=None, **kw) -> TrialRecord:
    return TrialRecord(number + 1, 1, number, kw.pop("params", {}), state, 0, value, None, None,
                       None, None, kw.pop("placement", None), T0, T0, finished)  # fmt: skip


@pytest.mark.parametrize(
    ("scheduler", "levels"),
    [
        ({"kind": "asha", "min_resource": 1, "max_resource": 27, "reduction_factor": 3},
         [1, 3, 9, 27]),
        ({"kind": "hyperband", "min_resource": 2, "max_resource": 20, "reduction_factor": 2},
         [2, 4, 8, 16]),
        ({"kind": "sh", "min_resource": None, "max_resource": 81, "reduction_factor": None},
         [1, 3, 9, 27, 81]),
        ({"kind": "fifo", "max_resource": 10}, []),
        ({"kind": "asha", "max_resource": None}, []),
    ],
)  # fmt: skip
def test_rung_levels(scheduler, levels) -> None:
    assert rung_levels(study({**SPEC, "scheduler": scheduler})) == levels


def test_the_estimate_extrapolates_throughput_and_respects_a_deadline() -> None:
    counts = TrialCounts(complete=8, stopped=2, running=2)
    summary = StudySummary(study(), counts, None, ())
    # 10 trials done in 1000 s, 30 to go out of 40: 3000 s more.
    assert estimate_left(summary, T0 + 1000) == pytest.approx(3000)
    hours = {**SPEC, "budget": {"trials": 40, "hours": 0.5}}
    assert estimate_left(replace(summary, study=study(hours)), T0 + 1000) == pytest.approx(800)
    assert estimate_left(StudySummary(study(), TrialCounts(running=2), None, ()), T0 + 9) is None
    paused = replace(summary, study=study(state=StudyState.PAUSED))
    assert estimate_left(paused, T0 + 1000) is None


def test_stats_keep_the_best_value_and_ignore_nan() -> None:
    stats = improve_stats(TrialStats(), [(0, 3.0), (1, math.nan), (2, 1.0), (3, 2.0)],
                          Direction.MINIMIZE)  # fmt: skip
    assert stats == TrialStats(1.0, 2, 4)
    assert improve_stats(stats, [(4, 5.0)], Direction.MAXIMIZE).best == 5.0


def test_best_so_far_uses_completed_trials_in_time_order() -> None:
    trials = [
        trial(0, value=3.0, finished=T0 + 10),
        trial(1, value=5.0, finished=T0 + 20),
        trial(2, value=1.0, finished=T0 + 30),
        trial(3, TrialState.STOPPED, value=0.1, finished=T0 + 40),  # stopped early: not a result
        trial(4, value=math.nan, finished=T0 + 50),
    ]
    assert best_so_far(trials, Direction.MINIMIZE) == [(T0 + 10, 3.0), (T0 + 30, 1.0)]
    assert best_so_far(trials, Direction.MAXIMIZE) == [(T0 + 10, 3.0), (T0 + 20, 5.0)]


def test_spec_helpers() -> None:
    assert param_names(study()) == ["lr", "depth", "opt"]
    running = [trial(0, placement="gpu:0,gpu:1"), trial(1, placement="cpu:0"),
               trial(2, placement="gpu:1")]  # fmt: skip
    assert placements_in_use(running) == ("gpu:0", "gpu:1")


def test_rows_sort_with_missing_values_last_in_both_directions() -> None:
    pairs = [("a", 2.0), ("b", None), ("c", 1.0), ("d", 2.0)]
    assert tr.ordered(pairs, reverse=False) == ["c", "a", "d", "b"]
    assert tr.ordered(pairs, reverse=True) == ["a", "d", "c", "b"]


def test_a_filter_matches_every_word_anywhere_in_the_row() -> None:
    text = tr.search_text(trial(12, TrialState.RUNNING, placement="gpu:1",
                                params={"lr": 0.01, "opt": "adam"}))  # fmt: skip
    assert tr.matches(text, ["running", "lr=0.01", "#12"])
    assert tr.matches(text, [])
    assert not tr.matches(text, ["running", "sgd"])


def test_param_columns_sort_mixed_types() -> None:
    rows = [tr.TrialRow(trial(i, params={"x": v}), TrialStats()) for i, v in
            enumerate([3, "b", 1.5, None, "a"])]  # fmt: skip
    pairs = [(str(i), tr.sort_value(row, "p:x", 0.0)) for i, row in enumerate(rows)]
    assert tr.ordered(pairs, reverse=False) == ["2", "0", "4", "1", "3"]


@pytest.mark.parametrize(
    ("value", "text"),
    [(None, "-"), (math.nan, "nan"), (math.inf, "inf"), (0.000012345, "1.234e-05"),
     (1234.5678, "1235"), (0.5, "0.5")],
)  # fmt: skip
def test_value_format(value, text) -> None:
    assert fmt.value(value) == text


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(None, "-"), (5.9, "5s"), (184, "3m04s"), (7500, "2h05m"), (3 * 86400 + 4 * 3600, "3d04h")],
)
def test_duration_format(seconds, text) -> None:
    assert fmt.duration(seconds) == text


def test_braille_dots_and_lines() -> None:
    canvas = BrailleCanvas(2, 1)
    canvas.dot(0, 0, layer=0)
    canvas.dot(1, 3, layer=1)
    canvas.dot(99, 99, layer=2)  # outside: ignored
    (row,) = canvas.cells()
    assert row[0] == (chr(0x2800 | 0x01 | 0x80), 1)  # the last layer to draw in a cell wins
    assert row[1] == (" ", None)
    canvas = BrailleCanvas(2, 1)
    canvas.line(0, 0, 3, 3, layer=0)  # a diagonal across both cells
    bits = [ord(c) - 0x2800 for c, _ in canvas.cells()[0]]
    assert bits == [0x01 | 0x10, 0x04 | 0x80]
    with pytest.raises(ValueError):
        BrailleCanvas(0, 3)


def test_stats_take_the_first_report_of_a_tied_best_and_only_a_strictly_better_one() -> None:
    stats = improve_stats(TrialStats(), [(0, 2.0), (1, 1.0), (2, 1.0)], Direction.MINIMIZE)
    assert stats == TrialStats(1.0, 1, 3)
    tied = improve_stats(stats, [(3, 1.0), (4, math.nan)], Direction.MINIMIZE)
    assert tied == TrialStats(1.0, 1, 5)
    assert improve_stats(stats, iter([(5, 0.5)]), Direction.MINIMIZE) == TrialStats(0.5, 5, 4)
    nan_only = improve_stats(TrialStats(), [(0, math.nan)], Direction.MAXIMIZE)
    assert nan_only == TrialStats(None, None, 1)


def test_long_parameter_names_get_column_labels_that_tell_them_apart() -> None:
    from hpod.tui.format import distinct_labels

    long = [f"param_with_a_rather_long_name_number_{i:02d}" for i in range(30)]
    labels = distinct_labels(long, 10)
    assert len(set(labels)) == 30 and all(len(label) <= 10 for label in labels)
    assert distinct_labels(["layer_1_units", "layer_2_units", "lr"], 10) == [
        "…1_units", "…2_units", "lr"]


def test_runs_of_repeated_configurations_show_and_sort_by_their_configuration() -> None:
    runs = [trial(9, params={"x": 1}), replace(trial(10, params={"x": 1}), repeat=1, repeat_of=9),
            trial(11, params={"x": 2})]
    assert [c.key for c in tr.columns("loss", ["x"], repeats=True)][:2] == ["number", "config"]
    assert "config" not in [c.key for c in tr.columns("loss", ["x"])]
    row = tr.TrialRow(runs[1], TrialStats())
    assert tr.cells(row, ["x"], 0.0, repeats=True)[1] == "#9·1"
    assert tr.matches(tr.search_text(runs[1]), ["config=#9", "repeat=1"])
    keys = [tr.sort_value(tr.TrialRow(t, TrialStats()), "config", 0.0) for t in runs]
    assert keys == [(9, 0), (9, 1), (11, 0)]
