"""Warm starts through the real daemon (`hpod serve`): `[trial] preload` studies run their trials
in spare processes, and nothing the store or the trial folders keep tells them from cold ones.

The parity test runs one study twice at once, in two folders: cold (`--spares off`) and warm
(`--spares ignore-load`: the box's other load must not decide whether a spare starts). Its
trials are planned by number — a normal one, one the ASHA scheduler stops, a crash, an exit
code, one that kills the spare waiting behind it, one that hangs until the study's timeout —
and the two runs must leave the same params, reports, states, reasons, exit codes and files.
Each trial also notes, in a file left out of the comparison, whether the preloaded module was
imported before its script started: that is the proof of a warm start.
"""

from __future__ import annotations

import json
import os
import re
import signal
import sys
from pathlib import Path

import pytest

from hpod.store import StoreReader

from helpers import (DaemonProcess, alive, hpod_cli, open_reader, study_status, wait_until,
                     write_study)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"),
                       reason="warm starts are Linux-only (PR_SET_PDEATHSIG, /proc)"),
    # A spare starts only when hpod's own trials leave a core free.
    pytest.mark.skipif(sys.platform.startswith("linux") and len(os.sched_getaffinity(0)) < 2,
                       reason="spares need a second core"),
]

PRELOADED = "colorsys"  # a cheap standard module that neither hpod nor the script imports
PLACEHOLDER = b"HPOD_TRIAL_DIR=----"  # a spare's, until it becomes a trial (hpod/spare.py)

TRIAL = f'''
import sys
preloaded = {PRELOADED!r} in sys.modules  # before any import of the script's own
import json, os, time
import hpod.trial as trial

PLAN = ["ok", "stop", "crash", "ok", "exit", "kill spare", "ok", "hang"]
number = trial.trial_number()
what = PLAN[number]
notes = {{"preloaded": preloaded, "pid": os.getpid()}}


def spares():
    """The daemon's spare processes (our siblings) still waiting for a trial."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = open(f"/proc/{{pid}}/stat", "rb").read()
            cmdline = open(f"/proc/{{pid}}/cmdline", "rb").read()
            environ = open(f"/proc/{{pid}}/environ", "rb").read().split(b"\\0")
        except OSError:
            continue
        ppid = int(stat.rsplit(b")", 1)[1].split()[1])
        if ppid == os.getppid() and b"hpod.spare" in cmdline and \\
                any(e.startswith({PLACEHOLDER!r}) for e in environ):
            found.append(int(pid))
    return found


if what == "kill spare" and os.environ.get("EXPECT_SPARES"):
    # The spare behind this trial is started at its launch; it dies before the next one.
    deadline = time.monotonic() + 60
    while not spares() and time.monotonic() < deadline:
        time.sleep(0.01)
    notes["killed"] = spares()
    for pid in notes["killed"]:
        os.kill(pid, 9)
(trial.trial_dir() / "warm.json").write_text(json.dumps(notes))

params = trial.params()
print("trial", number, what, params)
print("to stderr", number, file=sys.stderr)
loss = {{"stop": 0.9, "crash": 0.4, "exit": 0.45, "hang": 0.3}}.get(what, 0.5)
for step in range(1, 5):
    if trial.report(step, loss=loss) == "stop":
        print("stopped at", step)
        sys.exit(0)
    if what == "crash":
        raise RuntimeError(f"boom at step {{step}}")
    if what == "exit":
        sys.exit(3)
    if what == "hang":
        time.sleep(3600)
(trial.trial_dir() / "result.txt").write_text(f"{{number}} {{loss}}")
'''

STUDY = """
command = ["python", "{script}"]
objective = {{ metric = "loss", direction = "minimize" }}
budget = {{ trials = {trials} }}
parallel = 1
seed = 0

[space]
x = {{ type = "float", low = 0.0, high = 1.0 }}

[scheduler]
kind = "asha"
min_resource = 1
max_resource = 4
reduction_factor = 2

[trial]
preload = ["{preloaded}"]
{extra}
"""


def study_file(script: Path, *, trials: int, extra: str = "") -> str:
    return STUDY.format(script=script, trials=trials, preloaded=PRELOADED, extra=extra)


