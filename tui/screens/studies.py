"""StudiesScreen: every study at a glance — the first screen."""

from __future__ import annotations

from typing import Any, ClassVar

from hpod.store import CommandAction, StudyState
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import Header, Static

from .. import format as fmt
from ..context import TuiContext
from ..controls import CommandRequest, confirm_and_send, toggle_pause
from ..messages import StudiesUpdated
from ..model import StudySummary, elapsed, estimate_left, spec_section
from ..watch_overview import OverviewInterest
from ..widgets.footer import KeysFooter
from ..widgets.gpu_panel import GpuPanel
from ..widgets.status import CommandBar
from ..widgets.table import Column, Row, VirtualTable
from .study import StudyScreen

COLUMNS = (
    Column("name", "study", 16),
    Column("state", "state", 8),
    Column("running", "run", 3, "right"),
    Column("complete", "done", 4, "right"),
    Column("stopped", "stop", 4, "right", drop=4),
    Column("failed", "fail", 4, "right"),
    Column("queued", "queue", 5, "right"),
    Column("best", "best", 9, "right"),
    Column("trial", "trial", 5, "right", drop=2),
    Column("elapsed", "elapsed", 7, "right", drop=3),
    Column("left", "left", 7, "right"),  # "~" and a duration of up to 6
    Column("gpus", "gpus", 12, drop=1),  # the GPU panel below says it too
)
STATE_TAG = {
    StudyState.RUNNING: "running",
    StudyState.PAUSED: "warn",
    StudyState.INVALID: "bad",
    StudyState.FAILED: "bad",
    StudyState.STOPPED: "muted",
}


def study_cells(summary: StudySummary, now: float) -> tuple[str, ...]:
    study, counts, best = summary.study, summary.counts, summary.best
    left = estimate_left(summary, now)
    return (
        study.name,
        study.state.value,
        fmt.count(counts.running),
        fmt.count(counts.complete),
        fmt.count(counts.stopped),
        fmt.count(counts.failed),
        fmt.count(counts.queued + counts.paused + counts.interrupted),
        fmt.value(best.value) if best else fmt.MISSING,
        f"#{best.number}" if best else fmt.MISSING,
        fmt.duration(elapsed(study, now)) if study.spec is not None else fmt.MISSING,
        ("~" + fmt.duration(left)) if left is not None else fmt.MISSING,
        ",".join(summary.placements) or fmt.MISSING,
    )


def study_sort_value(summary: StudySummary, column: str, now: float) -> Any:
    """What a studies-table column sorts by (None: nothing to sort, shown last)."""
    study, counts, best = summary.study, summary.counts, summary.best
    if column in ("running", "complete", "stopped", "failed"):
        return getattr(counts, column)
    return {
        "name": study.name.lower(),
        "state": study.state.value,
        "queued": counts.queued + counts.paused + counts.interrupted,
        "best": best.value if best else None,
        "trial": best.number if best else None,
        "elapsed": elapsed(study, now) if study.spec is not None else None,
        "left": estimate_left(summary, now),
        "gpus": ",".join(summary.placements) or None,
    }.get(column)


def study_details(summary: StudySummary | None, invalid: list[str]) -> Text:
    if summary is None:
        return Text("no studies yet: drop a study file into the watched folder", style="italic")
    study = summary.study
    text = Text()
    others = [name for name in invalid if name != study.name]
    if others:
        text.append(f"{len(others)} invalid study file(s): {', '.join(others)} "
                    "(select one to see why)\n", style="bold red")  # fmt: skip
    text.append(study.name, style="bold")
    text.append(f"  {study.path}\n")
    if study.error:
        text.append("error: ", style="bold red")
        text.append(study.error)
        return text
    budget = spec_section(study, "budget")
    scheduler = spec_section(study, "scheduler").get("kind", "?")
    suggester = spec_section(study, "suggester").get("kind", "?")
    parts = [f"{study.direction.value} {study.metric}"]
    if budget.get("trials"):
        parts.append(f"budget {summary.finished}/{budget['trials']} trials")
    if budget.get("hours"):
        parts.append(f"{budget['hours']:g} h")
    parts.append(f"{suggester} + {scheduler}")
    text.append(" · ".join(parts))
    if summary.counts.paused or summary.counts.interrupted:
        text.append(f"\n{summary.counts.paused} paused, {summary.counts.interrupted} interrupted")
    return text


class StudiesScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "open", "Open"),
        Binding("p", "pause", "Pause/resume"),
        Binding("X", "stop_study", "Stop study"),
    ]
    HELP = ("Each row is a study file; invalid ones show their error below the table. Where "
            "the daemon samples GPUs (NVML), a line per GPU shows its utilisation now and over "
            "the last 10 minutes, and its memory in use.")

    def __init__(self, ctx: TuiContext) -> None:
        super().__init__()
        self.ctx = ctx
        self._summaries: dict[str, StudySummary] = {}
        self._order: list[str] = []  # the feed's order: newest activity first
        self._sort: tuple[str, bool] | None = None  # (column, reverse) from a header click

    def compose(self) -> ComposeResult:
        yield Header()
        table = VirtualTable(id="studies")
        table.set_columns(COLUMNS)
        yield table
        yield GpuPanel(self.ctx.feed, clock=self.ctx.clock, id="gpus")
        yield Static(id="study-detail")
        yield CommandBar()
        yield KeysFooter()

    def on_mount(self) -> None:
        self.sub_title = str(self.ctx.db_path)
        self.query_one("#study-detail", Static).update(study_details(None, []))
        self.ctx.feed.subscribe(self, OverviewInterest())
        self.set_interval(1.0, self._tick)
        self.query_one(VirtualTable).focus()

    def on_unmount(self) -> None:
        self.ctx.feed.unsubscribe(self)

    @property
    def table(self) -> VirtualTable:
        return self.query_one("#studies", VirtualTable)

    def selected(self) -> StudySummary | None:
        key = self.table.cursor_key
        return self._summaries.get(key) if key is not None else None

    def on_studies_updated(self, message: StudiesUpdated) -> None:
        table = self.table
        now = self.ctx.clock()
        self._summaries = {s.study.name: s for s in message.summaries}
        for summary in message.summaries:
            table.put_row(summary.study.name, self._row(summary, now))
        self._order = [s.study.name for s in message.summaries]
        self._reorder()
        self._show_details()

    @on(VirtualTable.HeaderClicked, "#studies")
    def _header_clicked(self, event: VirtualTable.HeaderClicked) -> None:
        """A header sorts by its column; the same one again reverses; a third time restores the
        feed's order."""
        column = event.column
        if self._sort is None or self._sort[0] != column:
            self._sort = (column, False)
        elif not self._sort[1]:
            self._sort = (column, True)
        else:
            self._sort = None
        self.table.set_sort_marker(*(self._sort or (None, False)))
        self._reorder()

    def _reorder(self) -> None:
        if self._sort is None:
            self.table.set_order(list(self._order))
            return
        column, reverse = self._sort
        now = self.ctx.clock()
        # Missing values (no best yet, no estimate) go last either way.
        keyed = [(study_sort_value(self._summaries[name], column, now), name)
                 for name in self._order]
        present = sorted((k for k in keyed if k[0] is not None), key=lambda k: k[0],
                         reverse=reverse)
        self.table.set_order([name for _, name in present]
                             + [name for value, name in keyed if value is None])

    def _row(self, summary: StudySummary, now: float) -> Row:
        return Row(study_cells(summary, now), STATE_TAG.get(summary.study.state))

    def _tick(self) -> None:
        now = self.ctx.clock()
        for name, summary in self._summaries.items():
            if summary.study.state is StudyState.RUNNING:
                self.table.put_row(name, self._row(summary, now))

    @on(VirtualTable.Highlighted, "#studies")
    def _show_details(self) -> None:
        invalid = [n for n, s in self._summaries.items() if s.study.state is StudyState.INVALID]
        self.query_one("#study-detail", Static).update(study_details(self.selected(), invalid))

    @on(VirtualTable.Selected, "#studies")
    def action_open(self) -> None:
        summary = self.selected()
        if summary is None:
            return
        if summary.study.spec is None:
            study = summary.study
            self.notify(f"{study.name} is invalid: {study.error}", severity="warning")
            return
        self.app.push_screen(StudyScreen(self.ctx, summary.study))

    def action_pause(self) -> None:
        summary = self.selected()
        if summary is not None:
            confirm_and_send(self, self.ctx.db_path, toggle_pause(summary.study))

    def action_stop_study(self) -> None:
        summary = self.selected()
        if summary is not None:
            request = CommandRequest(CommandAction.STOP_STUDY, summary.study.name)
            confirm_and_send(self, self.ctx.db_path, request)
