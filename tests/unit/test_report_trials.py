"""`hpod trials` as a table and as CSV."""

from __future__ import annotations

import csv
import io

import pytest

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


def test_runs_of_repeated_configurations_show_their_config_and_repeat() -> None:
    rows = [dict(_row(n, 0.5, {"x": 1}), config=n - n % 3, repeat=n % 3) for n in range(6)]
    read = list(csv.DictReader(io.StringIO(format_trials(rows, "csv"))))
    assert [(r["trial"], r["config"], r["repeat"]) for r in read][:4] == [
        ("0", "0", "0"), ("1", "0", "1"), ("2", "0", "2"), ("3", "3", "0")]
    plain = [dict(_row(0, 0.5, {"x": 1}), config=0, repeat=0)]
    assert "config" not in format_trials(plain, "csv").splitlines()[0]


def test_status_counts_a_budget_of_configurations_in_runs() -> None:
    from hpod.report import format_status

    counts = {"queued": 0, "running": 0, "complete": 12, "stopped": 0, "failed": 0,
              "paused": 0, "interrupted": 0}
    study = {"name": "noisy", "state": "complete", "trials": counts, "budget": {"trials": 4},
             "repeats": 3, "best": None, "error": None}
    assert "12/12" in format_status({"daemon": None, "studies": [study], "gpus": []})


@pytest.mark.parametrize("budget,shown", [({"hours": 8}, "6 · 1.5/8 h"),
                                          ({"trials": 20, "hours": 8}, "6/20 · 1.5/8 h"),
                                          ({"trials": 20}, "6/20"), (None, "6/-")])
def test_status_shows_a_time_budget_as_hours_spent_of_hours_allowed(budget, shown) -> None:
    from hpod.report import format_status

    counts = {"queued": 0, "running": 2, "complete": 6, "stopped": 0, "failed": 0,
              "paused": 0, "interrupted": 0}
    study = {"name": "night", "state": "running", "trials": counts, "budget": budget,
             "repeats": 1, "best": None, "error": None, "elapsed_s": 5400.0}
    row = format_status({"daemon": {"pid": 1}, "studies": [study], "gpus": []}).splitlines()[1]
    assert f" {shown} " in row, row


def test_parameters_named_like_columns_or_like_their_prefixed_headers_stay_apart() -> None:
    """QA's study: without the rule, both `value` and `param.value` were headed `param.value`,
    and csv.DictReader kept one of them under the other's name."""
    from hpod.report import param_header

    params = [{"value": 7, "param.value": 70, "state": "on", "param.state": "ON", "lr": 0.1},
              {"value": 9, "param.value": 90, "state": "off", "param.state": "OFF", "lr": 0.2}]
    rows = [_row(n, 0.25 * (n + 1), p) for n, p in enumerate(params)]
    text = format_trials(rows, "csv")
    head = text.splitlines()[0].split(",")
    assert len(head) == len(set(head))
    assert head == ["trial", "state", "value", "last_step", "duration_s", "lr", "param.param.state",
                    "param.param.value", "param.state", "param.value", "reason"]
    read = list(csv.DictReader(io.StringIO(text)))
    for got, want in zip(read, params):
        assert got["state"] == "complete"
        for name, value in want.items():
            assert got[param_header(name)] == str(value), name
    assert [r["value"] for r in read] == ["0.25", "0.5"]
    # The same headers head the table.
    assert format_trials(rows, "table").splitlines()[0].split() == head
    # A header depends on the parameter's name alone, not on which optional columns show.
    assert param_header("config") == "param.config" and param_header("x") == "x"


def test_a_newline_in_a_value_stays_inside_its_table_cell() -> None:
    rows = [_row(0, 0.5, {"prompt": "line one\nline two\ttabbed", "act": "relu"})]
    table = format_trials(rows, "table")
    assert len(table.splitlines()) == 2
    assert r"line one\nline two\ttabbed" in table.splitlines()[1]
    # CSV quotes the cell and keeps the value exactly.
    (read,) = csv.DictReader(io.StringIO(format_trials(rows, "csv")))
    assert read["prompt"] == "line one\nline two\ttabbed"


def test_where_trials_ran_shows_once_some_ran_on_a_gpu_or_a_node() -> None:
    on_cpu = [dict(_row(0, 0.5, {"x": 1}), placement="cpu:0"),
              dict(_row(1, 0.4, {"x": 2}), placement=None)]  # never started
    assert "placement" not in format_trials(on_cpu, "csv").splitlines()[0]
    mixed = [*on_cpu, dict(_row(2, 0.3, {"x": 3}), placement="ray:node3/gpu:1")]
    read = list(csv.DictReader(io.StringIO(format_trials(mixed, "csv"))))
    assert [r["placement"] for r in read] == ["cpu:0", "", "ray:node3/gpu:1"]
    assert "gpu:0(½)" in format_trials([dict(_row(0, 0.5, {"x": 1}), placement="gpu:0(½)")],
                                       "table")
