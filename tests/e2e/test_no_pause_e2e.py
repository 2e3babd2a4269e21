"""A trial that does not declare it can checkpoint is never paused by the real daemon: under
ASHA in pause mode it gets stop mode's answers, and stops exactly at a rung."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hpod.store import StoreReader

from helpers import FIXTURE_TRIALS, hpod_cli, study_status, write_study

pytestmark = pytest.mark.slow

STUDY = f"""
command = ["python", "{FIXTURE_TRIALS / 'quadratic.py'}"]
objective = {{ metric = "loss", direction = "minimize" }}
budget = {{ trials = 12 }}
parallel = 2
seed = 3
[scheduler]
kind = "asha"
mode = "pause"
min_resource = 1
max_resource = 9
reduction_factor = 3
[space]
x = {{ type = "float", low = 0.0, high = 1.0 }}
steps = 9
resumable = false
"""


def test_a_trial_that_cannot_checkpoint_is_stopped_not_paused(tmp_path: Path,
                                                              start_daemon) -> None:
    write_study(tmp_path, "nopause", STUDY)
    daemon = start_daemon(tmp_path, "--exit-when-idle")
    assert daemon.wait() == 0, daemon.log()
    assert study_status(tmp_path, "nopause")["state"] == "complete"
    rows = json.loads(hpod_cli("trials", tmp_path, "nopause", "--format", "json").stdout)
    assert len(rows) == 12
    assert {row["state"] for row in rows} == {"complete", "stopped"}
    for row in rows:
        folder = tmp_path / ".hpod" / "trials" / "nopause" / f"{row['trial']:05d}"
        assert not (folder / "checkpoint.txt").exists(), row  # never told to pause
        if row["state"] == "stopped":
            assert row["last_step"] in (1, 3), row
            assert "stopped early by the asha scheduler" in row["reason"], row
        else:
            assert row["last_step"] == 9
    with StoreReader(tmp_path / ".hpod" / "hpod.db") as reader:
        study = reader.find_study("nopause")
        for row in rows:
            trial = reader.get_trial_by_number(study.id, row["trial"])
            steps = [point.step for _id, point in reader.metrics(trial.id)]
            # One run each, never relaunched: every step once, from 1 to where it ended.
            assert steps == list(range(1, row["last_step"] + 1)), (row, steps)


def test_sh_tells_a_trial_that_cannot_checkpoint_to_stop_not_to_pause(tmp_path: Path,
                                                                     start_daemon) -> None:
    # sh parks every trial at its rungs; one that did not declare it can checkpoint was told
    # "pause", which such a trial does not understand (it trained on until killed).
    study = (STUDY.replace('kind = "asha"\nmode = "pause"', 'kind = "sh"')
             .replace("budget = { trials = 12 }", "budget = { trials = 9 }")
             .replace("[space]", "options = { cohort_size = 9 }\n[space]"))
    write_study(tmp_path, "shnopause", study)
    daemon = start_daemon(tmp_path, "--exit-when-idle")
    assert daemon.wait() == 0, daemon.log()
    rows = json.loads(hpod_cli("trials", tmp_path, "shnopause", "--format", "json").stdout)
    assert len(rows) == 9 and any(row["state"] == "complete" for row in rows)
    for row in rows:
        folder = tmp_path / ".hpod" / "trials" / "shnopause" / f"{row['trial']:05d}"
        assert not (folder / "checkpoint.txt").exists(), row  # never told to pause


def test_a_trial_that_pauses_without_a_checkpoint_is_warned_about_once(tmp_path: Path,
                                                                      start_daemon) -> None:
    # It declared it can checkpoint, was told to pause, and exited without announcing one: a
    # promotion then trains it again from the start, which cost compute silently.
    study = STUDY.replace("resumable = false", "checkpoint_on_pause = false")
    write_study(tmp_path, "lazy", study)
    assert start_daemon(tmp_path, "--exit-when-idle").wait() == 0
    events = hpod_cli("events", tmp_path).stdout
    assert events.count("exited without announcing a checkpoint") == 1, events
    assert "hpod.trial.checkpoint(path)" in events
