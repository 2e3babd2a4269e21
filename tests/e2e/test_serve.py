"""The daemon end to end: a real `hpod serve` process, real trial subprocesses, a real SQLite
file, observed only through the CLI a user would run."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest

from hpod.store import StoreReader

from helpers import (
    FIXTURE_TRIALS,
    alive,
    hpod_cli,
    quadratic_study,
    slow_to_stop_study,
    status_json,
    study_status,
    wait_until,
    write_study,
)

pytestmark = pytest.mark.slow


def _values(folder: Path, study: str) -> list[dict]:
    return json.loads(hpod_cli("trials", folder, study, "--format", "json").stdout)


def test_random_study_of_30_trials_runs_to_completion(tmp_path: Path, start_daemon) -> None:
    write_study(tmp_path, "quad", quadratic_study(trials=30, parallel=2))
    daemon = start_daemon(tmp_path, "--exit-when-idle")
    assert daemon.wait() == 0, daemon.log()

    doc = status_json(tmp_path)
    (study,) = doc["studies"]
    assert study["name"] == "quad"
    assert study["state"] == "complete"
    assert study["error"] is None
    assert study["trials"] == {
        "queued": 0, "running": 0, "complete": 30, "stopped": 0, "failed": 0,
        "paused": 0, "interrupted": 0,
    }
    rows = _values(tmp_path, "quad")
    assert sorted(row["trial"] for row in rows) == list(range(30))
    best_value = min(row["value"] for row in rows)
    best = json.loads(hpod_cli("best", tmp_path, "quad", "--json").stdout)
    assert best["value"] == best_value
    # `hpod best` adds where the trial's files are and how to run it again.
    assert set(best) == {"value", "params", "trial", "folder", "checkpoint", "rerun"}
    assert study["best"] == {key: best[key] for key in ("value", "params", "trial")}
    # Each trial got its own folder with its logs.
    assert (tmp_path / ".hpod" / "trials" / "quad" / "00000" / "stdout.log").exists()


def test_a_study_dropped_into_a_running_daemon_starts(tmp_path: Path, start_daemon) -> None:
    daemon = start_daemon(tmp_path)
    wait_until(lambda: (tmp_path / ".hpod" / "hpod.db").exists(), what="the database")
    wait_until(lambda: "watching" in daemon.log(), what="the watcher to start")
    write_study(tmp_path, "late", quadratic_study(trials=4))
    wait_until(lambda: (study_status(tmp_path, "late") or {}).get("state") == "complete",
               what="the dropped study to complete")
    assert daemon.terminate() == 0


def test_broken_study_file_is_recorded_and_others_keep_running(tmp_path: Path,
                                                               start_daemon) -> None:
    write_study(tmp_path, "good", quadratic_study(trials=4))
    (tmp_path / "bad.toml").write_text('command = ["python", "x.py"]\nparalel = 2\n')
    daemon = start_daemon(tmp_path, "--exit-when-idle")
    # The exit code tells a script that one study file did not run; the log names it.
    assert daemon.wait() == 1, daemon.log()
    assert "study bad (bad.toml) is invalid" in daemon.log()
    good = study_status(tmp_path, "good")
    bad = study_status(tmp_path, "bad")
    assert good["state"] == "complete" and good["trials"]["complete"] == 4
    assert bad["state"] == "invalid"
    assert "bad.toml" in bad["error"] and "paralel" in bad["error"]
    assert "parallel" in bad["error"]  # the did-you-mean
    # `hpod check` prints exactly what the daemon recorded.
    check = hpod_cli("check", tmp_path / "bad.toml", check=False)
    assert check.returncode == 1
    assert check.stdout.strip() == f"error: {bad['error']}"
    events = hpod_cli("events", tmp_path).stdout
    assert "paralel" in events
    # A broken link named like a study file is an invalid file too, for the exit code.
    (tmp_path / "bad.toml").unlink()
    (tmp_path / "bad.toml").symlink_to(tmp_path / "nowhere.toml")
    again = start_daemon(tmp_path, "--exit-when-idle")
    assert again.wait() == 1, again.log()
    assert "study bad (bad.toml) is invalid" in again.log()


def test_files_with_no_study_in_the_watched_folder_are_left_alone(tmp_path: Path,
                                                                  start_daemon) -> None:
    # A trial that writes its outputs where it runs (the study file's folder, by default), and
    # a project file beside the studies: neither is an invalid study.
    code = tmp_path / "code"
    code.mkdir()
    (code / "train.py").write_text(
        "import json\nimport hpod.trial as trial\n"
        "x = trial.params()['x']\n"
        "json.dump({'loss': x, 'epochs': 3}, open('metrics.json', 'w'))\n"
        "json.dump([x, x / 2], open('losses.json', 'w'))\n"
        "trial.report(1, loss=x)\n")
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "mine"\n')
    write_study(tmp_path, "writes", quadratic_study(trials=3).replace(
        str(FIXTURE_TRIALS / "quadratic.py"), str(code / "train.py")))
    daemon = start_daemon(tmp_path)
    wait_until(lambda: (study_status(tmp_path, "writes") or {}).get("state") == "complete",
               what="the study to complete")
    wait_until(lambda: all(f"{name} is ignored" in hpod_cli("events", tmp_path).stdout
                           for name in ("metrics.json", "losses.json")),
               what="the daemon to see what the trials wrote")
    assert daemon.terminate() == 0, daemon.log()
    assert [s["name"] for s in status_json(tmp_path)["studies"]] == ["writes"]
    events = hpod_cli("events", tmp_path).stdout
    for name in ("metrics.json", "losses.json", "pyproject.toml"):
        assert events.count(f"{name} is ignored: not a study file") == 1, events
    # `hpod check` skips them in a folder, and refuses one named on purpose.
    folder = hpod_cli("check", tmp_path)
    assert "skipped: " in folder.stdout and "ok: " in folder.stdout
    named = hpod_cli("check", tmp_path / "metrics.json", check=False)
    assert named.returncode == 1 and "not a study file" in named.stdout


def test_a_broken_study_rewritten_without_its_keys_stays_reported(tmp_path: Path,
                                                                   start_daemon) -> None:
    # Halfway through a rewrite, a file that was a (broken) study holds none of a study's keys:
    # the study it was is still said to be broken, not quietly dropped.
    (tmp_path / "draft.toml").write_text('command = ["python", "x.py"]\nparalel = 2\n')
    daemon = start_daemon(tmp_path)
    wait_until(lambda: "paralel" in (study_status(tmp_path, "draft") or {}).get("error", ""),
               what="the broken draft recorded")
    (tmp_path / "draft.toml").write_text('title = "draft"\n')
    wait_until(lambda: "not a study file" in study_status(tmp_path, "draft")["error"],
               what="the emptied draft reported")
    assert study_status(tmp_path, "draft")["state"] == "invalid", daemon.log()


def test_shell_script_trial(tmp_path: Path, start_daemon) -> None:
    script = tmp_path / "trial.sh"
    script.write_text(
        "#!/bin/sh\n"
        "x=$(printf '%s' \"$HPOD_PARAMS\" | sed 's/.*\"x\": *\\([-0-9.e]*\\).*/\\1/')\n"
        "for step in 1 2 3; do\n"
        "  loss=$(awk -v x=\"$x\" -v s=\"$step\" 'BEGIN { print (x-0.3)*(x-0.3) + 1/s }')\n"
        "  printf '{\"step\": %s, \"loss\": %s}\\n' \"$step\" \"$loss\" >&\"$HPOD_REPORT_FD\"\n"
        "done\n"
    )
    script.chmod(0o755)
    write_study(tmp_path, "sh", """
