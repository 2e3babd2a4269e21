"""The Ray executor through a real daemon and a real local Ray instance: the same study gives
the same shape of results as on the local executor; a killed Ray worker requeues its trial;
stop and timeout reach the trial on its node; its output arrives in the trial folder here."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from hpod.store import StoreReader
from hpod.store.records import TrialRecord

from helpers import FIXTURE_TRIALS, alive, hpod_cli, study_status, wait_until, write_study

pytestmark = pytest.mark.slow


def _asha(executor: str) -> str:
    return f"""
command = ["python", "{FIXTURE_TRIALS / 'quadratic.py'}"]
objective = {{ metric = "loss", direction = "minimize" }}
budget = {{ trials = 9 }}
parallel = 2
seed = 3
{executor}
[scheduler]
kind = "asha"
min_resource = 1
max_resource = 9
reduction_factor = 3
[space]
x = {{ type = "float", low = 0.0, high = 1.0 }}
steps = 9
"""


def _talkative(name: str, *, trials: int, parallel: int, steps: int, sleep: float,
               extra: str = "") -> str:
    return f"""
name = "{name}"
command = ["python", "{FIXTURE_TRIALS / 'talkative.py'}"]
objective = {{ metric = "loss", direction = "minimize" }}
budget = {{ trials = {trials} }}
parallel = {parallel}
{extra}
[space]
x = {{ type = "float", low = 0.0, high = 1.0 }}
steps = {steps}
sleep = {sleep}
"""


def _trials(folder: Path, study: str) -> list[TrialRecord]:
    with StoreReader(folder / ".hpod" / "hpod.db") as reader:
        found = reader.find_study(study)
        return [] if found is None else reader.list_trials(found.id)


def _shape(folder: Path, study: str) -> dict[str, Any]:
    """What a study's results look like, whatever the executor: rows, states, stored steps."""
    rows = json.loads(hpod_cli("trials", folder, study, "--format", "json").stdout)
    with StoreReader(folder / ".hpod" / "hpod.db") as reader:
        found = reader.find_study(study)
        steps = {trial.number: [p.step for _id, p in reader.metrics(trial.id)]
                 for trial in reader.list_trials(found.id)}
    for row in rows:
        # Every step up to the last one is stored, once: nothing lost on the way.
        assert steps[row["trial"]] == list(range(1, row["last_step"] + 1)), row
        assert row["state"] in ("complete", "stopped"), row
        assert row["value"] is not None
        assert row["last_step"] in (1, 3, 9), row  # ASHA's rungs, or the end
    return {"columns": sorted(rows[0]), "trials": len(rows),
            "states": {row["state"] for row in rows},
            "complete_at_9": all(r["last_step"] == 9 for r in rows if r["state"] == "complete")}


def test_asha_study_on_ray_has_the_shape_of_a_local_run(tmp_path: Path, start_daemon,
                                                        ray_address: str) -> None:
    results = {}
    for executor, table in (("local", ""), ("ray", f'executor = {{ kind = "ray", address = '
                                                  f'"{ray_address}" }}')):
        folder = tmp_path / executor
        folder.mkdir()
        write_study(folder, "asha", _asha(table))
        daemon = start_daemon(folder, "--exit-when-idle")
        assert daemon.wait() == 0, daemon.log()
        assert study_status(folder, "asha")["state"] == "complete", daemon.log()
        results[executor] = _shape(folder, "asha")
    assert results["ray"] == results["local"]
    assert results["ray"]["states"] == {"complete", "stopped"}
    placements = {trial.placement for trial in _trials(tmp_path / "ray", "asha")}
    assert all(p.startswith("ray:") for p in placements), placements


