"""GPU utilisation and trials' peak GPU memory, recorded by a real daemon in a real store.

NVML is the one fake (tests/fake_nvml.py, installed as the `pynvml` module before the daemon
is built); the daemon, its trials (real process groups), the SQLite file and the CLI are real.
The daemon runs in this test's event loop, so the waits below yield to it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from hpod.config import DaemonConfig
from hpod.daemon import Daemon
from hpod.gpu_usage import IDLE_ROUNDS_PER_WRITE, RETENTION_S
from hpod.store import GpuSample, StoreReader, TrialState, open_store

from fake_nvml import FakeNvml, four_gpus
from helpers import FIXTURE_TRIALS, REPO, hpod_cli, open_reader, quadratic_study, write_study

INTERVAL = 0.05  # seconds between samples: the rounds come quickly, nothing waits for them


@pytest.fixture
def nvml(monkeypatch: pytest.MonkeyPatch) -> FakeNvml:
    fake = FakeNvml(four_gpus())
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    return fake


async def eventually(predicate: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
    """Yield to the daemon until `predicate()` is truthy; fail after `timeout` (a bound on a
    broken build, never reached by a passing one)."""
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(0.01)
    return result


@asynccontextmanager
async def serving(folder: Path) -> AsyncIterator[StoreReader]:
    """A daemon on `folder` in this loop, and a read-only reader of its database."""
    db = folder / ".hpod" / "hpod.db"
    config = DaemonConfig(db_path=db, folder=folder, slots=2, gpu_sample_interval=INTERVAL)
    daemon = Daemon(config)
    task = asyncio.create_task(daemon.run())
    try:
        reader = await eventually(lambda: open_reader(db) or task.done(), "the database")
        if task.done():
            task.result()  # the daemon's error, not a timeout
            pytest.fail("the daemon stopped before its database could be read")
        with reader:
            yield reader
    finally:
        daemon.request_shutdown()
        await asyncio.wait_for(task, 60)


def newest_time(reader: StoreReader) -> float | None:
    latest = reader.latest_gpu_samples()
    return latest[0].time if latest else None


async def rounds(reader: StoreReader, n: int) -> None:
    """Wait until `n` more sampling rounds are in the store."""
    for _ in range(n):
        before = newest_time(reader)
        await eventually(lambda: newest_time(reader) not in (None, before), "a sampling round")


def gpu_study(folder: Path) -> None:
    # fork_child.py forks a child into its process group, reports its pid, and runs until
    # stopped: a trial whose processes the fake NVML can name.
    write_study(folder, "gpu", f"""
