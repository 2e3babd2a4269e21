"""HpodApp: the styling, the global keys, the feed worker and the first screen.

Screens own what they show; the app only starts the feed (one worker thread that reads the
database and posts messages), follows the commands table for every screen's CommandBar, and
reports problems.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar

from hpod.lock import serving_pid
from hpod.store import CommandRecord, CommandState
from textual import on, work
from textual.app import App
from textual.binding import Binding, BindingType
from textual.reactive import reactive
from textual.screen import Screen
from textual.worker import Worker, WorkerState, get_current_worker

from .context import TuiContext
from .controls import describe
from .feed import POLL_INTERVAL_S, StoreFeed
from .messages import CommandsUpdated, FeedProblem
from .screens.events import EventsScreen
from .screens.help import HelpScreen, own_keys
from .screens.studies import StudiesScreen
from .watch_events import CommandsInterest

logger = logging.getLogger(__name__)

THEMES = ("textual-dark", "textual-light")
DAEMON_CHECK_S = 2.0  # how often the app asks whether a daemon serves the database


class HpodApp(App[int]):
    CSS_PATH = "hpod.tcss"
    TITLE = "hpod"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit"),
        Binding("question_mark", "help", "Keys"),
        Binding("e", "events", "Events"),
        Binding("t", "toggle_theme", "Theme"),
    ]

    latest_command: reactive[CommandRecord | None] = reactive(None)
    # Nothing runs without a daemon, whatever the store still says: after a crash or a reboot
    # it reads "running". True when no daemon serves the database.
    daemon_missing: reactive[bool] = reactive(False)

    def __init__(
        self,
        db_path: Path,
        *,
        clock: Callable[[], float] = time.time,
        poll_interval: float = POLL_INTERVAL_S,
        theme: str = THEMES[0],
        exit_when: Callable[[], bool] | None = None,
    ) -> None:
        super().__init__()
        self._exit_when = exit_when  # `hpod run`: close once its daemon is done
        feed = StoreFeed(Path(db_path), interval=poll_interval)
        self.ctx = TuiContext(Path(db_path), feed, clock)
        self._initial_theme = theme
        self._waiting: set[int] = set()  # commands seen pending: their outcome gets a toast

    def get_default_screen(self) -> Screen[None]:
        return StudiesScreen(self.ctx)

    def on_mount(self) -> None:
        self.theme = self._initial_theme
        self.ctx.feed.subscribe(self, CommandsInterest())
        self._run_feed()
        self._check_daemon()
        self.set_interval(DAEMON_CHECK_S, self._check_daemon)
        if self._exit_when is not None:
            self.set_interval(POLL_INTERVAL_S, self._maybe_exit)

    def _check_daemon(self) -> None:
        # Only the kernel's lock table, not the store: every read of it goes through the feed.
        self.daemon_missing = serving_pid(self.ctx.db_path) is None

    def _maybe_exit(self) -> None:
        if self._exit_when is not None and self._exit_when():
            self.exit()

    def on_unmount(self) -> None:
        self.ctx.feed.stop()

    @work(thread=True, exclusive=True, group="store-feed", exit_on_error=False)
    def _run_feed(self) -> None:
        self.ctx.feed.run(problems=self, cancelled=get_current_worker().cancelled_event)

    @on(Worker.StateChanged)
    def _worker_failed(self, event: Worker.StateChanged) -> None:
        # The harlequin pattern: one place turns a worker's crash into something visible.
        if event.state is WorkerState.ERROR:
            error = event.worker.error
            logger.error("the %s worker failed: %r", event.worker.group, error)
            self.notify(f"{event.worker.group} failed: {error!r}", severity="error", timeout=30)

    def on_commands_updated(self, message: CommandsUpdated) -> None:
        for command in message.commands:
            if command.state is CommandState.PENDING:
                self._waiting.add(command.id)
            elif command.id in self._waiting:
                self._waiting.discard(command.id)
                applied = command.state is CommandState.APPLIED
                self.notify(describe(command), severity="information" if applied else "warning")
        if message.commands:
            newest = max(message.commands, key=lambda c: c.id)
            if self.latest_command is None or newest.id >= self.latest_command.id:
                self.latest_command = newest

    def on_feed_problem(self, message: FeedProblem) -> None:
        if message.problem is None:
            self.notify("the database can be read again")
        else:
            self.notify(message.problem, severity="error", timeout=10)

    def action_help(self) -> None:
        screen = self.screen
        notes = getattr(screen, "HELP", None) or ""
        self.push_screen(HelpScreen(screen.title or self.title, own_keys(screen), notes))

    def action_events(self) -> None:
        if not isinstance(self.screen, EventsScreen):
            self.push_screen(EventsScreen(self.ctx))

    def action_toggle_theme(self) -> None:
        self.theme = THEMES[1] if self.theme == THEMES[0] else THEMES[0]
