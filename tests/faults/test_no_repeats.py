"""A grid never runs a point twice, even when trials finish at the same moment.

The race this guards against: a controller that frees a trial's slot and forgets it as
"running" before the store has recorded its result and the suggester has observed it. A slot
taken in that window asks the suggester with the finished point neither pending nor observed,
and a grid hands the same point out again (it did, before the controller kept the trial in its
runs until observed). Four trials held at a gate finish together; an external writer holding
the SQLite write lock while they exit (as `hpod stop` does briefly) makes the window certain
rather than likely.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path

import pytest

from helpers import wait_until, write_study
from hpod.store import StoreUnavailable, TrialState
from robustness_support import TRIALS, alive, db_of, trials_of

pytestmark = pytest.mark.slow

GATE = TRIALS / "gate.py"


def _running(folder: Path) -> list:
    try:
        return [t for t in trials_of(folder, "grid") if t.state is TrialState.RUNNING
                and t.last_step is not None]
    except StoreUnavailable:
        return []


def test_trials_that_finish_together_never_repeat_a_grid_point(tmp_path: Path,
                                                                start_daemon) -> None:
    gate = tmp_path / "gate"
    write_study(tmp_path, "grid", f"""
command = ["python", "{GATE}"]
objective = {{ metric = "loss", direction = "minimize" }}
parallel = 4
seed = 1
suggester = {{ kind = "grid" }}
[space]
x = {{ type = "float", low = 0.0, high = 1.0, step = 0.25 }}
act = {{ type = "categorical", choices = ["relu", "tanh", "gelu"] }}
gate = "{gate}"
""")
    daemon = start_daemon(tmp_path, "--exit-when-idle", "--slots", "4")
    held = wait_until(lambda: len(_running(tmp_path)) == 4 and _running(tmp_path),
                      what="four trials waiting at the gate")
    pids = [int((tmp_path / ".hpod" / "trials" / "grid" / f"{t.number:05d}" / "pid")
                .read_text()) for t in held]
    writer = sqlite3.connect(db_of(tmp_path), isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")  # the daemon's writes wait (busy_timeout) meanwhile
        gate.touch()
        wait_until(lambda: not any(alive(pid) for pid in pids), what="the four trials to exit")
    finally:
        writer.execute("COMMIT")
        writer.close()
    assert daemon.wait() == 0, daemon.log()

    trials = trials_of(tmp_path, "grid")
    points = Counter((t.params["x"], t.params["act"]) for t in trials)
    assert [p for p, n in points.items() if n > 1] == []
    assert len(points) == 15 and len(trials) == 15
