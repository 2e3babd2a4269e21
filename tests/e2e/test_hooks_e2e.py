"""on_finish in a real daemon: the hook gets the study's summary as JSON when the study ends."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from helpers import hpod_cli, quadratic_study, write_study

pytestmark = pytest.mark.slow


def test_on_finish_gets_the_summary(tmp_path: Path, start_daemon) -> None:
    hook = tmp_path / "notify.py"
    hook.write_text("import sys, pathlib\n"
                    "pathlib.Path(sys.argv[1]).write_text(sys.stdin.read())\n")
    out = tmp_path / "summary.json"
    extra = f'on_finish = ["{sys.executable}", "{hook}", "{out}"]'
    write_study(tmp_path, "hooked", quadratic_study(trials=3, extra=extra))
    assert start_daemon(tmp_path, "--exit-when-idle").wait() == 0
    summary = json.loads(out.read_text())
    assert summary["name"] == "hooked" and summary["state"] == "complete"
    best = json.loads(hpod_cli("best", tmp_path, "hooked", "--json").stdout)
    assert summary["best"]["value"] == best["value"]
    assert "on_finish" in hpod_cli("events", tmp_path).stdout


def test_a_complete_study_is_not_announced_again_by_each_restart(tmp_path: Path,
                                                                  start_daemon) -> None:
    """A study left in the folder after it completed: a restarted daemon leaves it complete,
    with no second "complete" event and no second on_finish; raising its budget resumes it,
    and its new end is announced."""
    hook = tmp_path / "notify.py"
    calls = tmp_path / "calls.txt"
    hook.write_text("import sys\n"
                    f"open({str(calls)!r}, 'a').write(sys.stdin.read().replace(chr(10), ' ')"
                    " + chr(10))\n")
    extra = f'on_finish = ["{sys.executable}", "{hook}"]'
    write_study(tmp_path, "hooked", quadratic_study(trials=3, extra=extra))
    assert start_daemon(tmp_path, "--exit-when-idle").wait() == 0
    assert start_daemon(tmp_path, "--exit-when-idle").wait() == 0

    assert len(calls.read_text().splitlines()) == 1
    events = hpod_cli("events", tmp_path, "--limit", "1000").stdout
    assert events.count("study hooked complete") == 1, events
    status = json.loads(hpod_cli("status", tmp_path, "--json").stdout)
    assert [s["state"] for s in status["studies"]] == ["complete"]

    write_study(tmp_path, "hooked", quadratic_study(trials=5, extra=extra))
    assert start_daemon(tmp_path, "--exit-when-idle").wait() == 0
    summaries = [json.loads(line) for line in calls.read_text().splitlines()]
    assert [s["state"] for s in summaries] == ["complete", "complete"]
    assert summaries[-1]["counts"]["complete"] == 5


def test_a_stop_cuts_a_hanging_hook_short_instead_of_waiting_out_its_timeout(
        tmp_path: Path, start_daemon) -> None:
    # SIGTERM (even twice) waited for the hook's 60 s timeout; a service manager kills first.
    import signal

    from helpers import alive, wait_until

    hook = tmp_path / "hangs.py"
    hook.write_text("import os, sys, time, pathlib\n"
                    "pathlib.Path(sys.argv[1]).write_text(str(os.getpid()))\n"
                    "time.sleep(300)\n")
    started = tmp_path / "hook.pid"
    extra = f'on_finish = ["{sys.executable}", "{hook}", "{started}"]'
    write_study(tmp_path, "hooked", quadratic_study(trials=1, extra=extra))
    daemon = start_daemon(tmp_path)
    pid = wait_until(lambda: started.exists() and started.read_text() and
                     int(started.read_text()), what="the hook to run")
    daemon.process.send_signal(signal.SIGTERM)
    daemon.process.send_signal(signal.SIGTERM)  # the second: stop at once
    assert daemon.wait(timeout=30) == 0, daemon.log()
    assert "on_finish hook was cut short" in daemon.log()
    wait_until(lambda: not alive(pid), what="the hook's process to be killed with it")