command = ["python", "{FIXTURE_TRIALS / 'fork_child.py'}"]
objective = {{ metric = "child_pid", direction = "minimize" }}
budget = {{ trials = 1 }}
parallel = 1
[space]
x = {{ type = "float", low = 0.0, high = 1.0 }}
[resources]
gpus_per_trial = 1
""")


def the_trial(reader: StoreReader, study: str = "gpu"):  # -> TrialRecord | None
    found = reader.find_study(study)
    trials = reader.list_trials(found.id) if found is not None else []
    return trials[0] if trials else None


def child_pid(reader: StoreReader) -> int | None:
    trial = the_trial(reader)
    points = reader.metrics(trial.id) if trial is not None else []
    return int(points[0][1].value) if points else None


async def test_samples_and_a_trials_peak_gpu_memory_are_recorded_and_shown(
        tmp_path: Path, nvml: FakeNvml) -> None:
    gpu_study(tmp_path)
    async with serving(tmp_path) as reader:
        await rounds(reader, 1)
        latest = reader.latest_gpu_samples()
        assert [(s.gpu, s.utilization, s.memory_used_mb, s.memory_total_mb) for s in latest] == [
            (i, 10.0 * i, 100.0 * i, 16376.0) for i in range(4)]

        child = await eventually(lambda: child_pid(reader), "the trial's child pid")
        leader = os.getpgid(child)  # the trial's process group: its own pid is the group id
        # The trial's child on GPU 0 and the trial itself on GPU 3 count; this test process on
        # GPU 0 (another process group) is someone else's job and does not.
        nvml.gpus[0]["procs"] = {child: 1500, os.getpid(): 7000}
        nvml.gpus[3]["procs"] = {leader: 500}
        await eventually(lambda: the_trial(reader).peak_gpu_memory_mb == 2000.0,
                         "the trial's peak of 2000 MiB")

        nvml.gpus[0]["procs"] = {child: 100}  # it freed memory: the peak stays
        nvml.gpus[3]["procs"] = {}
        await rounds(reader, 3)
        assert the_trial(reader).peak_gpu_memory_mb == 2000.0
        assert the_trial(reader).state is TrialState.RUNNING
        assert reader.recent_gpu_samples(math.inf).keys() == {0, 1, 2, 3}

    status = json.loads(hpod_cli("status", tmp_path, "--json").stdout)
    assert [(g["gpu"], g["utilization"], g["memory_used_mb"], g["memory_total_mb"])
            for g in status["gpus"]] == [(i, 10.0 * i, 100.0 * i, 16376.0) for i in range(4)]
    assert all(g["age_s"] >= 0 for g in status["gpus"])
    text = hpod_cli("status", tmp_path).stdout
    assert "GPU" in text and "UTIL" in text
    gpu3 = next(line for line in text.splitlines() if line.startswith("gpu:3"))
    assert gpu3.split()[:6] == ["gpu:3", "30%", "300", "MiB", "of", "16.0"]

    trials = json.loads(hpod_cli("trials", tmp_path, "gpu", "--format", "json").stdout)
    assert trials[0]["peak_gpu_memory_mb"] == 2000.0
    table = hpod_cli("trials", tmp_path, "gpu").stdout.splitlines()
    assert "peak_gpu_mb" in table[0].split()
    assert table[1].split()[table[0].split().index("peak_gpu_mb")] == "2000"


async def test_while_no_trial_runs_rounds_are_written_together_and_all_kept(
        tmp_path: Path, nvml: FakeNvml) -> None:
    # A synced commit every 10 s all week, for an idle machine's utilisation.
    async with serving(tmp_path) as reader:
        def rounds_stored() -> int:
            return len({s.time for s in reader.recent_gpu_samples(math.inf).get(0, [])})

        seen: set[int] = set()

        def batched() -> bool:
            seen.add(rounds_stored())
            return max(seen) > 2 * IDLE_ROUNDS_PER_WRITE

        await eventually(batched, "two idle writes")
        # The first round at once, then whole batches: never a round on its own.
        assert all((n - 1) % IDLE_ROUNDS_PER_WRITE == 0 for n in seen if n), seen
        # Rounds held when the daemon stops are written as it stops, not lost.
        stored = rounds_stored()
        await eventually(lambda: rounds_stored() > stored, "another idle write")
        stored, queries = rounds_stored(), nvml.queries
        await eventually(lambda: nvml.queries >= queries + 3, "rounds held after it")
    with open_reader(tmp_path / ".hpod" / "hpod.db") as after:
        final = len({s.time for s in after.recent_gpu_samples(math.inf).get(0, [])})
    assert final >= stored + 2, (stored, final)


async def test_a_failing_probe_warns_once_and_the_daemon_goes_on(
        tmp_path: Path, nvml: FakeNvml, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="hpod.gpu_monitor")
    async with serving(tmp_path) as reader:
        await rounds(reader, 1)
        nvml.failure = RuntimeError("the driver fell over")  # not even an NVMLError
        queries = nvml.queries
        await eventually(lambda: nvml.queries >= queries + 5, "more sampling attempts")

        write_study(tmp_path, "cpu", quadratic_study(trials=2))  # the daemon still runs studies
        await eventually(lambda: (s := reader.find_study("cpu")) is not None
                         and reader.count_trials(s.id).complete == 2, "the study's trials")

        stale = newest_time(reader)
        nvml.failure = None
        await eventually(lambda: newest_time(reader) != stale, "sampling again")

    failures = [r for r in caplog.records if "GPU sampling failed" in r.getMessage()]
    assert len(failures) == 1 and failures[0].levelno == logging.WARNING
    assert "RuntimeError: the driver fell over" in failures[0].getMessage()
    assert any("GPU sampling works again" in r.getMessage() for r in caplog.records)


async def test_samples_older_than_the_retention_are_pruned(tmp_path: Path, nvml: FakeNvml) -> None:
    now = time.time()
    old, kept = now - RETENTION_S - 3600, now - RETENTION_S + 3600
    async with open_store(tmp_path / ".hpod" / "hpod.db") as store:
        await store.add_gpu_samples([GpuSample(old, 0, 99.0, 1.0, 16376.0),
                                     GpuSample(kept, 0, 42.0, 1.0, 16376.0)])

    async with serving(tmp_path) as reader:
        def times() -> list[float]:
            return [s.time for s in reader.recent_gpu_samples(math.inf).get(0, [])]

        await eventually(lambda: old not in times(), "the week-old sample to go")
        assert kept in times() and len(times()) >= 2  # younger ones stay; new rounds come in


async def test_a_live_edit_asking_for_more_gpus_than_exist_lets_running_trials_finish(
        tmp_path: Path, nvml: FakeNvml) -> None:
    # gpus_per_trial applies to the trials that start after the change; one no GPU count can
    # grant failed the study and stopped its healthy running trials with it.
    # The trials wait at a gate until the edit is applied: else the next trial could start,
    # with one GPU, before the daemon has read the edit.
    gate = tmp_path / "gate"
    body = f"""