def test_killed_ray_worker_requeues_its_trial(tmp_path: Path, start_daemon,
                                              ray_address: str) -> None:
    write_study(tmp_path, "lost", _talkative("lost", trials=1, parallel=1, steps=12, sleep=0.2))
    daemon = start_daemon(tmp_path, "--exit-when-idle", "--executor", "ray", "--ray-address",
                          ray_address)
    trial_dir = tmp_path / ".hpod" / "trials" / "lost" / "00000"
    pid_file = trial_dir / "pid"
    wait_until(lambda: pid_file.exists() and _trials(tmp_path, "lost")[0].last_step,
               what="the trial to report on its Ray worker")
    trial_pid = int(pid_file.read_text())
    pid_file.unlink()
    # The trial's parent is the Ray worker process that hosts its actor.
    worker = _parent(trial_pid)
    os.kill(worker, signal.SIGKILL)
    wait_until(lambda: not alive(trial_pid), what="the trial to die with its worker")
    assert daemon.wait() == 0, daemon.log()
    [trial] = _trials(tmp_path, "lost")
    assert trial.state.value == "complete", trial
    assert trial.attempt == 1  # run again, not a new trial and not a failure
    assert trial.last_step == 12
    events = hpod_cli("events", tmp_path).stdout
    assert "was interrupted" in events and "it will run again" in events
    err = (trial_dir / "stderr.log").read_text()
    assert "attempt 0" in err and "attempt 1" in err  # both runs' output, appended


def test_stop_and_timeout_reach_the_trial_on_its_node(tmp_path: Path, start_daemon,
                                                      ray_address: str) -> None:
    endless = {"trials": 1, "parallel": 1, "steps": 100_000, "sleep": 0.05}
    write_study(tmp_path, "ctl", _talkative("ctl", **endless))
    # The timeout counts from the launch: the trial must start on a Ray worker (which may have
    # to be started first) and note its pid well before it.
    write_study(tmp_path, "slow", _talkative("slow", **endless,
                                             extra="[trial]\ntimeout = 10\ngrace = 1"))
    daemon = start_daemon(tmp_path, "--exit-when-idle", "--executor", "ray", "--ray-address",
                          ray_address)
    folders = [tmp_path / ".hpod" / "trials" / name / "00000" for name in ("ctl", "slow")]
    wait_until(lambda: (folders[0] / "pid").exists() and _trials(tmp_path, "ctl")[0].last_step,
               what="the trial to report")
    hpod_cli("stop", tmp_path, "ctl", "--trial", "0")
    assert daemon.wait() == 1, daemon.log()  # both studies end with no complete trial
    [stopped], [timed_out] = _trials(tmp_path, "ctl"), _trials(tmp_path, "slow")
    assert stopped.state.value == "stopped" and stopped.reason == "stopped by the user"
    assert timed_out.state.value == "failed", timed_out
    assert timed_out.reason.startswith("timed out after 10 s"), timed_out
    for folder in folders:
        assert not alive(int((folder / "pid").read_text()))
        # Written on the Ray worker, relayed to the trial folder on the daemon's machine.
        assert "talkative starts with x=" in (folder / "stdout.log").read_text()
        assert "talkative complains on stderr" in (folder / "stderr.log").read_text()


def _parent(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def test_an_unreachable_ray_address_fails_its_study_at_once_and_a_fixed_file_runs(
        tmp_path: Path, start_daemon, ray_address: str) -> None:
    # ray.init retried a dead address for ever: the study sat at "running 0/N" with no error,
    # and a stopped daemon could not exit. Then even the corrected file was refused ("this
    # daemon uses the one at <bad>") until a restart.
    import socket

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        dead = f"127.0.0.1:{probe.getsockname()[1]}"
    study = _talkative("far", trials=2, parallel=1, steps=2, sleep=0.0,
                       extra=f'[executor]\nkind = "ray"\naddress = "{dead}"')
    write_study(tmp_path, "far", study)
    write_study(tmp_path, "near", _talkative("near", trials=2, parallel=1, steps=2, sleep=0.0))
    daemon = start_daemon(tmp_path)
    wait_until(lambda: (study_status(tmp_path, "far") or {}).get("state") == "failed",
               timeout=120, what="the study on the dead address to fail")
    assert "nothing answers at " + dead in study_status(tmp_path, "far")["error"]
    wait_until(lambda: study_status(tmp_path, "near")["state"] == "complete",
               what="the local study to go on")
    write_study(tmp_path, "far", study.replace(dead, ray_address))
    wait_until(lambda: study_status(tmp_path, "far")["state"] == "complete", timeout=180,
               what="the corrected study to run on the cluster")
    assert daemon.terminate() == 0, daemon.log()
