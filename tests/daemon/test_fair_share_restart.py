"""Fair share at a daemon's start: a real daemon on a tmp folder (real store, intake, trial
processes), started on a store that already holds what the studies ran before, and the start
gate that holds the pool till every study found has asked."""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest

import hpod.daemon
from hpod.config import DaemonConfig
from hpod.controller import StudyController
from hpod.daemon import Daemon
from hpod.spec import load_study_file
from hpod.store import TrialState, open_store

from helpers import quadratic_study, study_and_trials, wait_until_async, write_study

WAIT = 120.0  # bounds a broken build only


async def seed_last_start(db: Path, path: Path, seconds_ago: float) -> None:
    """The study `path` defines, with one complete trial that started `seconds_ago`."""
    spec = load_study_file(path)
    now = [time.time() - seconds_ago]
    async with open_store(db, clock=lambda: now[0]) as store:
        study = await store.create_study(spec.name, str(path), spec=spec.to_dict(),
                                         identity=spec.identity(),
                                         direction=spec.objective.direction,
                                         metric=spec.objective.metric)
        trial = await store.create_trial(study.id, {"x": 0.5})
        await store.transition(trial.id, TrialState.RUNNING, placement="cpu:0")
        now[0] += 30
        await store.transition(trial.id, TrialState.COMPLETE, value=0.25)


async def test_at_a_start_the_study_served_longest_ago_goes_first(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # One slot, both files there at the start: every study holds nothing, and "a", read first,
    # took the slot at every start, however recently it had run.
    monkeypatch.setattr(hpod.daemon, "OPEN_POOL_WITHIN", 3600.0)  # a slow machine waits too
    db = tmp_path / ".hpod" / "hpod.db"
    for name, seconds_ago in (("a", 60.0), ("b", 10 * 3600.0)):
        path = write_study(tmp_path, name, quadratic_study(trials=2, parallel=1))
        await seed_last_start(db, path, seconds_ago)
    await Daemon(DaemonConfig(db_path=db, folder=tmp_path, slots=1, exit_when_idle=True)).run()

    _, a_trials = study_and_trials(db, "a")
    _, b_trials = study_and_trials(db, "b")
    assert [t.state.value for t in a_trials + b_trials] == ["complete"] * 4
    assert b_trials[1].started_at < a_trials[1].started_at


@pytest.fixture
def slow_start(monkeypatch: pytest.MonkeyPatch) -> asyncio.Event:
    """Study "slow" does not start (nor ask for a lease) until the event returned is set."""
    release = asyncio.Event()
    restore = StudyController._restore

    async def slow_restore(self: StudyController) -> None:
        if self.name == "slow":
            await release.wait()
        await restore(self)

    monkeypatch.setattr(StudyController, "_restore", slow_restore)
    return release


@pytest.mark.parametrize("slots, bound", [
    (1, 0.2),  # contended: the gate opens after its bound
    (2, 3600.0),  # each study's `parallel` fits in the slots: no order to keep, no gate
])
async def test_a_study_slow_to_start_does_not_hold_the_others_first_trials(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        slow_start: asyncio.Event, slots: int, bound: float) -> None:
    monkeypatch.setattr(hpod.daemon, "OPEN_POOL_WITHIN", bound)
    caplog.set_level(logging.INFO, logger="hpod.daemon")
    write_study(tmp_path, "fast", quadratic_study(trials=1, parallel=1))
    write_study(tmp_path, "slow", quadratic_study(trials=1, parallel=1))
    db = tmp_path / ".hpod" / "hpod.db"
    daemon = Daemon(DaemonConfig(db_path=db, folder=tmp_path, slots=slots, gpus="none",
                                 exit_when_idle=True))
    running = asyncio.create_task(daemon.run())

    def fast_done() -> bool:
        found = study_and_trials(db, "fast")
        return found is not None and [t.state.value for t in found[1]] == ["complete"]

    try:
        await wait_until_async(fast_done, "fast's trial to run while slow has not started",
                               timeout=WAIT)
        waited = [r.getMessage() for r in caplog.records if "without waiting" in r.getMessage()]
        if slots == 1:
            # Slow names itself; on a loaded machine fast, or the files' scan, may be late too.
            (said,) = waited
            assert said.startswith("placing trials without waiting any longer (0.2 s) for ")
            assert said.endswith(("study slow to start", "the study files to be read to start"))
        else:
            assert waited == []
    finally:
        slow_start.set()
        await asyncio.wait_for(running, WAIT)
    assert [t.state.value for t in study_and_trials(db, "slow")[1]] == ["complete"]


async def test_a_daemon_stopped_while_its_pool_is_held_exits_cleanly(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, slow_start: asyncio.Event) -> None:
    monkeypatch.setattr(hpod.daemon, "OPEN_POOL_WITHIN", 3600.0)
    write_study(tmp_path, "fast", quadratic_study(trials=1, parallel=1))
    write_study(tmp_path, "slow", quadratic_study(trials=1, parallel=1))
    db = tmp_path / ".hpod" / "hpod.db"
    daemon = Daemon(DaemonConfig(db_path=db, folder=tmp_path, slots=1, gpus="none"))
    running = asyncio.create_task(daemon.run())
    try:
        # fast has asked and is told why it waits; slow has not asked yet.
        await wait_until_async(lambda: daemon._pool.waiting() == [
            ("fast", "waiting for the other studies to start")], "fast to wait on the gate",
            timeout=WAIT)
    finally:
        daemon.request_shutdown()  # what SIGTERM does
        slow_start.set()  # slow's start ends while the daemon stops, the pool still held
        await asyncio.wait_for(running, WAIT)
    for name in ("fast", "slow"):
        assert study_and_trials(db, name)[1] == [], f"{name} ran a trial on a held pool"
    assert daemon._pool.in_use == 0 and daemon._pool.waiting() == []
