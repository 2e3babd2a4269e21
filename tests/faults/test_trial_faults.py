"""Trial faults injected for real: one daemon, one study per fault, real processes and signals,
then the store checked for exact counts and a reason in words for every trial.

Each study runs two trials one after the other, so every fault happens twice in the same study:
the second trial starting at all shows that the first one's slot was released and the study went
on. A well-behaved study runs beside them and must complete.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from helpers import hpod_cli, study_status, write_study
from hpod.store import EventLevel, StoreReader, TrialState
from robustness_support import alive, db_of, fault_study, integrity, recorded_pids, trials_of

pytestmark = pytest.mark.slow

COMPLETE, FAILED = TrialState.COMPLETE, TrialState.FAILED
TIMEOUTS = "timeout = 1\ngrace = 0.3"
STALL = "stall_timeout = 1\ngrace = 0.3"

# mode -> ([trial] options, the state both trials end in, fragments every reason holds)
FAULTS: dict[str, tuple[str, TrialState, tuple[str, ...]]] = {
    "exit3": ("", FAILED, ("exit code 3", "Disk quota exceeded (simulated)")),
    "segv": ("", FAILED, ("killed by SIGSEGV", "about to crash in native code")),
    "oom": ("", FAILED, ("killed by SIGKILL (out of memory? see dmesg)",
                         "CUDA out of memory (simulated)")),
    "hang": (TIMEOUTS, FAILED, ("timed out after 1 s",)),
    "term_hang": (TIMEOUTS, FAILED, ("timed out after 1 s",)),
    "stall": (STALL, FAILED, ("stalled: no report for 1 s",)),
    "close_hang": (STALL, FAILED, ("stalled: no report for 1 s",)),
    "close_exit": ("", FAILED, ("exited with code 0 but never reported the objective `loss`",)),
    "nan": ("", FAILED, ("the objective `loss` was nan at its last report (step 1)",)),
    "inf": ("", FAILED, ("the objective `loss` was inf at its last report (step 1)",)),
    "fork_fail": ("", FAILED, ("exit code 1", "parent gives up, its child lives on")),
    "fork_ok": ("", COMPLETE, ()),
    "garbage": ("", COMPLETE, ()),
    "megaline": ("", COMPLETE, ()),
    "ok": ("", COMPLETE, ()),
}


def test_every_fault_is_recorded_with_its_reason_and_the_studies_go_on(tmp_path: Path,
                                                                         start_daemon) -> None:
    for mode, (options, _state, _fragments) in FAULTS.items():
        write_study(tmp_path, mode, fault_study(mode, trial=options))
    daemon = start_daemon(tmp_path, "--exit-when-idle", "--slots", "4")
    # Exit code 1: the studies of the faults that fail every trial end with no result, and the
    # daemon names each of them.
    assert daemon.wait(timeout=240) == 1, daemon.log()
    failing = {mode for mode, (_o, state, _f) in FAULTS.items() if state is not COMPLETE}
    for mode in failing:
        assert f"hpod: study {mode} ({mode}.toml) is complete with no trial complete" in \
            daemon.log(), mode

    for mode, (_options, state, fragments) in FAULTS.items():
        trials = trials_of(tmp_path, mode)
        assert Counter(t.state for t in trials) == {state: 2}, (mode, trials)
        for trial in trials:
            assert trial.attempt == 0 and trial.finished_at is not None, (mode, trial)
            if state is COMPLETE:
                assert trial.reason is None and trial.value == trial.params["x"], (mode, trial)
            for fragment in fragments:
                assert fragment in (trial.reason or ""), (mode, trial.reason)
        status = study_status(tmp_path, mode)
        assert status["state"] == "complete" and status["error"] is None, status

    with StoreReader(db_of(tmp_path)) as reader:
        events = reader.list_events(limit=100_000)
        names = {s.id: s.name for s in reader.list_studies()}
    warnings = Counter(names[e.study_id] for e in events
                       if e.level is EventLevel.WARNING and "not the hpod protocol" in e.message)
    # Seven junk lines per garbage trial; five are recorded, the fifth saying the rest are not.
    assert warnings == {"garbage": 10, "megaline": 2}
    capped = [e for e in events if "further protocol problems" in e.message]
    assert len(capped) == 2
    assert all("line longer than 1048576 bytes" in e.message
               for e in events if names.get(e.study_id) == "megaline"
               and e.level is EventLevel.WARNING)

    # Whole process groups went: forked children and SIGTERM-ignoring trials too.
    pids = recorded_pids(tmp_path / ".hpod" / "trials")
    # Each trial writes its pid first, + the children of fork_fail and fork_ok; but a 1 s
    # timeout can end a trial whose interpreter is still starting on a loaded machine.
    timed = 2 * sum(1 for options, _state, _fragments in FAULTS.values() if options)
    assert 2 * len(FAULTS) + 4 - timed <= len(pids) <= 2 * len(FAULTS) + 4
    assert [pid for pid in pids if alive(pid)] == []
    assert integrity(db_of(tmp_path)) == "ok"
    # The CLI reads it all back without trouble.
    assert "oom" in hpod_cli("events", tmp_path, "--limit", "500").stdout


def test_max_failures_counts_only_failures_in_a_row(tmp_path: Path, start_daemon) -> None:
    write_study(tmp_path, "always", fault_study("exit3", trials=20,
                                                extra="max_failures = 3").replace(
        "max_failures = 100\n", ""))
    write_study(tmp_path, "alternate", fault_study("odd_fail", trials=8,
                                                   extra="max_failures = 2").replace(
        "max_failures = 100\n", ""))
    daemon = start_daemon(tmp_path, "--exit-when-idle")
    assert daemon.wait(timeout=120) == 1, daemon.log()  # one study failed

    always = trials_of(tmp_path, "always")
    assert [t.state for t in always] == [FAILED] * 3
    status = study_status(tmp_path, "always")
    assert status["state"] == "failed"
    assert "3 trials in a row failed (max_failures = 3)" in status["error"]
    assert "exit code 3" in status["error"]

    # A success between two failures resets the count: this study runs its whole budget.
    alternate = trials_of(tmp_path, "alternate")
    assert [t.state for t in alternate] == [COMPLETE, FAILED] * 4
    assert study_status(tmp_path, "alternate")["state"] == "complete"


_CHATTY = """
import sys
import hpod.trial as trial
for i in range(20000):
    print(f"batch {i:05d}: a progress line that a trial should not print all night", flush=False)
print("the last line", flush=True)
trial.report(1, loss=0.5)
"""


def test_a_trial_that_prints_too_much_keeps_its_newest_output_under_max_log_mb(
        tmp_path: Path, start_daemon) -> None:
    script = tmp_path / "chatty.py"
    script.write_text(_CHATTY)
    write_study(tmp_path, "chatty", f"""
command = ["python", "{script}"]
objective = {{ metric = "loss", direction = "minimize" }}
budget = {{ trials = 2 }}
[trial]
max_log_mb = 0.25
[space]
x = {{ type = "float", low = 0.0, high = 1.0 }}
""")
    assert start_daemon(tmp_path, "--exit-when-idle").wait() == 0
    for number in (0, 1):
        log = tmp_path / ".hpod" / "trials" / "chatty" / f"{number:05d}" / "stdout.log"
        text = log.read_text()
        assert len(text) < 0.25 * 1024 * 1024, len(text)  # 1.4 MB printed
        assert text.startswith("[hpod: the first ") and text.endswith("the last line\n")
    events = hpod_cli("events", tmp_path).stdout
    assert events.count("its oldest output was cut") == 1, events
    assert study_status(tmp_path, "chatty")["trials"]["complete"] == 2
