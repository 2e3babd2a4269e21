"""`hpod trials` as a table and as CSV."""

from __future__ import annotations

import csv
import io

from hpod.report import format_trials


def _row(trial: int, value: float, params: dict, reason: str | None = None) -> dict:
    return {"trial": trial, "state": "complete", "value": value, "last_step": 3,
            "duration_s": 1.5, "peak_gpu_memory_mb": None, "params": params, "reason": reason}


def test_a_parameter_named_like_a_column_gets_a_prefix_in_csv() -> None:
    rows = [_row(0, 0.25, {"value": 7, "state": "on", "lr": 0.1}),
            _row(1, 0.5, {"value": 9, "state": "off", "lr": 0.2})]
    read = list(csv.DictReader(io.StringIO(format_trials(rows, "csv"))))
    assert [r["value"] for r in read] == ["0.25", "0.5"]  # the objective, not the parameter
    assert [r["param.value"] for r in read] == ["7", "9"]
    assert [r["param.state"] for r in read] == ["on", "off"] and read[0]["lr"] == "0.1"
    assert read[0]["state"] == "complete"


def test_a_crash_reads_in_one_line_in_the_table() -> None:
    reason = "exit code 1; last lines of stderr:\nTraceback ...\nKeyError: 'lr'\n"
    table = format_trials([_row(0, 0.5, {"x": 1}, reason)], "table")
    assert "exit code 1; stderr ended with: KeyError: 'lr'" in table
    assert len(table.splitlines()) == 2


def test_an_interrupted_trial_has_no_duration_that_grows_with_the_clock() -> None:
    from hpod.report import trial_rows
    from hpod.store.records import TrialRecord, TrialState

    def trial(state: TrialState, finished: float | None) -> TrialRecord:
        return TrialRecord(1, 1, 0, {"x": 1}, state, 0, 0.5, 3, None, None, None, "cpu:0",
                           created_at=100.0, started_at=100.0, finished_at=finished)

    (done,) = trial_rows([trial(TrialState.COMPLETE, 104.0)])
    (cut,) = trial_rows([trial(TrialState.INTERRUPTED, None)])
    (running,) = trial_rows([trial(TrialState.RUNNING, None)])
    assert done["duration_s"] == 4.0 and cut["duration_s"] is None
    assert running["duration_s"] > 4.0  # started long ago, still going
