"""Interleavings at the controller's awaits, forced at the executor boundary of a real daemon
(a wrapper around the real LocalExecutor, real trial processes, a real store)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from hpod.config import DaemonConfig
from hpod.daemon import Daemon
from hpod.executor.base import RunningTrial
from hpod.executor.local import LocalExecutor

from helpers import (FIXTURE_TRIALS, quadratic_study, state_of, study_and_trials,
                     wait_until_async, write_study)


class Wrapped:
    """The real executor, with `before` run at each launch and `after` scheduled to run in
    the loop turn right after it returns."""

    def __init__(self, before: Callable[[Mapping[str, str]], None] = lambda env: None,
                 after: Callable[[Mapping[str, str]], None] = lambda env: None) -> None:
        self._real = LocalExecutor()
        self._before, self._after = before, after

    async def launch(self, argv: Sequence[str], *, env: Mapping[str, str], cwd: Path,
                     trial_dir: Path) -> RunningTrial:
        self._before(env)
        trial = await self._real.launch(argv, env=env, cwd=cwd, trial_dir=trial_dir)
        asyncio.get_running_loop().call_soon(self._after, env)
        return trial


async def test_a_study_failing_while_it_waits_for_a_slot_gives_the_slot_back(
        tmp_path: Path) -> None:
    # One slot, two trials at a time: the broken study's controller waits for a second lease
    # when its first trial's bug tears it down. The slot that trial frees went to that wait,
    # and was held for good: the next study never ran.
    def explode(env: Mapping[str, str]) -> None:
        if env.get("HPOD_STUDY") == "broken":
            raise ZeroDivisionError("a bug deep inside hpod")

    write_study(tmp_path, "broken", quadratic_study(trials=3, parallel=2))
    db = tmp_path / ".hpod" / "hpod.db"
    daemon = Daemon(DaemonConfig(db_path=db, folder=tmp_path, slots=1),
                    executor=Wrapped(before=explode))
    running = asyncio.create_task(daemon.run())
    try:
        await wait_until_async(lambda: state_of(db, "broken") == "failed", "broken to fail")
        write_study(tmp_path, "healthy", quadratic_study(trials=2, parallel=1))
        await wait_until_async(lambda: state_of(db, "healthy") == "complete",
                               "the next study to get the slot and complete")
    finally:
        daemon.request_shutdown()
        await running


async def test_a_stop_in_the_turn_a_launch_returns_is_not_lost(tmp_path: Path) -> None:
    # The stop arrives after the launch has returned but before the trial's run goes on: it
    # was dropped, and a trial that never ends by itself ran on.
    daemon: Daemon | None = None

    def stop_it(env: Mapping[str, str]) -> None:
        assert daemon is not None
        assert daemon.controllers["hung"].stop_trial(0)

    write_study(tmp_path, "hung", quadratic_study(trials=1, parallel=1).replace(
        str(FIXTURE_TRIALS / "quadratic.py"), str(FIXTURE_TRIALS / "hang.py")))
    db = tmp_path / ".hpod" / "hpod.db"
    daemon = Daemon(DaemonConfig(db_path=db, folder=tmp_path, slots=1),
                    executor=Wrapped(after=stop_it))
    running = asyncio.create_task(daemon.run())

    def stopped() -> bool:
        found = study_and_trials(db, "hung")
        return found is not None and [t.state.value for t in found[1]] == ["stopped"]

    try:
        await wait_until_async(stopped, "the trial stopped by the user")
        (trial,) = study_and_trials(db, "hung")[1]
        assert trial.reason == "stopped by the user"
    finally:
        daemon.request_shutdown()
        await running


async def test_a_trial_folder_that_cannot_be_made_fails_that_trial_only(tmp_path: Path) -> None:
    # A file in the way (or a full disk, a quota): the study stopped with an internal error,
    # and its other trials with it.
    write_study(tmp_path, "blocked", quadratic_study(trials=2, parallel=1))
    (tmp_path / ".hpod" / "trials" / "blocked").mkdir(parents=True)
    (tmp_path / ".hpod" / "trials" / "blocked" / "00000").write_text("in the way")
    db = tmp_path / ".hpod" / "hpod.db"
    await Daemon(DaemonConfig(db_path=db, folder=tmp_path, slots=1, exit_when_idle=True)).run()
    study, trials = study_and_trials(db, "blocked")
    assert study.state.value == "complete"
    assert [t.state.value for t in trials] == ["failed", "complete"]
    assert "cannot create its folder" in trials[0].reason
