"""One-line status widgets: the latest command's fate, and a screen's summary line."""

from __future__ import annotations

from hpod.store import CommandRecord, CommandState
from textual.reactive import reactive
from textual.widgets import Static

from ..controls import describe


NO_DAEMON = ("no daemon is serving this database: nothing runs, and studies and trials are where "
             "the last one left them (start one: hpod serve FOLDER)")


class CommandBar(Static):
    """The most recent command (from this app or the CLI) and whether the daemon applied it,
    after a warning when no daemon serves the database to apply anything.

    It follows the app's `latest_command` and `daemon_missing` (state flows down from the app,
    which is the one subscriber to the commands table and the one to ask after the daemon).
    """

    command: reactive[CommandRecord | None] = reactive(None)
    daemon_missing: reactive[bool] = reactive(False)

    def on_mount(self) -> None:
        self.watch(self.app, "latest_command", self._follow, init=True)
        self.watch(self.app, "daemon_missing", self._follow_daemon, init=True)

    def _follow(self, command: CommandRecord | None) -> None:
        self.command = command

    def _follow_daemon(self, missing: bool) -> None:
        self.daemon_missing = missing

    def watch_command(self) -> None:
        self._show()

    def watch_daemon_missing(self) -> None:
        self._show()

    def _show(self) -> None:
        command = self.command
        parts = [NO_DAEMON] if self.daemon_missing else []
        if command is not None:
            parts.append(describe(command))
        self.display = bool(parts)
        self.set_class(self.daemon_missing, "-no-daemon")
        state = None if command is None else command.state
        self.set_class(state is CommandState.PENDING, "-pending")
        self.set_class(state is CommandState.APPLIED, "-applied")
        self.set_class(state is CommandState.REJECTED, "-rejected")
        self.update(" · ".join(parts))
