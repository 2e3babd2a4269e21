"""Enqueued configurations: the study file's [[enqueue]] points and `hpod enqueue` run before
new suggestions, exactly once, also across a daemon restart."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hpod.store import StoreReader

from hpod.enqueue import file_origins
from helpers import hpod_cli, quadratic_study, study_status, wait_until, write_study

pytestmark = pytest.mark.slow

ENQUEUED = """
[[enqueue]]
x = 0.3

[[enqueue]]
x = 0.9
"""
FIRST, SECOND = file_origins([{"x": 0.3}, {"x": 0.9}])


def _rows(folder: Path, study: str) -> list[dict]:
    return json.loads(hpod_cli("trials", folder, study, "--format", "json").stdout)


def _origins(folder: Path, study: str) -> list[str | None]:
    with StoreReader(folder / ".hpod" / "hpod.db") as reader:
        record = reader.find_study(study)
        return [trial.origin for trial in reader.list_trials(record.id)]


def test_file_points_run_first_and_once_across_restarts(tmp_path: Path, start_daemon) -> None:
    write_study(tmp_path, "enq", quadratic_study(trials=3, parallel=1, extra=ENQUEUED))
    assert start_daemon(tmp_path, "--exit-when-idle").wait() == 0
    rows = _rows(tmp_path, "enq")
    assert [row["params"]["x"] for row in rows[:2]] == [0.3, 0.9]
    assert _origins(tmp_path, "enq") == [FIRST, SECOND, None]

    # More budget and a restart: the enqueued points are not run again.
    write_study(tmp_path, "enq", quadratic_study(trials=5, parallel=1, extra=ENQUEUED))
    assert start_daemon(tmp_path, "--exit-when-idle").wait() == 0
    assert _origins(tmp_path, "enq") == [FIRST, SECOND, None, None, None]
    assert study_status(tmp_path, "enq")["trials"]["complete"] == 5


def test_hpod_enqueue_runs_a_point_next_in_a_running_study(tmp_path: Path,
                                                           start_daemon) -> None:
    write_study(tmp_path, "live", quadratic_study(
        trials=3, parallel=1, extra_space="steps = 1000\nsleep = 0.05"))
    daemon = start_daemon(tmp_path)
    wait_until(lambda: (study_status(tmp_path, "live") or {}).get("trials", {}).get("running"),
               what="a running trial")
    result = hpod_cli("enqueue", tmp_path, "live", "x=0.55")
    assert "enqueued" in result.stdout
    bad = hpod_cli("enqueue", tmp_path, "live", "x=7", check=False)
    assert bad.returncode == 2 and "x" in bad.stderr
    hpod_cli("stop", tmp_path, "live", "--trial", "0")
    wait_until(lambda: len(_rows(tmp_path, "live")) >= 2, what="the next trial")
    second = _rows(tmp_path, "live")[1]
    assert second["params"]["x"] == 0.55
    assert (_origins(tmp_path, "live")[1] or "").startswith("user:")
    assert daemon.terminate() == 0


def test_hpod_enqueue_points_survive_a_restart_before_they_run(tmp_path: Path,
                                                               start_daemon) -> None:
    """Points enqueued into a paused study wait in memory until a slot takes them; a daemon
    stopped (or killed) meanwhile finds them again in the commands that brought them, and runs
    each exactly once."""
    slow = "steps = 20\nsleep = 0.05"
    write_study(tmp_path, "later", quadratic_study(trials=4, parallel=1, extra_space=slow))
    daemon = start_daemon(tmp_path)
    wait_until(lambda: (study_status(tmp_path, "later") or {}).get("trials", {}).get("running"),
               what="a running trial")
    hpod_cli("pause", tmp_path, "later")
    wait_until(lambda: study_status(tmp_path, "later")["state"] == "paused", what="the pause")
    hpod_cli("enqueue", tmp_path, "later", "x=0.25")
    hpod_cli("enqueue", tmp_path, "later", "x=0.75")
    assert daemon.terminate() == 0

    restarted = start_daemon(tmp_path)
    wait_until(lambda: "watching" in restarted.log(), what="the restarted daemon")
    hpod_cli("resume", tmp_path, "later")
    wait_until(lambda: study_status(tmp_path, "later")["state"] == "complete",
               what="the resumed study to finish", timeout=120)
    assert restarted.terminate() == 0
    xs = [row["params"]["x"] for row in _rows(tmp_path, "later")]
    assert xs.count(0.25) == 1 and xs.count(0.75) == 1
    origins = [o for o in _origins(tmp_path, "later") if (o or "").startswith("user:")]
    assert len(origins) == 2 and len(set(origins)) == 2

    # Another restart with more budget: they do not run again.
    write_study(tmp_path, "later", quadratic_study(trials=6, parallel=1, extra_space=slow))
    assert start_daemon(tmp_path, "--exit-when-idle").wait() == 0
    xs = [row["params"]["x"] for row in _rows(tmp_path, "later")]
    assert len(xs) == 6 and xs.count(0.25) == 1 and xs.count(0.75) == 1


def test_enqueue_or_resume_on_a_complete_study_says_to_raise_its_budget(tmp_path: Path,
                                                                        start_daemon) -> None:
    write_study(tmp_path, "done", quadratic_study(trials=1, parallel=1))
    daemon = start_daemon(tmp_path)
    wait_until(lambda: (study_status(tmp_path, "done") or {}).get("state") == "complete",
               what="the study to complete")
    for asked in (hpod_cli("enqueue", tmp_path, "done", "x=0.5", check=False),
                  hpod_cli("resume", tmp_path, "done", check=False)):
        assert asked.returncode == 1
        assert "is complete" in asked.stdout and "raise `budget`" in asked.stdout, asked
    assert study_status(tmp_path, "done")["trials"]["complete"] == 1
    assert daemon.terminate() == 0


def _gated_study(gate: Path, *, trials: int, extra: str = "") -> str:
    gated = Path(__file__).parents[1] / "faults" / "trials" / "gate.py"
    return f"""