def spare_processes(folder: Path) -> list[int]:
    """Spares (not yet trials) of a daemon serving `folder`: `python -m hpod.spare`, working in
    the folder (the study's), with the placeholder HPOD_TRIAL_DIR."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            cwd = os.readlink(f"/proc/{pid}/cwd")
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"hpod.spare" in cmdline and cwd == str(folder.resolve()) and alive(int(pid)) \
                and any(e.startswith(PLACEHOLDER) for e in environ):
            found.append(int(pid))
    return found


def processes_in(folder: Path) -> list[int]:
    """Every live process working in `folder`: trials and spares alike."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.readlink(f"/proc/{pid}/cwd") == str(folder.resolve()) and alive(int(pid)):
                found.append(int(pid))
        except OSError:
            continue
    return found


def outcome(folder: Path, study: str) -> tuple[list[dict], dict[str, bytes], list[dict]]:
    """What the store and the trial folders keep of a study: trials, files, and the notes."""
    with StoreReader(folder / ".hpod" / "hpod.db") as reader:
        record = reader.find_study(study)
        assert record is not None and record.state.value == "complete", record
        trials = []
        for t in reader.list_trials(record.id):
            reports = [(p.step, p.name, p.value) for _id, p in reader.metrics(t.id)]
            trials.append({"number": t.number, "params": t.params, "state": t.state.value,
                           "value": t.value, "last_step": t.last_step, "reason": t.reason,
                           "exit_code": t.exit_code, "attempt": t.attempt, "reports": reports})
    root = folder / ".hpod" / "trials" / study
    files = {p.relative_to(root).as_posix(): p.read_bytes()
             for p in sorted(root.rglob("*")) if p.is_file() and p.name != "warm.json"}
    notes = [json.loads((root / f"{t['number']:05d}" / "warm.json").read_text())
             for t in trials]
    return trials, files, notes


def test_warm_and_cold_trials_leave_the_same_results(tmp_path: Path, start_daemon,
                                                     monkeypatch) -> None:
    script = tmp_path / "scripts" / "plan.py"
    script.parent.mkdir()
    script.write_text(TRIAL)
    body = study_file(script, trials=8, extra="timeout = 10")
    runs: dict[str, DaemonProcess] = {}
    for mode, spares in (("cold", "off"), ("warm", "ignore-load")):
        folder = tmp_path / mode
        folder.mkdir()
        write_study(folder, "plan", body)
        if mode == "warm":
            monkeypatch.setenv("EXPECT_SPARES", "1")  # for this daemon's trials only
        runs[mode] = start_daemon(folder, "--exit-when-idle", "--spares", spares)
    for mode, daemon in runs.items():
        assert daemon.wait() == 0, daemon.log()

    cold_trials, cold_files, cold_notes = outcome(tmp_path / "cold", "plan")
    warm_trials, warm_files, warm_notes = outcome(tmp_path / "warm", "plan")
    assert [t["state"] for t in cold_trials] == [
        "complete", "stopped", "failed", "complete", "failed", "complete", "complete", "failed"]
    assert "stopped early by the asha scheduler" in cold_trials[1]["reason"]
    assert "RuntimeError: boom at step 1" in cold_trials[2]["reason"]
    assert cold_trials[4]["exit_code"] == 3
    assert cold_trials[7]["reason"] == "timed out after 10 s"
    assert warm_trials == cold_trials
    assert warm_files.keys() == cold_files.keys()
    for name, data in cold_files.items():
        assert warm_files[name] == data, name

    # The proof: cold, nothing was preloaded; warm, every trial after the first was started
    # in a spare (the one behind the "kill spare" trial was replaced in time, or its launch
    # fell back to a cold start: either way the results above are the same).
    assert not any(note["preloaded"] for note in cold_notes)
    assert not warm_notes[0]["preloaded"], "the first trial of a slot has no spare yet"
    assert all(note["preloaded"] for i, note in enumerate(warm_notes[1:], 1) if i != 6)
    assert warm_notes[5]["killed"], "the spare behind trial #5 was found and killed"
    assert "warm starts:" in runs["warm"].log()
    # The daemon's shutdown ended the spare behind the last trial.
    assert spare_processes(tmp_path / "warm") == []
    assert processes_in(tmp_path / "warm") == []