command = ["python", "{REPO / 'tests' / 'faults' / 'trials' / 'gate.py'}"]
objective = {{ metric = "loss", direction = "minimize" }}
budget = {{ trials = 4 }}
parallel = 2
[space]
x = {{ type = "float", low = 0.0, high = 1.0 }}
gate = "{gate}"
[resources]
gpus_per_trial = 1
"""
    write_study(tmp_path, "grow", body)
    async with serving(tmp_path) as reader:
        def running() -> int:
            found = reader.find_study("grow")
            return 0 if found is None else reader.count_trials(found.id).running
        await eventually(lambda: running() == 2, "both trials running")
        write_study(tmp_path, "grow", body.replace("gpus_per_trial = 1", "gpus_per_trial = 8"))
        await eventually(lambda: any("new definition applied" in e.message
                                     for e in reader.list_events()), "the edit applied")
        gate.touch()
        await eventually(lambda: reader.find_study("grow").state.value == "failed"
                         and running() == 0, "the study to fail once its trials ended",
                         timeout=120)
        trials = reader.list_trials(reader.find_study("grow").id)
        assert [(t.number, t.state.value) for t in trials] == [(0, "complete"), (1, "complete")]
        assert "8 GPUs" in reader.find_study("grow").error


async def test_a_trial_waiting_for_gpu_memory_says_why_in_the_events(tmp_path: Path,
                                                                   nvml: FakeNvml) -> None:
    # docs/gpus.md promised the reason; the study sat at "running 0/N" with nothing said.
    for gpu in nvml.gpus:
        gpu["used"] = gpu["total"] - 1024  # someone else's training fills every card
    write_study(tmp_path, "blocked", quadratic_study(trials=1, parallel=1).replace(
        "[space]", '[resources]\ngpus_per_trial = 1\nmin_free_memory = "4GiB"\n[space]'))
    async with serving(tmp_path) as reader:
        def said() -> list[str]:
            return [e.message for e in reader.list_events() if "can be placed yet" in e.message]
        (message,) = await eventually(said, "the reason in the events", timeout=120)
        assert "waiting for 4.0 GiB of free GPU memory" in message
