"""EventsScreen: the daemon's warnings and errors (and notable info), newest first."""

from __future__ import annotations

from typing import ClassVar

from hpod.store import EventLevel
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import Header, Static

from .. import format as fmt
from ..context import TuiContext
from ..messages import EventsAppended
from ..model import EventRow
from ..watch_events import EventsInterest
from ..widgets.footer import KeysFooter
from ..widgets.status import CommandBar
from ..widgets.table import Column, Row, VirtualTable

COLUMNS = (
    Column("time", "time", 8),
    Column("level", "level", 7),
    Column("study", "study", 12),
    Column("trial", "trial", 5, "right"),
    Column("message", "message", 200),
)
LEVEL_TAG = {EventLevel.ERROR: "bad", EventLevel.WARNING: "warn", EventLevel.INFO: None}


def event_row(row: EventRow, now: float) -> Row:
    event = row.event
    cells = (
        fmt.clock(event.time, now),
        event.level.value,
        row.study or fmt.MISSING,
        fmt.MISSING if row.trial_number is None else f"#{row.trial_number}",
        event.message,
    )
    return Row(cells, LEVEL_TAG[event.level])


class EventsScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back"),
        Binding("w", "problems_only", "Warnings only"),
    ]
    HELP = "Newest first. The selected event's whole message shows below the table."

    def __init__(self, ctx: TuiContext) -> None:
        super().__init__()
        self.ctx = ctx
        self._rows: dict[str, EventRow] = {}
        self._newest_first: list[str] = []
        self.problems_only = False

    def compose(self) -> ComposeResult:
        yield Header()
        table = VirtualTable(id="events")
        table.set_columns(COLUMNS)
        yield table
        yield Static(id="event-detail")
        yield CommandBar()
        yield KeysFooter()

    def on_mount(self) -> None:
        self.title = "hpod · events"
        self.sub_title = str(self.ctx.db_path)
        self.ctx.feed.subscribe(self, EventsInterest())
        self.query_one(VirtualTable).focus()
        self._show_detail()

    def on_unmount(self) -> None:
        self.ctx.feed.unsubscribe(self)

    @property
    def table(self) -> VirtualTable:
        return self.query_one("#events", VirtualTable)

    def on_events_appended(self, message: EventsAppended) -> None:
        now = self.ctx.clock()
        fresh = []
        for row in message.rows:
            key = str(row.event.id)
            self._rows[key] = row
            self.table.put_row(key, event_row(row, now))
            fresh.append(key)
        self._newest_first = fresh[::-1] + self._newest_first
        self._reorder()

    def _reorder(self) -> None:
        keys = self._newest_first
        if self.problems_only:
            keys = [k for k in keys if self._rows[k].event.level is not EventLevel.INFO]
        self.table.set_order(keys)
        self._show_detail()

    @on(VirtualTable.Highlighted, "#events")
    def _show_detail(self) -> None:
        key = self.table.cursor_key
        row = self._rows.get(key) if key is not None else None
        detail = self.query_one("#event-detail", Static)
        if row is None:
            detail.update(Text("no events yet", style="italic"))
            return
        text = Text(f"{fmt.clock(row.event.time)} {row.event.level.value}  ", style="bold")
        text.append(row.event.message, style="")
        detail.update(text)

    def action_problems_only(self) -> None:
        self.problems_only = not self.problems_only
        self._reorder()
        self.notify("warnings and errors only" if self.problems_only else "all events", timeout=1.5)

    def action_back(self) -> None:
        self.dismiss()
