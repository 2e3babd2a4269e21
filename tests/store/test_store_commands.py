"""Commands: the CLI/TUI side (sync, another connection) and the daemon side (the writer)."""

from __future__ import annotations

import asyncio

import pytest
from hpod.store import (
    CommandAction,
    CommandState,
    Conflict,
    NotFound,
    StoreReader,
    StoreUnavailable,
    submit_command,
    wait_command,
)


async def test_submitted_commands_reach_the_daemon(store, db_path):
    before = await store.data_version()
    stop_id = submit_command(db_path, CommandAction.STOP_TRIAL, "mnist", 3)
    pause_id = submit_command(db_path, CommandAction.PAUSE_STUDY, "cifar")

    # The daemon's cheap check: another connection committed, so data_version moved.
    assert await store.data_version() != before
    pending = await store.pending_commands()
    assert [c.id for c in pending] == [stop_id, pause_id]
    stop = pending[0]
    assert (stop.action, stop.study, stop.trial_number, stop.state) == (
        CommandAction.STOP_TRIAL, "mnist", 3, CommandState.PENDING,
    )  # fmt: skip
    assert (stop.applied_at, stop.result) == (None, None)
    assert pending[1].trial_number is None


async def test_finish_command_records_the_outcome_once(store, db_path, clock):
    command_id = submit_command(db_path, "resume-study", "mnist")
    await store.finish_command(command_id, CommandState.REJECTED, "no study named 'mnist'")

    assert await store.pending_commands() == []
    (finished,) = await store.list_commands()
    assert (finished.state, finished.result, finished.applied_at) == (
        CommandState.REJECTED, "no study named 'mnist'", clock.now,
    )  # fmt: skip
    with pytest.raises(Conflict, match="already rejected"):
        await store.finish_command(command_id, CommandState.APPLIED, "again")
    with pytest.raises(ValueError):
        await store.finish_command(command_id, CommandState.PENDING, "")
    with pytest.raises(NotFound):
        await store.finish_command(12345, CommandState.APPLIED, "")


async def test_wait_command_returns_once_the_daemon_has_answered(store, db_path):
    command_id = submit_command(db_path, CommandAction.STOP_STUDY, "mnist")
    # The waiter may read the row before or after the answer lands; both must end the wait.
    waiter = asyncio.create_task(asyncio.to_thread(wait_command, db_path, command_id, 30.0))
    await store.finish_command(command_id, CommandState.APPLIED, "study stopped")
    answered = await asyncio.wait_for(waiter, timeout=30.0)
    assert (answered.id, answered.state, answered.result) == (
        command_id, CommandState.APPLIED, "study stopped",
    )  # fmt: skip


async def test_wait_command_for_an_already_answered_command_returns_it(store, db_path):
    command_id = submit_command(db_path, CommandAction.STOP_STUDY, "mnist")
    await store.finish_command(command_id, CommandState.REJECTED, "no such study")
    assert wait_command(db_path, command_id, 0.0).state is CommandState.REJECTED


async def test_wait_command_gives_up_with_timeout_error(store, db_path):
    command_id = submit_command(db_path, CommandAction.STOP_STUDY, "mnist")
    with pytest.raises(TimeoutError, match="still pending"):
        await asyncio.to_thread(wait_command, db_path, command_id, 0.05)


async def test_wait_command_for_an_unknown_id_raises(store, db_path):
    with pytest.raises(NotFound):
        wait_command(db_path, 42, 1.0)


async def test_commands_are_visible_to_readers(store, db_path):
    command_id = submit_command(db_path, CommandAction.STOP_TRIAL, "mnist", 0)
    with StoreReader(db_path) as reader:
        assert [c.id for c in reader.list_commands()] == [command_id]
        assert reader.list_commands(since_id=command_id) == []
        assert reader.get_command(command_id).state is CommandState.PENDING


@pytest.mark.parametrize(
    ("action", "trial_number"),
    [(CommandAction.STOP_TRIAL, None), (CommandAction.PAUSE_STUDY, 2), ("explode", None)],
)
async def test_submit_command_validates_its_arguments(store, db_path, action, trial_number):
    with pytest.raises(ValueError):
        submit_command(db_path, action, "mnist", trial_number)
    assert await store.list_commands() == []


def test_submit_command_without_a_database_explains_and_creates_nothing(tmp_path):
    db_path = tmp_path / "folder" / ".hpod" / "hpod.db"
    with pytest.raises(StoreUnavailable, match=r"no hpod database at .*hpod serve"):
        submit_command(db_path, CommandAction.STOP_STUDY, "mnist")
    assert not db_path.exists()
