"""Controls: ask for confirmation, then write a command row for the daemon to apply.

The row goes through hpod.store's submit_command, the same path as `hpod stop/pause/resume`;
it runs on a thread because SQLite may wait (busy_timeout) for the daemon's current write.
Whether and when the daemon applied it arrives later through the feed (CommandsUpdated).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpod.store import (
    CommandAction,
    CommandRecord,
    CommandState,
    StoreError,
    StudyRecord,
    StudyState,
    submit_command,
)
from textual.screen import Screen

from . import format as fmt
from .screens.confirm import ConfirmScreen

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CommandRequest:
    action: CommandAction
    study: str
    trial_number: int | None = None

    @property
    def target(self) -> str:
        return self.study if self.trial_number is None else f"{self.study}#{self.trial_number}"

    def question(self) -> str:
        what = {
            CommandAction.STOP_TRIAL: f"Stop trial {self.target}? It ends now and is not resumed.",
            CommandAction.STOP_STUDY: (
                f"Stop study {self.study}? Its running trials are stopped and no new ones start."
            ),
            CommandAction.PAUSE_STUDY: (
                f"Pause study {self.study}? No new trials start; the running ones finish. "
                "Resume it to go on."
            ),
            CommandAction.RESUME_STUDY: f"Resume study {self.study}?",
        }
        return what[self.action]


def toggle_pause(study: StudyRecord) -> CommandRequest:
    """`p` pauses a running study and resumes any other (the daemon rejects what it cannot do)."""
    if study.state is StudyState.RUNNING:
        return CommandRequest(CommandAction.PAUSE_STUDY, study.name)
    return CommandRequest(CommandAction.RESUME_STUDY, study.name)


def describe(command: CommandRecord) -> str:
    """One line on a command's fate: pending, or applied/rejected, how long after, and why."""
    target = CommandRequest(command.action, command.study, command.trial_number).target
    head = f"{command.action.value} {target}"
    if command.state is CommandState.PENDING:
        return f"⧗ {head}: sent at {fmt.clock(command.time)}, waiting for the daemon"
    mark = "✔" if command.state is CommandState.APPLIED else "✘"
    after = ""
    if command.applied_at is not None:
        after = f" after {max(0.0, command.applied_at - command.time):.1f}s"
    result = f" — {command.result}" if command.result else ""
    return f"{mark} {head}: {command.state.value}{after}{result}"


def confirm_and_send(screen: Screen[Any], db_path: Path, request: CommandRequest) -> None:
    """Ask first; on yes, write the command row without blocking the UI."""

    def answered(yes: bool | None) -> None:
        if yes:
            screen.run_worker(
                _send(screen, db_path, request), group="commands", exit_on_error=False
            )

    screen.app.push_screen(ConfirmScreen(request.question()), answered)


async def _send(screen: Screen[Any], db_path: Path, request: CommandRequest) -> int | None:
    try:
        command_id = await asyncio.to_thread(
            submit_command, db_path, request.action, request.study, request.trial_number
        )
    except (StoreError, ValueError) as error:
        logger.warning("could not send %s %s: %s", request.action.value, request.target, error)
        screen.notify(f"could not send the command: {error}", severity="error")
        return None
    screen.notify(f"sent {request.action.value} {request.target}; waiting for the daemon")
    return command_id
