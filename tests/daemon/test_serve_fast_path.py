"""`hpod serve` starts its trials on the fast path (executor/fd_slots.py, spawn.py,
child_watcher.py), end to end: real daemon processes, real trials, the real SQLite file.

The crash-recovery second-restart test once timed out with this path on and was taken for a
hang of the path. Nothing hung: the study had finished in about two seconds while the test
polled for a state (a running trial with stored reports) that lasts a fraction of one. Here
every state a test acts on is held by a gate until the test moves on.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from helpers import alive, quadratic_study, wait_until, write_study
from hpod.executor.spawn import find_setpriv
from hpod.store import StoreReader, StoreUnavailable, TrialRecord, TrialState

pytestmark = [
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc and setpriv"),
    pytest.mark.skipif(find_setpriv() is None,
                       reason="no setpriv with --pdeathsig: hpod serve takes the preexec path"),
]

GATE = Path(__file__).parents[1] / "faults" / "trials" / "gate.py"


def trials(folder: Path, study: str) -> list[TrialRecord]:
    try:
        with StoreReader(folder / ".hpod" / "hpod.db") as reader:
            record = reader.find_study(study)
            return [] if record is None else reader.list_trials(record.id)
    except StoreUnavailable:  # the daemon is still creating the file
        return []


def fds(pid: int) -> dict[str, str]:
    folder = f"/proc/{pid}/fd"
    return {fd: os.readlink(f"{folder}/{fd}") for fd in os.listdir(folder)}


def ppid(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[1])


def test_serve_holds_3_and_4_and_its_trials_die_with_a_kill_9(tmp_path: Path,
                                                               start_daemon) -> None:
    gate = tmp_path / "gate"
    write_study(tmp_path, "held", f"""
command = ["python", "{GATE}"]
objective = {{ metric = "loss", direction = "minimize" }}
budget = {{ trials = 2 }}
parallel = 2
seed = 1
[space]
x = {{ type = "float", low = 0.0, high = 1.0 }}
gate = "{gate}"
""")
    daemon = start_daemon(tmp_path)
    # Each trial reports step 0, then waits at the gate: both stay running with a stored report.
    def waiting() -> list[TrialRecord]:
        running = [t for t in trials(tmp_path, "held")
                   if t.state is TrialState.RUNNING and t.last_step == 0]
        return running if len(running) == 2 else []

    held = wait_until(waiting, what="two trials waiting at the gate")
    pids = [int((tmp_path / ".hpod" / "trials" / "held" / f"{t.number:05d}" / "pid").read_text())
            for t in held]
    # No spawn is under way: the daemon's 3 and 4 are its placeholders, not a pipe end.
    daemon_fds = fds(daemon.process.pid)
    assert (daemon_fds["3"], daemon_fds["4"]) == ("/dev/null", "/dev/null"), daemon_fds
    for pid in pids:
        assert ppid(pid) == daemon.process.pid, "setpriv execs the trial, it does not fork it"
        trial_fds = fds(pid)
        assert sorted(trial_fds) == ["0", "1", "2", "3", "4"], trial_fds
        assert trial_fds["3"].startswith("pipe:") and trial_fds["4"].startswith("pipe:")

    daemon.process.kill()
    daemon.wait()
    wait_until(lambda: not any(alive(pid) for pid in pids),
               what="the trials to die with the daemon (setpriv's PR_SET_PDEATHSIG)")

    gate.touch()
    restarted = start_daemon(tmp_path, "--exit-when-idle")
    assert restarted.wait() == 0, restarted.log()
    done = trials(tmp_path, "held")
    assert [(t.state, t.attempt, t.last_step) for t in done] == [(TrialState.COMPLETE, 1, 1)] * 2


def test_serve_sees_every_exit_of_many_short_trials(tmp_path: Path, start_daemon) -> None:
    """Each spawn puts a trial's pipes on 3 and 4 and takes them back; a copy of a report
    pipe's write end left in the daemon would keep that trial's messages from ending, and a
    missed exit would keep the study from finishing: --exit-when-idle would never exit."""
    write_study(tmp_path, "short", quadratic_study(trials=16, seed=2, extra_space="steps = 2"))
    daemon = start_daemon(tmp_path, "--exit-when-idle")
    assert daemon.wait() == 0, daemon.log()
    done = trials(tmp_path, "short")
    assert [(t.state, t.last_step) for t in done] == [(TrialState.COMPLETE, 2)] * 16