command = ["./trial.sh"]
objective = { metric = "loss", direction = "minimize" }
budget = { trials = 6 }
parallel = 2
[space]
x = { type = "float", low = 0.0, high = 1.0 }
""")
    daemon = start_daemon(tmp_path, "--exit-when-idle")
    assert daemon.wait() == 0, daemon.log()
    study = study_status(tmp_path, "sh")
    assert study["trials"]["complete"] == 6, hpod_cli("trials", tmp_path, "sh").stdout
    rows = _values(tmp_path, "sh")
    for row in rows:
        assert row["value"] == pytest.approx((row["params"]["x"] - 0.3) ** 2 + 1 / 3, abs=1e-5)
    assert study["best"]["value"] == min(row["value"] for row in rows)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_interrupts_trials_and_a_restart_finishes_them(tmp_path: Path, start_daemon,
                                                               signum: int) -> None:
    """SIGTERM (systemd, kill) or SIGHUP (the terminal of `hpod serve DIR &` closed)."""
    write_study(tmp_path, "slow", quadratic_study(
        trials=4, parallel=2, extra_space="steps = 1000\nsleep = 0.05"))
    daemon = start_daemon(tmp_path)
    # A trial is "running" in the store before its process has started and written its pid.
    pids = wait_until(lambda: (study_status(tmp_path, "slow") or {}).get("trials", {})
                      .get("running") == 2 and len(_trial_pids(tmp_path)) == 2
                      and _trial_pids(tmp_path), what="two running trials with their pids")
    daemon.process.send_signal(signum)
    assert daemon.wait() == 0, daemon.log()
    rows = _values(tmp_path, "slow")
    assert sorted(row["state"] for row in rows) == ["interrupted", "interrupted"]
    assert all("shut down" in row["reason"] for row in rows)
    events = hpod_cli("events", tmp_path).stdout  # the night's record says it, not only the log
    for row in rows:
        assert f"trial slow#{row['trial']} interrupted" in events
    assert events.count("runs again when the daemon next starts") == 2
    for pid in pids:
        assert not alive(pid), f"trial process {pid} outlived the daemon"

    # The restart requeues the interrupted trials with the same params and finishes the study.
    before = {row["trial"]: row["params"] for row in rows}
    restarted = start_daemon(tmp_path)
    wait_until(lambda: all(row["state"] in ("running", "queued", "complete")
                           for row in _values(tmp_path, "slow")) and
               any(row["attempt"] >= 1 for row in _values(tmp_path, "slow")),
               what="interrupted trials to be requeued")
    after = {row["trial"]: row["params"] for row in _values(tmp_path, "slow")}
    for number, params in before.items():
        assert after[number] == params
    assert restarted.terminate() == 0


def test_kill_9_of_the_daemon_takes_the_trials_with_it(tmp_path: Path, start_daemon) -> None:
    write_study(tmp_path, "slow", quadratic_study(
        trials=2, parallel=2, extra_space="steps = 1000\nsleep = 0.05"))
    daemon = start_daemon(tmp_path)
    pids = wait_until(lambda: (study_status(tmp_path, "slow") or {}).get("trials", {})
                      .get("running") == 2 and len(_trial_pids(tmp_path)) == 2
                      and _trial_pids(tmp_path), what="two running trials with their pids")
    assert status_json(tmp_path)["daemon"] == {"pid": daemon.process.pid}
    daemon.process.kill()
    daemon.wait()
    wait_until(lambda: not any(alive(pid) for pid in pids), what="trials to die with the daemon")
    # The store still says running; `hpod status` says that nothing runs.
    assert status_json(tmp_path)["daemon"] is None
    assert hpod_cli("status", tmp_path).stdout.startswith("no daemon is serving this database")
    # The store is intact and a new daemon marks them interrupted, then reruns them.
    restarted = start_daemon(tmp_path)
    wait_until(lambda: "was running when the daemon stopped" in hpod_cli("events", tmp_path).stdout,
               what="the interrupted trials to be reported")
    assert restarted.terminate() == 0


def test_second_daemon_on_the_same_database_refuses(tmp_path: Path, start_daemon) -> None:
    first = start_daemon(tmp_path)
    wait_until(lambda: "watching" in first.log(), what="the first daemon")
    second = start_daemon(tmp_path)
    assert second.wait() == 2
    assert "already serving" in second.log()
    assert first.process.poll() is None
    assert first.terminate() == 0


def test_removing_the_file_stops_the_study_and_keeps_its_data(tmp_path: Path,
                                                              start_daemon) -> None:
    path = write_study(tmp_path, "gone", quadratic_study(
        trials=50, parallel=2, extra_space="steps = 1000\nsleep = 0.05"))
    daemon = start_daemon(tmp_path)
    wait_until(lambda: (study_status(tmp_path, "gone") or {}).get("trials", {}).get("running") == 2,
               what="two running trials")
    path.unlink()
    wait_until(lambda: study_status(tmp_path, "gone")["state"] == "stopped",
               what="the study to stop")
    rows = _values(tmp_path, "gone")
    assert rows and all(row["state"] == "stopped" for row in rows)
    assert all("removed" in row["reason"] for row in rows)
    assert daemon.terminate() == 0


def test_live_edit_of_budget_applies_and_space_change_is_refused(tmp_path: Path,
                                                                 start_daemon) -> None:
    body = quadratic_study(trials=2, parallel=1)
    write_study(tmp_path, "edit", body)
    daemon = start_daemon(tmp_path)
    wait_until(lambda: (study_status(tmp_path, "edit") or {}).get("state") == "complete",
               what="the first budget")
    write_study(tmp_path, "edit", quadratic_study(trials=5, parallel=1))
    wait_until(lambda: study_status(tmp_path, "edit")["trials"]["complete"] == 5,
               what="the raised budget to run")
    write_study(tmp_path, "edit", quadratic_study(trials=5, parallel=1,
                                                  extra_space='y = { type = "int", low = 1, high = 3 }'))
    wait_until(lambda: "would mix trials" in (study_status(tmp_path, "edit")["error"] or ""),
               what="the refusal to be recorded")
    assert daemon.terminate() == 0


@pytest.mark.parametrize("scheduler", ["fifo", "median"])
def test_a_trial_stopped_by_the_user_is_told_so_on_its_control_pipe(
        tmp_path: Path, start_daemon, scheduler: str) -> None:
    # The docs promise an unsolicited "stop" when a user stops a trial; only signals were sent,
    # so a trainer checking should_stop() (and ignoring SIGTERM) ran on until SIGKILL.
    write_study(tmp_path, "polite", f"""
