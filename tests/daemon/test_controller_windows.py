"""Windows in the daemon core that a stop, a pause or a resume may fall into: while the
suggester computes a point, while a study that was asked to start again is between its old
controller and its new one, while the daemon shuts down. A real daemon on a tmp folder (real
store, real watcher, real trial processes, commands through the same calls `hpod` makes); the
window is held open by a gate the test controls, never by waiting for time to pass."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

import hpod.daemon
import hpod.study_policy
from hpod.config import DaemonConfig
from hpod.daemon import Daemon
from hpod.intake import StudyIntake
from hpod.spec import StudySpec
from hpod.store.commands import submit_command, wait_command
from hpod.store.records import CommandAction, CommandRecord, CommandState
from hpod.suggest.base import Suggester

from helpers import (open_reader, quadratic_study, slow_to_stop_study, state_of, trial_states,
                     wait_until_async, write_study)

BOUND = 120.0  # seconds: only bounds a broken build; every wait ends on its condition


class SuggestGate:
    """The first suggestion of the test's study waits, on its worker thread, until the test
    lets it go: the window "while the suggester works" (a GP fit takes up to a second) held
    open for as long as the test needs, with the real suggester behind it. Later suggestions
    (a restarted study's) run straight through."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.computing = threading.Event()
        self.release = threading.Event()
        self._calls = 0
        real_build = hpod.study_policy.build_suggester

        def build(spec: StudySpec) -> Suggester:
            suggester = real_build(spec)
            real_suggest = suggester.suggest

            def suggest(pending: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
                self._calls += 1  # one at a time: the controller's suggest lock
                if self._calls == 1:
                    self.computing.set()
                    self.release.wait()
                return real_suggest(pending)

            # On the instance, so the controller's isinstance checks see the real suggester.
            suggester.suggest = suggest  # type: ignore[method-assign]
            return suggester

        # Where every controller gets its suggester (StudyPolicy); there is no registry of
        # kinds to add a test kind to.
        monkeypatch.setattr(hpod.study_policy, "build_suggester", build)

    async def wait_computing(self) -> None:
        await wait_until_async(self.computing.is_set, "the first suggestion to be computed",
                               timeout=BOUND)


async def command(db: Path, action: CommandAction, study: str) -> CommandRecord:
    """What `hpod pause|stop|resume` does, without the CLI's own 10 s limit on the wait."""
    command_id = submit_command(db, action, study)
    return await asyncio.to_thread(wait_command, db, command_id, BOUND)


@asynccontextmanager
async def daemon_on(folder: Path, *, exit_when_idle: bool = False,
                    before_stop: Callable[[], object] = lambda: None,
                    ) -> AsyncIterator[tuple[Daemon, asyncio.Task[None], Path]]:
    """A real daemon with one slot on `folder`, in this loop: (daemon, its task, its database).
    At the end of the block `before_stop` lets go of whatever the test held, and the daemon
    is shut down unless it has ended by itself."""
    db = folder / ".hpod" / "hpod.db"
    daemon = Daemon(DaemonConfig(db_path=db, folder=folder, slots=1,
                                 exit_when_idle=exit_when_idle))
    running = asyncio.create_task(daemon.run())
    try:
        yield daemon, running, db
    finally:
        before_stop()
        if not running.done():
            daemon.request_shutdown()
        async with asyncio.timeout(BOUND):
            await running


def events_of(db: Path) -> list[str]:
    reader = open_reader(db)
    if reader is None:
        return []
    with reader:
        return [event.message for event in reader.list_events()]


@pytest.mark.parametrize(("action", "state"), [(CommandAction.PAUSE_STUDY, "paused"),
                                               (CommandAction.STOP_STUDY, "stopped")])
async def test_a_stop_or_pause_while_a_point_is_suggested_makes_no_trial(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, action: CommandAction,
        state: str) -> None:
    # The point the suggester was computing became a trial all the same: a paused study
    # started a trial, a stopped one made (and stopped) one.
    gate = SuggestGate(monkeypatch)
    write_study(tmp_path, "s", quadratic_study(trials=1, parallel=1))
    async with daemon_on(tmp_path, before_stop=gate.release.set) as (_, _, db):
        await gate.wait_computing()
        done = await command(db, action, "s")
        assert done.state is CommandState.APPLIED, done.result
        gate.release.set()
        # The controller records its new state only once the suggestion has come back.
        await wait_until_async(lambda: state_of(db, "s") == state, f"the study {state}",
                               timeout=BOUND)
        assert trial_states(db, "s") == []
        if action is CommandAction.PAUSE_STUDY:
            # Paused, not lost: resumed, the study makes its trial and completes.
            done = await command(db, CommandAction.RESUME_STUDY, "s")
            assert done.state is CommandState.APPLIED, done.result
            await wait_until_async(lambda: state_of(db, "s") == "complete",
                                   "the resumed study to complete", timeout=BOUND)
            assert trial_states(db, "s") == ["complete"]


async def test_resume_of_a_stopping_study_whose_file_was_removed_is_refused(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # `hpod resume` answered "it starts again once its running trials have ended" to a study
    # whose file was gone, so nothing could start it again: it stayed stopped.
    gate = SuggestGate(monkeypatch)  # keeps the study stopping while the test asks
    path = write_study(tmp_path, "s", quadratic_study(trials=1, parallel=1))
    body = path.read_text()
    async with daemon_on(tmp_path, before_stop=gate.release.set) as (daemon, _, db):
        await gate.wait_computing()
        controller = daemon.controllers["s"]
        path.unlink()
        await wait_until_async(lambda: controller.ending, "the removal to stop the study",
                               timeout=BOUND)
        done = await command(db, CommandAction.RESUME_STUDY, "s")
        assert done.state is CommandState.REJECTED, done.result
        assert "is stopping and cannot start again" in done.result
        # What the refusal advises does run it: the file put back while the study still stops.
        write_study(tmp_path, "s", body)
        await wait_until_async(
            lambda: any("saved while the study was stopping" in m for m in events_of(db)),
            "the daemon to see the file put back", timeout=BOUND)
        gate.release.set()
        await wait_until_async(lambda: state_of(db, "s") == "complete",
                               "the study to start again and complete", timeout=BOUND)
        assert trial_states(db, "s") == ["complete"]


async def test_exit_when_idle_waits_for_a_study_that_starts_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Stopped, then resumed while it still stopped: between its old controller's end and its
    # new one's start there was no controller at all, the idle watch found nothing running and
    # ended the daemon, and the study never ran again.
    gate = SuggestGate(monkeypatch)  # the stop and the resume land while it suggests
    write_study(tmp_path, "s", quadratic_study(trials=1, parallel=1))
    async with daemon_on(tmp_path, exit_when_idle=True, before_stop=gate.release.set) as (
            daemon, running, db):
        await gate.wait_computing()
        done = await command(db, CommandAction.STOP_STUDY, "s")
        assert done.state is CommandState.APPLIED, done.result
        done = await command(db, CommandAction.RESUME_STUDY, "s")
        assert done.state is CommandState.APPLIED, done.result
        assert "starts again once its running trials have ended" in done.result
        gate.release.set()
        async with asyncio.timeout(BOUND):
            await running  # ends by itself, once idle
        assert daemon.ended_idle
        assert state_of(db, "s") == "complete"
        assert trial_states(db, "s") == ["complete"]


async def test_no_study_starts_once_the_daemon_is_stopping(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    # A study asked to start again once stopped (resume while it stops) was started after the
    # shutdown had already stopped every controller: nothing stopped the new one, which ran
    # its trials while the daemon waited for it to end.
    caplog.set_level(logging.INFO, logger="hpod")
    gate = SuggestGate(monkeypatch)
    study_ended_entered = asyncio.Event()
    study_ended_release = asyncio.Event()

    class HeldIntake(StudyIntake):
        """The real intake; the restart of a study that has ended waits for the test, so the
        daemon's stop lands after the daemon looked (it restarts only while not stopping)
        and before the study is read again."""

        async def study_ended(self, name: str) -> None:
            study_ended_entered.set()
            await study_ended_release.wait()
            await super().study_ended(name)

    monkeypatch.setattr(hpod.daemon, "StudyIntake", HeldIntake)
    write_study(tmp_path, "s", quadratic_study(trials=1, parallel=1))

    def let_go() -> None:
        gate.release.set()
        study_ended_release.set()

    async with daemon_on(tmp_path, before_stop=let_go) as (daemon, running, db):
        await gate.wait_computing()
        done = await command(db, CommandAction.STOP_STUDY, "s")
        assert done.state is CommandState.APPLIED, done.result
        done = await command(db, CommandAction.RESUME_STUDY, "s")
        assert done.state is CommandState.APPLIED, done.result
        gate.release.set()
        async with asyncio.timeout(BOUND):
            await study_ended_entered.wait()
        daemon.request_shutdown()
        # The shutdown has stopped every controller it knows of before the study is read again.
        await wait_until_async(lambda: "shutting down" in caplog.text,
                               "the shutdown to begin", timeout=BOUND)
        study_ended_release.set()
        async with asyncio.timeout(BOUND):
            await running
        assert trial_states(db, "s") == []
        assert "study s not started: the daemon is stopping" in caplog.text


async def test_exit_when_idle_waits_for_a_study_resumed_while_its_trial_stops(
        tmp_path: Path) -> None:
    # The usual case of the one above: the study's last trial is still stopping when the
    # resume comes. As that trial left, the ending controller looked idle to the idle watch,
    # which ended the daemon before the controller had ended and the study started again.
    gate = tmp_path / "gate"
    write_study(tmp_path, "s", slow_to_stop_study(gate, trials=2, quick=True))
    async with daemon_on(tmp_path, exit_when_idle=True, before_stop=gate.touch) as (
            daemon, running, db):
        await wait_until_async(lambda: trial_states(db, "s") == ["running"], "a running trial",
                               timeout=BOUND)
        assert (await command(db, CommandAction.STOP_STUDY, "s")).state is CommandState.APPLIED
        done = await command(db, CommandAction.RESUME_STUDY, "s")
        assert done.state is CommandState.APPLIED, done.result
        assert "starts again once its running trials have ended" in done.result
        gate.touch()
        async with asyncio.timeout(BOUND):
            await running
        assert daemon.ended_idle
        assert state_of(db, "s") == "complete"
        assert trial_states(db, "s") == ["stopped", "complete"]
