"""How the CLI and the TUI ask the daemon to do something: a row in the `commands` table.

The daemon notices the commit through `PRAGMA data_version`, applies the command and marks it
applied or rejected. There is no second channel between the processes.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from . import queries as q
from .reader import StoreReader, connect_sync
from .records import CommandAction, CommandRecord, CommandState

logger = logging.getLogger(__name__)

# Another process answers, so there is nothing to await; twice the TUI's refresh rate is plenty.
_POLL_INTERVAL_S = 0.1


def submit_command(
    db_path: str | Path,
    action: CommandAction,
    study: str,
    trial_number: int | None = None,
    payload: dict[str, Any] | None = None,
) -> int:
    """Queue a command for the daemon serving `db_path`; returns its id (for wait_command).

    `payload` carries a command's data (the params of an enqueued point)."""
    action = CommandAction(action)
    if action is CommandAction.STOP_TRIAL and trial_number is None:
        raise ValueError(f"{action.value} needs the number of the trial to stop")
    if action is not CommandAction.STOP_TRIAL and trial_number is not None:
        raise ValueError(f"{action.value} acts on a whole study; it takes no trial number")
    row = (time.time(), action.value, study, trial_number, CommandState.PENDING.value,
           None if payload is None else q.dump_json(payload))
    conn = connect_sync(db_path, mode="rw")
    try:
        with q.translate_errors(db_path):
            # A short IMMEDIATE transaction: waits (busy_timeout) for the daemon's current write.
            conn.execute("BEGIN IMMEDIATE")
            command_id = conn.execute(q.INSERT_COMMAND, row).lastrowid
            conn.execute("COMMIT")
    finally:
        conn.close()
    logger.debug("queued command %d: %s %s %s", command_id, action.value, study, trial_number)
    assert command_id is not None
    return command_id


def wait_command(db_path: str | Path, command_id: int, timeout: float) -> CommandRecord:
    """Block until the daemon has applied or rejected the command; TimeoutError after `timeout` s.

    Polls `PRAGMA data_version` (cheap, no table read) and reads the row only when it changed.
    """
    deadline = time.monotonic() + timeout
    with StoreReader(db_path) as reader:
        seen: int | None = None
        while True:
            version = reader.data_version()
            if version != seen:
                seen = version
                command = reader.get_command(command_id)
                if command.state is not CommandState.PENDING:
                    return command
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    f"command {command_id} ({command.action.value} {command.study}) is still "
                    f"pending after {timeout:g} s; is a daemon serving {db_path}?"
                )
            time.sleep(min(_POLL_INTERVAL_S, remaining))
