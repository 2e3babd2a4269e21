"""What a study file's moves mean to a running daemon: a rename, a file removed and put back
while its study stops, and a file that waited for its study's name. A real `hpod serve`, real
trials, observed through the CLI."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from helpers import hpod_cli, quadratic_study, study_status, wait_until, write_study

pytestmark = pytest.mark.slow


def _trials(folder: Path, study: str) -> list[dict]:
    return json.loads(hpod_cli("trials", folder, study, "--format", "json").stdout)


def _events(folder: Path) -> str:
    return hpod_cli("events", folder, "--limit", "1000").stdout


def _counts(folder: Path, study: str) -> dict[str, int]:
    return (study_status(folder, study) or {}).get("trials", {})


def test_renaming_a_running_study_file_keeps_the_study_running(tmp_path: Path,
                                                               start_daemon) -> None:
    body = 'name = "exp"\n' + quadratic_study(trials=6, parallel=2,
                                             extra_space="steps = 40\nsleep = 0.05")
    old = write_study(tmp_path, "first", body)
    daemon = start_daemon(tmp_path)
    wait_until(lambda: _counts(tmp_path, "exp").get("running") == 2, what="two running trials")
    new = tmp_path / "renamed.toml"
    os.rename(old, new)
    wait_until(lambda: (study_status(tmp_path, "exp") or {}).get("path") == str(new),
               what="the study to follow its file")
    wait_until(lambda: _counts(tmp_path, "exp").get("complete") == 6, what="the whole budget")
    assert {t["state"] for t in _trials(tmp_path, "exp")} == {"complete"}
    assert "was removed" not in _events(tmp_path)
    assert daemon.terminate() == 0


_HELD_FIRST = """
import os, pathlib, signal, sys, time
import hpod.trial as trial

# Trial #0 takes its time to exit after SIGTERM: until the test lets it go.
here = pathlib.Path(sys.argv[1])
if trial.trial_number() == 0:
    signal.signal(signal.SIGTERM, lambda *_: (here / "terminated").write_text("yes"))
    trial.report(1, loss=1.0)
    while not (here / "release").exists():
        time.sleep(0.02)
    sys.exit(0)
trial.report(1, loss=0.5)
"""


def test_a_file_put_back_while_its_study_stops_starts_it_again(tmp_path: Path,
                                                               start_daemon) -> None:
    """Removing a study's file stops it; putting the file back while its last trial is still
    stopping (an editor's slow save, `git checkout`) is not an edit of a study that is over: it
    starts again once that trial has gone."""
    script = tmp_path / "held.py"
    script.write_text(_HELD_FIRST)
    body = f"""
command = ["python", "{script}", "{tmp_path}"]
objective = {{ metric = "loss", direction = "minimize" }}
budget = {{ trials = 3 }}
parallel = 1
[trial]
grace = 3600
[space]
x = {{ type = "float", low = 0.0, high = 1.0 }}
"""
    path = write_study(tmp_path, "held", body)
    daemon = start_daemon(tmp_path)
    wait_until(lambda: _counts(tmp_path, "held").get("running") == 1, what="trial #0 to run")
    path.unlink()
    wait_until((tmp_path / "terminated").exists, what="trial #0 to be asked to stop")
    write_study(tmp_path, "held", body)
    wait_until(lambda: "starts again once its running trials have ended" in _events(tmp_path),
               what="the file to be read while the study stops")
    (tmp_path / "release").write_text("go")
    wait_until(lambda: (study_status(tmp_path, "held") or {}).get("state") == "complete",
               what="the study to start again and finish its budget")
    states = [t["state"] for t in _trials(tmp_path, "held")]
    assert states == ["stopped", "complete", "complete"]
    assert daemon.terminate() == 0


def test_a_file_refused_for_a_taken_name_takes_it_when_the_other_file_goes(
        tmp_path: Path, start_daemon) -> None:
    first = write_study(tmp_path, "a", 'name = "exp"\n' + quadratic_study(trials=2))
    daemon = start_daemon(tmp_path)
    wait_until(lambda: (study_status(tmp_path, "exp") or {}).get("state") == "complete",
               what="the first file's study")
    second = write_study(tmp_path, "b", 'name = "exp"\n' + quadratic_study(trials=4))
    wait_until(lambda: "already used by a.toml" in _events(tmp_path), what="the clash")
    first.unlink()
    wait_until(lambda: _counts(tmp_path, "exp").get("complete") == 4,
               what="the second file to take the study over")
    status = study_status(tmp_path, "exp")
    assert status is not None and status["path"] == str(second) and status["error"] is None
    assert daemon.terminate() == 0


def test_saving_a_study_file_unchanged_says_nothing(tmp_path: Path, start_daemon) -> None:
    # An editor's autosave (copy, then move over the file) recorded "new definition applied"
    # at every save: thousands of events an hour.
    body = quadratic_study(trials=6, parallel=1, extra_space="steps = 40\nsleep = 0.05")
    path = write_study(tmp_path, "saved", body)
    daemon = start_daemon(tmp_path, "--log-level", "debug")
    wait_until(lambda: _counts(tmp_path, "saved").get("running") == 1, what="a running trial")
    for saves in range(1, 4):
        copy = tmp_path / "saved.toml.tmp"
        copy.write_text(body)
        os.replace(copy, path)
        wait_until(lambda: daemon.log().count("saved unchanged") >= saves,
                   what="the daemon to read the save")
    path.write_text(body.replace("trials = 6", "trials = 8"))  # a real edit, after them
    wait_until(lambda: "new definition applied (budget 8" in _events(tmp_path),
               what="the real edit's event")
    assert _events(tmp_path).count("new definition applied") == 1
    assert daemon.terminate() == 0