command = ["python", "{FIXTURE_TRIALS / 'polite.py'}"]
objective = {{ metric = "loss", direction = "minimize" }}
budget = {{ trials = 1 }}
scheduler = "{scheduler}"
[trial]
grace = 600
[space]
x = {{ type = "float", low = 0.0, high = 1.0 }}
""")
    daemon = start_daemon(tmp_path)
    wait_until(lambda: ((study_status(tmp_path, "polite") or {}).get("trials", {})
                        .get("running") == 1 and _values(tmp_path, "polite")[0]["last_step"]
                        is not None), what="a running trial that has reported")
    hpod_cli("stop", tmp_path, "polite", "--trial", "0")
    wait_until(lambda: _values(tmp_path, "polite")[0]["state"] == "stopped",
               timeout=120, what="the trial to end on the decision, well within its grace")
    folder = tmp_path / ".hpod" / "trials" / "polite" / "00000"
    assert (folder / "ended-by-decision").exists()
    assert _values(tmp_path, "polite")[0]["reason"] == "stopped by the user"
    assert daemon.terminate() == 0


def test_a_shell_trial_waiting_for_answers_gets_one_for_a_line_that_is_not_json(
        tmp_path: Path, start_daemon) -> None:
    # A line the daemon cannot read got no answer: a shell trial reading one per report (the
    # documented pattern) hung until its timeout. printf's "-nan" is read as NaN.
    write_study(tmp_path, "sh", f"""