def test_a_finished_studys_spares_end_while_the_daemon_runs_on(tmp_path: Path,
                                                                start_daemon) -> None:
    script = tmp_path / "scripts" / "plan.py"
    script.parent.mkdir()
    script.write_text(TRIAL)
    folder = tmp_path / "study"
    folder.mkdir()
    write_study(folder, "plan", study_file(script, trials=2))  # "ok", then "stop"
    daemon = start_daemon(folder, "--spares", "ignore-load", "--log-level", "debug")
    db = folder / ".hpod" / "hpod.db"

    def complete() -> bool:
        reader = open_reader(db)
        if reader is None:
            return False
        with reader:
            study = reader.find_study("plan")
            return study is not None and study.state.value == "complete"

    wait_until(complete, what="the study to complete")
    _trials, _files, notes = outcome(folder, "plan")
    assert notes[1]["preloaded"]
    # Two spares were started: the one trial #1 ran in, and the one behind it.
    def spares_started() -> list[int]:
        pids = re.findall(r"spare (\d+) for slot 'plan' imports", daemon.log())
        return [int(pid) for pid in pids] if len(pids) >= 2 else []

    started = wait_until(spares_started, what="the daemon to log both spares")
    assert len(started) == 2 and notes[1]["pid"] == started[0]
    wait_until(lambda: not alive(started[1]), what="the spare behind the last trial to end")
    assert daemon.process.poll() is None, "the daemon itself goes on"
    assert spare_processes(folder) == []
    assert daemon.terminate() == 0, daemon.log()
    assert processes_in(folder) == []


def gated_trial(gates: Path) -> str:
    """A trial that notes how it started, then waits until the test opens its gate."""
    return f'''
import sys
preloaded = {PRELOADED!r} in sys.modules  # before any import of the script's own
import json, os, time
from pathlib import Path
import hpod.trial as trial

number, attempt = trial.trial_number(), int(os.environ["HPOD_ATTEMPT"])
notes = {{"preloaded": preloaded, "pid": os.getpid()}}
(trial.trial_dir() / f"warm-{{attempt}}.json").write_text(json.dumps(notes))
gate = Path({str(gates)!r}) / f"{{number}}-{{attempt}}"
while not gate.exists():
    time.sleep(0.01)
if (number, attempt) == (1, 0):
    sys.exit(3)  # a crash: retried
for step in range(1, 5):  # each trial better than the last: ASHA stops none
    trial.report(step, loss=0.5 - 0.1 * number)
'''


def test_spares_end_once_the_budget_is_spent_while_trials_still_run(tmp_path: Path,
                                                                     start_daemon) -> None:
    """Trial #0, #1 (the last of the budget, warm), then #1's retry (cold): each waits at a
    gate the test opens, so what is checked meanwhile happens while a trial runs."""
    script = tmp_path / "scripts" / "gated.py"
    script.parent.mkdir()
    gates = tmp_path / "gates"
    gates.mkdir()
    script.write_text(gated_trial(gates))
    folder = tmp_path / "study"
    folder.mkdir()
    write_study(folder, "gated", study_file(script, trials=2,
                                            extra="retries = 1\nretry_delay = 0"))
    daemon = start_daemon(folder, "--spares", "ignore-load", "--log-level", "debug")
    db = folder / ".hpod" / "hpod.db"
    root = folder / ".hpod" / "trials" / "gated"

    def note(number: int, attempt: int) -> dict | None:
        path = root / f"{number:05d}" / f"warm-{attempt}.json"
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):  # not yet, or half written
            return None

    def study() -> tuple[str | None, list]:
        """The study's state and its trials, as the store has them now."""
        reader = open_reader(db)
        if reader is None:
            return None, []
        with reader:
            record = reader.find_study("gated")
            if record is None:
                return None, []
            return record.state.value, reader.list_trials(record.id)

    def started_spares(count: int) -> list[int]:
        pids = [int(p) for p in re.findall(r"spare (\d+) for slot 'gated' imports",
                                           daemon.log())]
        return pids if len(pids) >= count else []

    def retired(count: int) -> bool:
        """`count` spares were started, every one since the first is gone, none waits."""
        pids = started_spares(count)
        return bool(pids) and not any(alive(pid) for pid in pids[1:]) \
            and not spare_processes(folder)

    # One trial of two created: the spare behind it is kept for the next.
    wait_until(lambda: note(0, 0), what="trial #0 to start")
    first = wait_until(lambda: spare_processes(folder), what="a spare behind trial #0")
    (gates / "0-0").touch()
    # Trial #1 spends the budget, and still runs in that spare; the one behind it goes.
    last = wait_until(lambda: note(1, 0), what="trial #1 to start")
    assert last["preloaded"] and [last["pid"]] == first
    wait_until(lambda: retired(2), what="the spare behind the last trial to end")
    assert started_spares(2)[0] == last["pid"]
    assert [t.state.value for t in study()[1]] == ["complete", "running"]
    assert alive(last["pid"])
    # Its crash is retried: a launch after the retire, cold, and nothing waits behind it.
    (gates / "1-0").touch()
    retry = wait_until(lambda: note(1, 1), what="trial #1's retry to start")
    assert not retry["preloaded"], "no spare is left for a retry"
    wait_until(lambda: retired(3), what="the spare behind the retry to end")
    running = study()[1][1]
    assert running.state.value == "running" and running.attempt == 1
    assert alive(retry["pid"])
    (gates / "1-1").touch()
    wait_until(lambda: study()[0] == "complete", what="the study to complete")
    assert [(t.state.value, t.attempt) for t in study()[1]] == [("complete", 0),
                                                                ("complete", 1)]
    assert "Traceback" not in daemon.log()
    assert daemon.terminate() == 0, daemon.log()
    assert processes_in(folder) == []


