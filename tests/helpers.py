"""Helpers shared by the tests: waiting on conditions, running the real `hpod` CLI, writing
study files. (Importable as `helpers`: pytest puts tests/ on sys.path.)"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from hpod.store import StoreReader, StoreUnavailable
from hpod.store.records import TrialRecord, TrialState

REPO = Path(__file__).resolve().parents[1]
FIXTURE_TRIALS = REPO / "tests" / "fixtures" / "trials"
EXAMPLES = REPO / "examples"


def wait_until(predicate: Callable[[], Any], timeout: float = 60.0, what: str = "") -> Any:
    """Poll `predicate` until it returns something truthy; fail clearly after `timeout`.

    A generous timeout is not a wall-clock threshold: it only bounds how long a broken build
    hangs, and a passing run never waits for it.
    """
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what or predicate}")
        time.sleep(delay)
        delay = min(delay * 1.5, 0.2)


async def wait_until_async(predicate: Callable[[], Any], what: str, timeout: float = 60.0) -> None:
    """`wait_until` for a test that runs on the event loop: the loop keeps turning while it
    waits. The timeout only bounds a broken build; the condition ends every wait."""
    delay = 0.005
    async with asyncio.timeout(timeout):
        while not predicate():
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.2)
    assert predicate(), what


def hpod_cli(*args: str | Path, check: bool = True, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "hpod", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"hpod {' '.join(map(str, args))} exited {result.returncode}\n"
            f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        )
    return result


def status_json(folder: Path) -> dict[str, Any]:
    return json.loads(hpod_cli("status", folder, "--json").stdout)


def study_status(folder: Path, name: str) -> dict[str, Any] | None:
    db = folder / ".hpod" / "hpod.db"
    if not db.exists():
        return None
    result = hpod_cli("status", folder, "--json", check=False)
    if result.returncode != 0:
        return None
    for study in json.loads(result.stdout)["studies"]:
        if study["name"] == name:
            return study
    return None


def open_reader(db: Path) -> StoreReader | None:
    """A reader on the daemon's store, or None while the daemon has not created it yet."""
    if not db.exists():
        return None
    try:
        return StoreReader(db)
    except StoreUnavailable:  # the file exists but its schema is still being written
        return None


def slow_to_stop_study(gate: Path, *, trials: int, quick: bool = False) -> str:
    """A study of one trial at a time whose trials, told to stop, end only once `gate` exists
    (fixtures/trials/slow_to_stop.py); `quick`: trials started after that end at once."""
    argv = ["python", str(FIXTURE_TRIALS / "slow_to_stop.py"), str(gate), *(["quick"] if quick
                                                                             else [])]
    return quadratic_study(trials=trials, parallel=1, extra="[trial]\ngrace = 600").replace(
        f'["python", "{FIXTURE_TRIALS / "quadratic.py"}"]', json.dumps(argv))


def study_and_trials(db: Path, name: str):  # -> (StudyRecord, list[TrialRecord]) | None
    """Study `name` and its trials as the daemon stored them, None until it is recorded."""
    reader = open_reader(db)
    if reader is None:
        return None
    with reader:
        study = reader.find_study(name)
        return None if study is None else (study, reader.list_trials(study.id))


def state_of(db: Path, name: str) -> str | None:
    found = study_and_trials(db, name)
    return None if found is None else found[0].state.value


def trial_states(db: Path, name: str) -> list[str]:
    found = study_and_trials(db, name)
    return [] if found is None else [trial.state.value for trial in found[1]]


def write_study(folder: Path, name: str, body: str, suffix: str = ".toml") -> Path:
    """Write a study file atomically, as a careful editor would (temp file, then rename)."""
    path = folder / f"{name}{suffix}"
    tmp = folder / f".{name}{suffix}.tmp"
    tmp.write_text(body)
    tmp.rename(path)
    return path


def quadratic_study(*, trials: int = 6, parallel: int = 2, extra_space: str = "",
                    extra: str = "", seed: int = 0) -> str:
    return f"""
command = ["python", "{FIXTURE_TRIALS / 'quadratic.py'}"]
objective = {{ metric = "loss", direction = "minimize" }}
budget = {{ trials = {trials} }}
parallel = {parallel}
seed = {seed}
{extra}
[space]
x = {{ type = "float", low = 0.0, high = 1.0 }}
{extra_space}
"""


@dataclass
class DaemonProcess:
    folder: Path
    process: subprocess.Popen[str]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def terminate(self, timeout: float = 60) -> int:
        if self.process.poll() is None:
            self.process.terminate()
        return self.process.wait(timeout=timeout)

    def wait(self, timeout: float = 120) -> int:
        return self.process.wait(timeout=timeout)


def alive(pid: int) -> bool:
    """True while `pid` is a live process (a zombie, or one being reaped, counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError, IndexError):  # reaped between the two looks
        return False


class Recorder:
    """A suggester (the Suggester protocol) that draws random points and keeps what it hears."""

    def __init__(self, space) -> None:
        self.space = space
        self.rng = np.random.default_rng(0)
        self.heard: list[tuple[dict[str, Any], float | None, float | None]] = []

    def suggest(self, pending: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
        return self.space.sample(self.rng)

    def observe(self, params, value, resource=None) -> None:
        self.heard.append((dict(params), value, resource))


def record(trial_id: int, params: dict[str, Any], state: TrialState = TrialState.RUNNING,
           value: float | None = None, last_step: int | None = None) -> TrialRecord:
    return TrialRecord(id=trial_id, study_id=1, number=trial_id, params=params, state=state,
                       attempt=0, value=value, last_step=last_step, reason=None, exit_code=None,
                       checkpoint=None, placement=None, created_at=0.0, started_at=0.0,
                       finished_at=None)