command = ["sh", "{FIXTURE_TRIALS / 'shell_garbage.sh'}"]
objective = {{ metric = "loss", direction = "minimize" }}
budget = {{ trials = 1 }}
scheduler = "median"
[trial]
timeout = 600
[space]
x = {{ type = "float", low = 0.0, high = 1.0 }}
""")
    assert start_daemon(tmp_path, "--exit-when-idle").wait() == 0
    (row,) = _values(tmp_path, "sh")
    assert (row["state"], row["value"], row["last_step"]) == ("complete", 0.25, 4), row
    answers = (tmp_path / ".hpod" / "trials" / "sh" / "00000" / "answers").read_text()
    assert [json.loads(line)["step"] for line in answers.splitlines()] == [1, 2, 3, 4]
    assert "0.5x" in hpod_cli("events", tmp_path).stdout  # the typo is still a warning


def test_commands_stop_a_trial_and_pause_resume_a_study(tmp_path: Path, start_daemon) -> None:
    write_study(tmp_path, "ctl", quadratic_study(
        trials=3, parallel=1, extra_space="steps = 1000\nsleep = 0.05"))
    daemon = start_daemon(tmp_path)
    wait_until(lambda: (study_status(tmp_path, "ctl") or {}).get("trials", {}).get("running") == 1,
               what="a running trial")
    paused = hpod_cli("pause", tmp_path, "ctl")
    assert "paused" in paused.stdout
    stopped = hpod_cli("stop", tmp_path, "ctl", "--trial", "0")
    assert "stopped" in stopped.stdout
    # The study is paused at once; trial 0 is recorded stopped only once its process has exited.
    wait_until(lambda: (status := study_status(tmp_path, "ctl"))["state"] == "paused"
               and status["trials"]["stopped"] == 1 and status["trials"]["running"] == 0,
               what="paused state with trial 0 stopped")
    row = _values(tmp_path, "ctl")[0]
    assert row["state"] == "stopped" and row["reason"] == "stopped by the user"
    assert study_status(tmp_path, "ctl")["trials"]["running"] == 0
    hpod_cli("resume", tmp_path, "ctl")
    wait_until(lambda: study_status(tmp_path, "ctl")["trials"]["running"] == 1,
               what="the resumed study to start a trial")
    stop_study = hpod_cli("stop", tmp_path, "ctl")
    assert "stopped" in stop_study.stdout
    wait_until(lambda: study_status(tmp_path, "ctl")["state"] == "stopped", what="stopped study")
    assert daemon.terminate() == 0


def test_resume_while_a_stopped_study_winds_down_runs_it_again(tmp_path: Path,
                                                               start_daemon) -> None:
    # `hpod resume` said "resumed" to a study whose last trial was still stopping, and the
    # study ended stopped all the same.
    gate = tmp_path / "gate"
    write_study(tmp_path, "s", slow_to_stop_study(gate, trials=5))
    daemon = start_daemon(tmp_path)
    wait_until(lambda: (study_status(tmp_path, "s") or {}).get("trials", {}).get("running") == 1,
               what="a running trial")
    assert "stopped" in hpod_cli("stop", tmp_path, "s").stdout
    resumed = hpod_cli("resume", tmp_path, "s").stdout
    assert "starts again once its running trials have ended" in resumed, resumed
    gate.touch()  # the stopping trial may end now
    wait_until(lambda: (status := study_status(tmp_path, "s"))["state"] == "running"
               and status["trials"]["stopped"] == 1 and status["trials"]["running"] == 1,
               what="the study running again, its first trial stopped")
    assert daemon.terminate() == 0, daemon.log()


def test_failing_trials_are_recorded_and_max_failures_stops_the_study(tmp_path: Path,
                                                                      start_daemon) -> None:
    write_study(tmp_path, "crashy", f"""
