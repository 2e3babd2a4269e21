"""Early stopping in the real daemon: a stop decision reaches the trial in the answer to the
report that lost, and the trial stops at that rung exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hpod.store import StoreReader

from helpers import FIXTURE_TRIALS, hpod_cli, study_status, write_study

pytestmark = pytest.mark.slow


def _study(kind: str, extra: str = "") -> str:
    return f"""
command = ["python", "{FIXTURE_TRIALS / 'quadratic.py'}"]
objective = {{ metric = "loss", direction = "minimize" }}
budget = {{ trials = 12 }}
parallel = 2
seed = 3
[scheduler]
kind = "{kind}"
min_resource = 1
max_resource = 9
reduction_factor = 3
{extra}
[space]
x = {{ type = "float", low = 0.0, high = 1.0 }}
steps = 9
"""


def test_asha_stops_losers_exactly_at_a_rung(tmp_path: Path, start_daemon) -> None:
    write_study(tmp_path, "asha", _study("asha"))
    daemon = start_daemon(tmp_path, "--exit-when-idle")
    assert daemon.wait() == 0, daemon.log()
    study = study_status(tmp_path, "asha")
    assert study["state"] == "complete"
    rows = json.loads(hpod_cli("trials", tmp_path, "asha", "--format", "json").stdout)
    assert len(rows) == 12
    stopped = [row for row in rows if row["state"] == "stopped"]
    complete = [row for row in rows if row["state"] == "complete"]
    assert stopped, "with 12 trials and eta = 3, ASHA must stop some at a rung"
    assert complete
    for row in stopped:
        # The rungs are 1, 3 and 9: a stopped trial's last report is at a rung, no epoch more.
        assert row["last_step"] in (1, 3), row
        assert "stopped early by the asha scheduler" in row["reason"]
    for row in complete:
        assert row["last_step"] == 9
    best = json.loads(hpod_cli("best", tmp_path, "asha", "--json").stdout)
    assert best["value"] == min(row["value"] for row in complete)


def test_asha_promotion_pauses_and_resumes_from_checkpoints(tmp_path: Path,
                                                            start_daemon) -> None:
    write_study(tmp_path, "promo", _study("asha", 'mode = "pause"'))
    daemon = start_daemon(tmp_path, "--exit-when-idle")
    assert daemon.wait() == 0, daemon.log()
    assert study_status(tmp_path, "promo")["state"] == "complete"
    rows = json.loads(hpod_cli("trials", tmp_path, "promo", "--format", "json").stdout)
    assert len(rows) == 12
    assert {row["state"] for row in rows} <= {"complete", "stopped"}
    complete = [row for row in rows if row["state"] == "complete"]
    assert complete and all(row["last_step"] == 9 for row in complete)
    # A promoted trial resumed from its checkpoint: its folder holds the step it paused at,
    # and it reported every step exactly once (a restart from scratch would repeat step 1).
    resumed = [row for row in complete
               if (tmp_path / ".hpod" / "trials" / "promo" / f"{row['trial']:05d}" /
                   "checkpoint.txt").exists()]
    assert resumed, "some complete trial must have been paused and promoted"
    with StoreReader(tmp_path / ".hpod" / "hpod.db") as reader:
        study = reader.find_study("promo")
        for row in resumed:
            trial = reader.get_trial_by_number(study.id, row["trial"])
            steps = [point.step for _id, point in reader.metrics(trial.id)]
            assert steps == list(range(1, 10)), steps
    for row in rows:
        if row["state"] == "stopped":
            assert row["last_step"] in (1, 3)


_SLOWER_EACH_TIME = """
import hpod.trial as trial

number = trial.trial_number()
for step in range(1, 10):
    # Every new trial starts worse than all before it: from the third on, ASHA stops each one
    # at the first rung.
    if trial.report(step, loss=float(number) + 1.0 / step) == "stop":
        break
"""


def test_a_streak_of_first_rung_stops_is_a_warning_event(tmp_path: Path, start_daemon) -> None:
    from hpod.first_rung_watch import STREAK

    (tmp_path / "slower.py").write_text(_SLOWER_EACH_TIME)
    write_study(tmp_path, "night", f"""
command = ["python", "{tmp_path / 'slower.py'}"]
objective = {{ metric = "loss", direction = "minimize" }}
budget = {{ trials = {STREAK + 2} }}
parallel = 1
[scheduler]
kind = "asha"
min_resource = 1
max_resource = 9
[space]
x = {{ type = "float", low = 0.0, high = 1.0 }}
""")
    daemon = start_daemon(tmp_path, "--exit-when-idle")
    assert daemon.wait() == 0, daemon.log()
    rows = json.loads(hpod_cli("trials", tmp_path, "night", "--format", "json").stdout)
    assert [row["state"] for row in rows] == ["complete"] * 2 + ["stopped"] * STREAK
    with StoreReader(tmp_path / ".hpod" / "hpod.db") as reader:
        warnings = [event for event in reader.list_events(limit=1_000)
                    if "stopped at the first rung" in event.message]
    assert len(warnings) == 1, warnings
    assert warnings[0].level.value == "warning"
    assert f"the last {STREAK} trials were all stopped at the first rung (resource 1)" in \
        warnings[0].message


def test_a_resource_the_trials_do_not_report_is_warned_about_once(tmp_path: Path,
                                                                   start_daemon) -> None:
    """`resource = "epoch"` where the trials report only `loss` at each step: the steps stand in
    for it, as before, and the study's events say so once (not once per trial or report)."""
    write_study(tmp_path, "typo", _study("asha", extra='resource = "epoch"'))
    assert start_daemon(tmp_path, "--exit-when-idle").wait() == 0
    events = hpod_cli("events", tmp_path, "--limit", "1000").stdout
    assert events.count("without `epoch`, the [scheduler] resource") == 1, events
    assert study_status(tmp_path, "typo")["trials"]["stopped"] > 0  # judged on the steps


def test_sh_judges_the_last_cohort_with_every_trial_of_the_budget(tmp_path: Path,
                                                                   start_daemon) -> None:
    """12 trials in cohorts of 6: each cohort keeps its best 2 at rung 1 and its best 1 at
    rung 3, which trains to the end. The last cohort is full too: its last trial is counted
    before the cohort is judged (it used to be left out, alone in a cohort of its own, and
    stopped at the end as "promoted no further")."""
    write_study(tmp_path, "sh", _study("sh", "options = { cohort_size = 6 }"))
    assert start_daemon(tmp_path, "--exit-when-idle").wait() == 0
    rows = json.loads(hpod_cli("trials", tmp_path, "sh", "--format", "json").stdout)
    assert len(rows) == 12
    assert not [row for row in rows if "promoted it no further" in (row["reason"] or "")], rows
    complete = [row["trial"] for row in rows if row["state"] == "complete"]
    assert len(complete) == 2, rows
    assert [sum(1 for n in complete if n < 6), sum(1 for n in complete if n >= 6)] == [1, 1]
