"""One-line status widgets: the latest command's fate, and a screen's summary line."""

from __future__ import annotations

from hpod.store import CommandRecord, CommandState
from textual.reactive import reactive
from textual.widgets import Static

from ..controls import describe


class CommandBar(Static):
    """The most recent command (from this app or the CLI) and whether the daemon applied it.

    It follows the app's `latest_command` (state flows down from the app, which is the one
    subscriber to the commands table).
    """

    command: reactive[CommandRecord | None] = reactive(None)

    def on_mount(self) -> None:
        self.watch(self.app, "latest_command", self._follow, init=True)

    def _follow(self, command: CommandRecord | None) -> None:
        self.command = command

    def watch_command(self, command: CommandRecord | None) -> None:
        self.display = command is not None
        if command is None:
            return
        self.set_class(command.state is CommandState.PENDING, "-pending")
        self.set_class(command.state is CommandState.APPLIED, "-applied")
        self.set_class(command.state is CommandState.REJECTED, "-rejected")
        self.update(describe(command))