command = ["python", "{FIXTURE_TRIALS / 'crash.py'}"]
objective = {{ metric = "loss", direction = "minimize" }}
budget = {{ trials = 20 }}
max_failures = 3
[space]
x = {{ type = "float", low = 0.0, high = 1.0 }}
""")
    write_study(tmp_path, "fine", quadratic_study(trials=3))
    daemon = start_daemon(tmp_path, "--exit-when-idle")
    assert daemon.wait() == 1, daemon.log()
    assert "study crashy (crashy.toml) is failed" in daemon.log()
    assert "study fine" not in daemon.log().split("daemon stopped")[-1]
    crashy = study_status(tmp_path, "crashy")
    assert crashy["state"] == "failed"
    assert "3 trials in a row failed" in crashy["error"]
    rows = _values(tmp_path, "crashy")
    assert len(rows) == 3
    assert all(row["state"] == "failed" for row in rows)
    assert "exit code 1" in rows[0]["reason"] and "boom at step 2" in rows[0]["reason"]
    assert study_status(tmp_path, "fine")["state"] == "complete"


def test_hpod_run_runs_one_study_in_the_foreground(tmp_path: Path) -> None:
    path = write_study(tmp_path, "fg", quadratic_study(trials=5, parallel=2))
    result = hpod_cli("run", path, "--slots", "2")
    assert "fg [" in result.stderr and "5/5" in result.stderr
    assert "best loss" in result.stderr
    assert study_status(tmp_path, "fg")["trials"]["complete"] == 5


def test_hpod_best_says_where_the_best_trial_is_and_how_to_run_it_again(tmp_path: Path) -> None:
    code = tmp_path / "my code"  # a space, for the quoting
    code.mkdir()
    (code / "train.py").write_text(
        "import json, os\nimport hpod.trial as trial\n"
        "p = trial.params()\n"
        "print(json.dumps({'params': p, 'seed': trial.seed(), 'tag': os.environ['TAG']}))\n"
        "trial.report(1, loss=(p['x'] - 0.3) ** 2)\n")
    path = write_study(tmp_path, "again", quadratic_study(trials=4, parallel=1, extra=(
        'env = { TAG = "it\'s mine" }\nworkdir = "my code"')).replace(
        str(FIXTURE_TRIALS / "quadratic.py"), "train.py"))
    hpod_cli("run", path)
    best = json.loads(hpod_cli("best", tmp_path, "again", "--json").stdout)
    assert Path(best["folder"]).is_dir() and (Path(best["folder"]) / "stdout.log").exists()
    ran = subprocess.run(["bash", "-c", best["rerun"]], capture_output=True, text=True,
                         check=True, cwd="/")
    again = json.loads(ran.stdout)
    original = json.loads((Path(best["folder"]) / "stdout.log").read_text().splitlines()[-1])
    assert again == original and again["params"] == best["params"], (again, original)
    text = hpod_cli("best", tmp_path, "again").stdout
    assert f"files: {best['folder']}" in text and best["rerun"] in text


def test_a_study_that_ends_with_no_complete_trial_is_no_success(tmp_path: Path,
                                                                start_daemon) -> None:
    # Its trials never reported: the budget is spent and the study "complete", but a script
    # (a CI smoke run) must not read exit code 0 as success.
    body = """
command = ["python", "-c", "pass"]
objective = { metric = "loss", direction = "minimize" }
budget = { trials = 2 }
[space]
x = { type = "float", low = 0.0, high = 1.0 }
"""
    path = write_study(tmp_path, "empty", body)
    result = hpod_cli("run", path, "--plain", check=False)
    assert result.returncode == 1, result.stderr
    assert "no trial completed" in result.stderr
    served = start_daemon(tmp_path, "--exit-when-idle")
    assert served.wait() == 1
    assert "study empty (empty.toml) is complete with no trial complete" in served.log()


def test_a_relative_checkpoint_path_is_stored_against_the_trials_working_directory(
        tmp_path: Path) -> None:
    # Stored as written, it was handed back as HPOD_RESUME_FROM to a run that may start
    # elsewhere (a warm start, a Ray node).
    script = r"""import os