def test_a_kill_9_of_the_daemon_leaves_no_spare_or_warm_trial(tmp_path: Path,
                                                              start_daemon) -> None:
    script = tmp_path / "scripts" / "hang.py"
    script.parent.mkdir()
    # The first trial is cold and quick; the second runs warm and never ends.
    script.write_text(f"import sys, time\nimport hpod.trial as trial\n"
                      f"trial.report(1, loss=1.0, warm=float({PRELOADED!r} in sys.modules))\n"
                      f"if trial.trial_number() == 1:\n    time.sleep(3600)\n")
    folder = tmp_path / "study"
    folder.mkdir()
    # Three: trial #2 is never created, so the budget is not spent and the spare stays.
    write_study(folder, "hang", study_file(script, trials=3))
    daemon = start_daemon(folder, "--spares", "ignore-load")
    db = folder / ".hpod" / "hpod.db"

    def warm_trial_running() -> int | None:
        reader = open_reader(db)
        if reader is None:
            return None
        with reader:
            study = reader.find_study("hang")
            if study is None:
                return None
            trials = reader.list_trials(study.id)
            if len(trials) < 2 or trials[1].state.value != "running":
                return None
            reports = {p.name: p.value for _id, p in reader.metrics(trials[1].id)}
            return trials[1].id if reports.get("warm") == 1.0 else None

    wait_until(warm_trial_running, what="the second trial to report from a spare")
    # The spare behind it is started at once (hpod's one trial leaves a core free).
    spares = wait_until(lambda: spare_processes(folder), what="a spare behind the trial")
    survivors = processes_in(folder)
    assert set(spares) < set(survivors), "the warm trial works in the folder too"
    daemon.process.send_signal(signal.SIGKILL)
    daemon.process.wait(timeout=30)
    wait_until(lambda: not any(alive(pid) for pid in survivors),
               what="the warm trial and the spare to die with the daemon")


def test_a_stop_does_not_wait_for_a_spare_stuck_in_its_imports(tmp_path: Path,
                                                               start_daemon) -> None:
    # A preload module that hangs: the next trial's launch waited for the spare, and SIGTERM
    # (twice) could not stop the daemon until kill -9.
    (tmp_path / "hangs.py").write_text("import time\ntime.sleep(3600)\n")
    (tmp_path / "train.py").write_text(
        "import hpod.trial as trial\np = trial.params()\ntrial.report(1, loss=p['x'])\n")
    write_study(tmp_path, "stuck", """
command = ["python", "train.py"]
objective = { metric = "loss", direction = "minimize" }
budget = { trials = 4 }
[trial]
preload = ["hangs"]
[space]
x = { type = "float", low = 0.0, high = 1.0 }
""")
    daemon = start_daemon(tmp_path, "--spares", "ignore-load", "--slots", "1")
    wait_until(lambda: "waits for its spare" in daemon.log() or
               ((study_status(tmp_path, "stuck") or {}).get("trials", {}).get("complete") == 1
                and study_status(tmp_path, "stuck")["trials"]["running"] == 1),
               what="a launch waiting for the stuck spare")
    daemon.process.send_signal(signal.SIGTERM)
    # Within the spare's wait (30 s), not its import's (for ever) nor the start limit (600 s).
    assert daemon.wait(timeout=120) == 0, daemon.log()
    rows = json.loads(hpod_cli("trials", tmp_path, "stuck", "--format", "json").stdout)
    assert [row["state"] for row in rows] == ["complete", "interrupted"], rows
    assert "as it was starting" in rows[1]["reason"]