command = ["python", "{gated}"]
objective = {{ metric = "loss", direction = "minimize" }}
budget = {{ trials = {trials} }}
parallel = 1
{extra}
[space]
x = {{ type = "float", low = 0.0, high = 1.0 }}
gate = "{gate}"
"""


def _gated_grid(gate: Path, *, parallel: int) -> str:
    """A grid of 4 points (x, y in {0, 1}) whose trials wait at `gate`."""
    return _gated_study(gate, trials=10).replace("parallel = 1", f"parallel = {parallel}").replace(
        'x = { type = "float", low = 0.0, high = 1.0 }',
        'x = { type = "int", low = 0, high = 1 }\ny = { type = "int", low = 0, high = 1 }'
    ) + '[suggester]\nkind = "grid"\n'


def test_a_point_enqueued_during_the_last_trial_runs_before_the_study_completes(
        tmp_path: Path, start_daemon) -> None:
    # The budget is spent once the last trial has started; the study completed when it
    # ended, and the point `hpod enqueue` had accepted never ran.
    gate = tmp_path / "gate"
    write_study(tmp_path, "last", _gated_study(gate, trials=1))
    daemon = start_daemon(tmp_path, "--exit-when-idle")
    wait_until(lambda: (study_status(tmp_path, "last") or {}).get("trials", {}).get("running"),
               what="the last trial running")
    assert "enqueued" in hpod_cli("enqueue", tmp_path, "last", "x=0.25").stdout
    gate.touch()
    assert daemon.wait() == 0, daemon.log()
    assert _origins(tmp_path, "last")[0] is None and _origins(tmp_path, "last")[1] is not None
    assert [row["params"]["x"] for row in _rows(tmp_path, "last")][1] == 0.25


def test_a_point_added_to_a_running_studys_file_runs(tmp_path: Path, start_daemon) -> None:
    gate = tmp_path / "gate"
    write_study(tmp_path, "grow", _gated_study(gate, trials=3))
    daemon = start_daemon(tmp_path, "--exit-when-idle")
    wait_until(lambda: (study_status(tmp_path, "grow") or {}).get("trials", {}).get("running"),
               what="the first trial running")
    write_study(tmp_path, "grow", _gated_study(gate, trials=3, extra=ENQUEUED))
    wait_until(lambda: "new definition" in hpod_cli("events", tmp_path).stdout,
               what="the edit applied")
    gate.touch()
    assert daemon.wait() == 0, daemon.log()
    assert _origins(tmp_path, "grow") == [None, FIRST, SECOND]


def test_a_point_put_first_in_a_running_studys_file_runs_and_the_others_not_again(
        tmp_path: Path, start_daemon) -> None:
    # An enqueued point was known by its index: one put in front of a point that had run took
    # that point's identity (and never ran), and the point that had run ran again.
    gate = tmp_path / "gate"
    write_study(tmp_path, "front", _gated_study(gate, trials=3, extra=ENQUEUED))
    daemon = start_daemon(tmp_path, "--exit-when-idle")
    wait_until(lambda: (study_status(tmp_path, "front") or {}).get("trials", {})
               .get("running"), what="the first point running")
    write_study(tmp_path, "front", _gated_study(gate, trials=3, extra="[[enqueue]]\nx = 0.5\n"
                                                + ENQUEUED))
    wait_until(lambda: "new definition" in hpod_cli("events", tmp_path).stdout,
               what="the edit applied")
    gate.touch()
    assert daemon.wait() == 0, daemon.log()
    (new,) = file_origins([{"x": 0.5}])
    assert _origins(tmp_path, "front") == [FIRST, new, SECOND]
    assert [row["params"]["x"] for row in _rows(tmp_path, "front")] == [0.3, 0.5, 0.9]


def test_points_added_beyond_a_spent_budget_are_said_not_to_run(tmp_path: Path,
                                                                 start_daemon) -> None:
    # File points count against the budget: two added to a complete study of one trial with a
    # budget of two leave room for one. The other waited for good, and nothing said so.
    write_study(tmp_path, "more", quadratic_study(trials=1, parallel=1))
    daemon = start_daemon(tmp_path)
    wait_until(lambda: (study_status(tmp_path, "more") or {}).get("state") == "complete",
               what="the study to complete")
    write_study(tmp_path, "more", quadratic_study(trials=2, parallel=1) + ENQUEUED)
    wait_until(lambda: "1 of its [[enqueue]] points will not run: the budget has 1 trial left. "
               "Fix: raise budget.trials to 3" in hpod_cli("events", tmp_path).stdout,
               what="the warning")
    wait_until(lambda: study_status(tmp_path, "more")["trials"].get("complete") == 2,
               what="the point that fits to run")
    assert daemon.terminate() == 0
    # Started again with the point still left out: said once, not at every start.
    assert start_daemon(tmp_path, "--exit-when-idle").wait() == 0
    assert hpod_cli("events", tmp_path).stdout.count("will not run") == 1
    daemon = start_daemon(tmp_path)
    write_study(tmp_path, "more", quadratic_study(trials=3, parallel=1) + ENQUEUED)
    wait_until(lambda: study_status(tmp_path, "more")["trials"].get("complete") == 3,
               what="the other point to run once the budget is raised")
    assert _origins(tmp_path, "more") == [None, FIRST, SECOND]
    assert hpod_cli("events", tmp_path).stdout.count("will not run") == 1
    # The warning is what is left with the routine events left out.
    serious = hpod_cli("events", tmp_path, "--level", "warning").stdout
    assert "will not run" in serious and "added from" not in serious, serious
    assert daemon.terminate() == 0


def test_a_partial_point_enqueued_once_the_grid_is_exhausted_runs(tmp_path: Path,
                                                                 start_daemon) -> None:
    # The suggester has nothing left to complete the point with; it was dropped unrun.
    gate = tmp_path / "gate"
    write_study(tmp_path, "grid", _gated_grid(gate, parallel=4))
    daemon = start_daemon(tmp_path, "--exit-when-idle", "--slots", "4")
    wait_until(lambda: (study_status(tmp_path, "grid") or {}).get("trials", {})
               .get("running") == 4, what="every grid point running")
    assert "enqueued" in hpod_cli("enqueue", tmp_path, "grid", "x=1").stdout
    gate.touch()
    assert daemon.wait() == 0, daemon.log()
    rows = _rows(tmp_path, "grid")
    assert len(rows) == 5 and rows[4]["params"]["x"] == 1, rows
    assert (_origins(tmp_path, "grid")[4] or "").startswith("user:")
    assert "are drawn at random" in hpod_cli("events", tmp_path).stdout


def test_a_point_added_to_the_file_of_an_exhausted_grid_runs(tmp_path: Path,
                                                             start_daemon) -> None:
    # Every grid point proposed: the study took no point of the file any more, and ended
    # without running it, or saying so.
    gate = tmp_path / "gate"
    grid = _gated_grid(gate, parallel=5)
    write_study(tmp_path, "grid", grid)
    daemon = start_daemon(tmp_path, "--exit-when-idle", "--slots", "5")
    wait_until(lambda: "search space is exhausted" in daemon.log(), what="the grid exhausted")
    write_study(tmp_path, "grid", grid + "[[enqueue]]\nx = 1\n")
    wait_until(lambda: len(_rows(tmp_path, "grid")) == 5, what="the file's point made a trial")
    gate.touch()
    assert daemon.wait() == 0, daemon.log()
    rows = _rows(tmp_path, "grid")
    assert len(rows) == 5 and rows[4]["params"]["x"] == 1, rows
    assert (_origins(tmp_path, "grid")[4] or "").startswith("file:")