fd = int(os.environ["HPOD_REPORT_FD"])
os.write(fd, b'{"checkpoint": "ckpt/last.keras"}\n')
os.write(fd, b'{"step": 1, "loss": 0.5}\n')
"""
    path = write_study(tmp_path, "rel", f"""
command = ["python", "-c", {json.dumps(script)}]
objective = {{ metric = "loss", direction = "minimize" }}
budget = {{ trials = 1 }}
[space]
x = {{ type = "float", low = 0.0, high = 1.0 }}
""")
    hpod_cli("run", path, "--plain")
    with StoreReader(tmp_path / ".hpod" / "hpod.db") as reader:
        (trial,) = reader.list_trials(reader.find_study("rel").id)
    assert trial.checkpoint == str(tmp_path / "ckpt" / "last.keras")


def test_the_study_env_may_set_pythonunbuffered(tmp_path: Path) -> None:
    # hpod sets it so that trial logs are live; a study that sets it itself was overridden.
    script = ("import os, hpod.trial as t; "
              "(t.trial_dir() / 'env').write_text(os.environ['PYTHONUNBUFFERED']); "
              "t.report(1, loss=1.0)")
    path = write_study(tmp_path, "env", f"""
command = ["python", "-c", {json.dumps(script)}]
objective = {{ metric = "loss", direction = "minimize" }}
budget = {{ trials = 1 }}
env = {{ PYTHONUNBUFFERED = "" }}
[space]
x = {{ type = "float", low = 0.0, high = 1.0 }}
""")
    hpod_cli("run", path, "--plain")
    assert (tmp_path / ".hpod" / "trials" / "env" / "00000" / "env").read_text() == ""


def test_hpod_run_with_a_database_elsewhere_says_how_to_read_it(tmp_path: Path) -> None:
    path = write_study(tmp_path, "fg", quadratic_study(trials=2))
    db = tmp_path / "elsewhere" / "results.db"
    result = hpod_cli("run", path, "--db", db)
    hint = result.stderr.split("hpod status ", 1)[1].split(",")[0]
    assert hint == f"{tmp_path} --db {db}"
    status = hpod_cli("status", *hint.split(" "), "--json")  # the command as printed works
    assert json.loads(status.stdout)["studies"][0]["name"] == "fg"


def _trial_pids(folder: Path) -> list[int]:
    """The quadratic fixture writes its pid into its trial folder (empty while being written)."""
    return [int(text) for p in (folder / ".hpod" / "trials").rglob("pid")
            if (text := p.read_text().strip())]


def _flaky_study(extra: str = "") -> str:
    """Two trials at once, each crashing on its first attempt only, with one retry."""
    return f"""
command = ["python", "{FIXTURE_TRIALS / 'flaky.py'}"]
objective = {{ metric = "loss", direction = "minimize" }}
budget = {{ trials = 2 }}
parallel = 2
{extra}
[trial]
retries = 1
retry_delay = 0.2
[space]
x = {{ type = "float", low = 0.0, high = 1.0 }}
"""


def test_a_transient_failure_is_retried_after_a_delay(tmp_path: Path, start_daemon) -> None:
    write_study(tmp_path, "flaky", _flaky_study())
    daemon = start_daemon(tmp_path, "--exit-when-idle")
    assert daemon.wait() == 0, daemon.log()
    study = study_status(tmp_path, "flaky")
    assert study["state"] == "complete"
    rows = _values(tmp_path, "flaky")
    assert [(row["state"], row["attempt"]) for row in rows] == [("complete", 1), ("complete", 1)]
    assert "will be retried in 0.2 s" in hpod_cli("events", tmp_path).stdout


def test_failures_that_are_retried_do_not_count_toward_max_failures(tmp_path: Path,
                                                                     start_daemon) -> None:
    # Both first attempts crash, both retries succeed: the study failed after the second
    # crash (two failures in a row), where a restarted daemon, which sees only the trials'
    # final states, counted none. The retried attempt is no longer told to the suggester either.
    write_study(tmp_path, "flaky", _flaky_study("max_failures = 2"))
    daemon = start_daemon(tmp_path, "--exit-when-idle")
    assert daemon.wait() == 0, daemon.log()
    assert study_status(tmp_path, "flaky")["state"] == "complete"
    assert [row["state"] for row in _values(tmp_path, "flaky")] == ["complete", "complete"]


_STUBBORN = """
import os, pathlib, signal, sys, time
import hpod.trial as trial

here = pathlib.Path(sys.argv[1])
signal.signal(signal.SIGTERM, lambda *_: (here / "terminated").write_text("yes"))
(here / "pid").write_text(str(os.getpid()))
trial.report(0, loss=1.0)
while True:
    time.sleep(3600)
"""


def test_a_second_ctrl_c_ends_trials_that_ignore_the_first_at_once(tmp_path: Path,
                                                                    start_daemon) -> None:
    """The first Ctrl-C gives a trial its `grace` (an hour here) to exit after SIGTERM; the
    second kills it at once and the daemon exits, the trial requeued for the next start."""
    script = tmp_path / "stubborn.py"
    script.write_text(_STUBBORN)
    write_study(tmp_path, "stubborn", f"""
command = ["python", "{script}", "{tmp_path}"]
objective = {{ metric = "loss", direction = "minimize" }}
budget = {{ trials = 1 }}
[trial]
grace = 3600
[space]
x = {{ type = "float", low = 0.0, high = 1.0 }}
""")
    daemon = start_daemon(tmp_path)
    pid_file = tmp_path / "pid"
    pid = int(wait_until(lambda: pid_file.exists() and pid_file.read_text(),
                         what="the trial to start"))
    daemon.process.send_signal(signal.SIGINT)
    wait_until((tmp_path / "terminated").exists, what="the trial to get SIGTERM")
    assert daemon.process.poll() is None  # waiting out the trial's grace, as it should
    daemon.process.send_signal(signal.SIGINT)
    assert daemon.wait(timeout=120) == 0, daemon.log()
    assert not alive(pid)
    (trial,) = _values(tmp_path, "stubborn")
    assert trial["state"] == "interrupted", trial


def test_the_slot_a_trial_frees_goes_to_a_point_chosen_knowing_its_result(
        tmp_path: Path, start_daemon) -> None:
    """With more trials allowed than slots (parallel 3 on one slot), a trial that ends gives its
    slot back before its result is recorded. The point proposed for that slot is still chosen
    knowing the result: the study proposes exactly what the same GP study with parallel 1 does."""
    points = {}
    for parallel in (1, 3):
        folder = tmp_path / f"parallel{parallel}"
        folder.mkdir()
        write_study(folder, "gp", quadratic_study(
            trials=9, parallel=parallel, extra='suggester = { kind = "gp", n_startup = 3 }'))
        daemon = start_daemon(folder, "--exit-when-idle", "--slots", "1")
        assert daemon.wait() == 0, daemon.log()
        points[parallel] = [row["params"] for row in _values(folder, "gp")]
    assert len(points[1]) == 9
    assert points[3] == points[1]


@pytest.mark.parametrize("command", ["serve", "run"])
@pytest.mark.parametrize("slots", ["0", "-1", "two"])
def test_a_bad_slot_count_is_a_usage_error(tmp_path: Path, command: str, slots: str) -> None:
    target = tmp_path if command == "serve" else tmp_path / "study.toml"
    result = hpod_cli(command, target, "--slots", slots, check=False)
    assert result.returncode == 2, result.stderr
    assert "argument --slots" in result.stderr and "Traceback" not in result.stderr


def test_a_command_with_no_daemon_to_apply_it_says_so_and_the_next_daemon_applies_it(
        tmp_path: Path, start_daemon) -> None:
    write_study(tmp_path, "later", quadratic_study(
        trials=3, parallel=1, extra_space="steps = 1000\nsleep = 0.05"))
    daemon = start_daemon(tmp_path)
    wait_until(lambda: (study_status(tmp_path, "later") or {}).get("trials", {}).get("running"),
               what="a running trial")
    assert daemon.terminate() == 0
    asked = hpod_cli("pause", tmp_path, "later", check=False)
    assert asked.returncode == 1
    assert "no daemon is serving" in asked.stderr and "queued" in asked.stderr
    with StoreReader(tmp_path / ".hpod" / "hpod.db") as reader:
        assert [c.state.value for c in reader.list_commands()] == ["pending"]

    # Applied once the next daemon has read the study files, not refused before it has.
    restarted = start_daemon(tmp_path)
    wait_until(lambda: study_status(tmp_path, "later")["state"] == "paused",
               what="the queued pause to be applied")
    with StoreReader(tmp_path / ".hpod" / "hpod.db") as reader:
        assert [c.state.value for c in reader.list_commands()] == ["applied"]
    assert restarted.terminate() == 0


def test_check_takes_a_folder_and_gives_json_for_several_files(tmp_path: Path) -> None:
    write_study(tmp_path, "one", quadratic_study())
    write_study(tmp_path, "two", quadratic_study())
    (tmp_path / "bad.toml").write_text("command = [\n")
    (tmp_path / "notes.txt").write_text("not a study")
    # What the daemon would record as invalid, not skip: a broken link, a folder.
    (tmp_path / "gone.toml").symlink_to(tmp_path / "nowhere.toml")
    (tmp_path / "dir.yaml").mkdir()
    folder = hpod_cli("check", tmp_path, check=False)
    assert folder.returncode == 1
    assert folder.stdout.count("ok: ") == 2 and "bad.toml" in folder.stdout
    assert "gone.toml" in folder.stdout and "does not exist" in folder.stdout
    assert "dir.yaml" in folder.stdout and "is a folder" in folder.stdout
    assert "notes.txt" not in folder.stdout
    listed = hpod_cli("check", tmp_path / "one.toml", tmp_path / "two.toml", "--json")
    assert [study["name"] for study in json.loads(listed.stdout)] == ["one", "two"]
    single = hpod_cli("check", tmp_path / "one.toml", "--json")
    assert json.loads(single.stdout)["name"] == "one"
    empty = tmp_path / "empty"
    empty.mkdir()
    nothing = hpod_cli("check", empty, check=False)
    assert nothing.returncode == 1 and "no study files" in nothing.stderr


def test_check_reports_two_files_of_one_folder_that_name_the_same_study(tmp_path: Path) -> None:
    # Each file alone is valid, but a daemon on the folder refuses the second.
    write_study(tmp_path, "a", 'name = "same"\n' + quadratic_study())
    write_study(tmp_path, "b", 'name = "same"\n' + quadratic_study())
    clash = hpod_cli("check", tmp_path, check=False)
    assert clash.returncode == 1 and clash.stdout.count("ok: ") == 1, clash.stdout
    assert "b.toml: field `name`: the study name `same` is already used by a.toml" in clash.stdout
    # In two folders they go to two daemons, and two databases.
    other = tmp_path / "other"
    other.mkdir()
    (tmp_path / "b.toml").rename(other / "b.toml")
    assert hpod_cli("check", tmp_path / "a.toml", other / "b.toml").returncode == 0
    # The same file named twice is one file; a file the daemon records as invalid (it parses)
    # holds its stem, so a study naming that stem is refused, as the daemon does.
    assert hpod_cli("check", tmp_path / "a.toml", f"{tmp_path}/../{tmp_path.name}/a.toml",
                    check=False).returncode == 0
    write_study(other, "c", 'paralel = 2\n' + quadratic_study())
    write_study(other, "d", 'name = "c"\n' + quadratic_study())
    held = hpod_cli("check", other, check=False)
    assert "d.toml: field `name`: the study name `c` is already used by c.toml" in held.stdout
    # A link reads under its own name, as the daemon lists it: a.toml (a link to shared/z.toml)
    # comes before b.toml and keeps the name, whatever its target is called.
    linked = tmp_path / "linked"
    shared = tmp_path / "shared"
    linked.mkdir()
    shared.mkdir()
    write_study(shared, "z", 'name = "same"\n' + quadratic_study())
    (linked / "a.toml").symlink_to(shared / "z.toml")
    write_study(linked, "b", 'name = "same"\n' + quadratic_study())
    by_link = hpod_cli("check", linked, check=False)
    assert "b.toml: field `name`: the study name `same` is already used by a.toml" \
        in by_link.stdout, by_link.stdout


def test_two_databases_in_one_folder_keep_their_trials_apart(tmp_path: Path) -> None:
    # A daemon's start ends processes left in its trials folder; with one folder for every
    # database there, `hpod run b.toml --db runs/b.db` killed a.db's running trials.
    import os
    import subprocess
    import sys

    runs = tmp_path / "runs"
    first = write_study(tmp_path, "first", quadratic_study(trials=1))
    hpod_cli("run", first, "--plain", "--db", runs / "a.db")
    assert (runs / "a.db-trials" / "first" / "00000" / "stdout.log").exists()
    stand_in = subprocess.Popen(  # a process of a.db's trials, still running
        [sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True,
        env={**os.environ, "HPOD_TRIAL_DIR": str(runs / "a.db-trials" / "first" / "00000")})
    try:
        second = write_study(tmp_path, "second", quadratic_study(trials=1))
        hpod_cli("run", second, "--plain", "--db", runs / "b.db")
        assert (runs / "b.db-trials" / "second" / "00000").is_dir()
        assert stand_in.poll() is None, "b.db's daemon killed a process of a.db's trials"
    finally:
        stand_in.send_signal(signal.SIGKILL)
        stand_in.wait()


def test_cpus_per_trial_on_a_local_daemon_is_warned_about(tmp_path: Path, start_daemon) -> None:
    # Given without a kind (for the daemon's executor), it was silently ignored locally.
    write_study(tmp_path, "cpus", quadratic_study(trials=1).replace(
        "[space]", "[executor]\ncpus_per_trial = 2\n[space]"))
    assert start_daemon(tmp_path, "--exit-when-idle").wait() == 0
    assert "cpus_per_trial = 2 applies only on Ray" in hpod_cli("events", tmp_path).stdout
