"""TrialScreen: one trial — params, every metric over steps, history, logs, why it ended."""

from __future__ import annotations

from collections import defaultdict
from typing import ClassVar

from hpod.reasons import reason_in_one_line
from hpod.store import CommandAction, EventRecord, MetricPoint, StudyRecord, TrialRecord
from rich.table import Table
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Header, Log, Static, TabbedContent, TabPane

from .. import format as fmt
from ..context import TuiContext
from ..controls import CommandRequest, confirm_and_send
from ..messages import TrialEvents, TrialLog, TrialMetrics, TrialUpdated
from ..model import rung_levels, trial_duration, trial_log_dir
from ..watch_trial import TrialInterest
from ..widgets.chart import Chart, Plot, Series
from ..widgets.footer import KeysFooter
from ..widgets.status import CommandBar
from ..widgets.table import Column, Row, VirtualTable

TABS = ("overview", "metrics", "stdout", "stderr")
METRIC_COLUMNS = (
    Column("name", "metric", 14),
    Column("points", "points", 6, "right"),
    Column("step", "step", 6, "right"),
    Column("last", "last", 9, "right"),
    Column("min", "min", 9, "right"),
    Column("max", "max", 9, "right"),
)
LOG_LINES = 2000


def history(trial: TrialRecord, events: list[EventRecord], now: float) -> Text:
    """What happened to the trial, oldest first: its timestamps, then the daemon's events."""
    text = Text()
    rows: list[tuple[float, str]] = [(trial.created_at, "created (queued)")]
    if trial.started_at is not None:
        where = f" on {trial.placement}" if trial.placement else ""
        rows.append((trial.started_at, f"started{where}"))
    if trial.finished_at is not None:
        rows.append((trial.finished_at, trial.state.value))
    rows += [(e.time, f"[{e.level.value}] {e.message}") for e in events]
    for time, what in sorted(rows, key=lambda r: r[0]):
        text.append(f"{fmt.clock(time, now)}  ", style="dim")
        text.append(what + "\n")
    return text


def info_table(trial: TrialRecord, now: float) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    for name, value in trial.params.items():
        table.add_row(name, fmt.param(value))
    table.add_row("", "")
    attempt = f" (attempt {trial.attempt + 1})" if trial.attempt else ""
    table.add_row("state", trial.state.value + attempt)
    if trial.reason:
        table.add_row("reason", Text(trial.reason, style="bold"))
    if trial.exit_code is not None:
        table.add_row("exit code", str(trial.exit_code))
    table.add_row("value", f"{fmt.value(trial.value)} at step {fmt.param(trial.last_step)}")
    table.add_row("where", trial.placement or fmt.MISSING)
    if trial.peak_gpu_memory_mb is not None:  # only where NVML saw its processes on a GPU
        table.add_row("peak GPU memory", fmt.memory(trial.peak_gpu_memory_mb))
    table.add_row("duration", fmt.duration(trial_duration(trial, now)))
    table.add_row("checkpoint", trial.checkpoint or fmt.MISSING)
    return table


class TrialScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back"),
        Binding("g", "next_tab", "Tab"),
        Binding("m", "next_metric", "Metric"),
        Binding("x", "stop_trial", "Stop trial"),
    ]
    HELP = "Tabs: overview (params, reason, history), metrics (all of them), stdout, stderr."

    def __init__(self, ctx: TuiContext, study: StudyRecord, trial: TrialRecord) -> None:
        super().__init__()
        self.ctx = ctx
        self.study = study
        self.trial = trial
        self._points: dict[str, list[MetricPoint]] = defaultdict(list)
        self._events: list[EventRecord] = []
        self._metric: str = study.metric

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="trial-summary")
        with TabbedContent(id="trial-tabs"):
            with TabPane("Overview", id="overview"), VerticalScroll():
                yield Static(id="trial-info")
                yield Static(id="trial-history")
            with TabPane("Metrics", id="metrics"):
                table = VirtualTable(id="metric-table")
                table.set_columns(METRIC_COLUMNS)
                yield table
                yield Chart(id="metric-chart")
            with TabPane("stdout", id="stdout"):
                yield Log(max_lines=LOG_LINES, id="stdout-log")
            with TabPane("stderr", id="stderr"):
                yield Log(max_lines=LOG_LINES, id="stderr-log")
        yield CommandBar()
        yield KeysFooter()

    def on_mount(self) -> None:
        self.title = f"hpod · {self.study.name}#{self.trial.number}"
        self.sub_title = str(self.ctx.db_path)
        log_dir = trial_log_dir(self.ctx.db_path, self.study.name, self.trial.number)
        self.ctx.feed.subscribe(self, TrialInterest(self.trial.id, self.study.id, log_dir))
        self._show_trial()
        self.set_interval(1.0, self._show_summary)

    def on_unmount(self) -> None:
        self.ctx.feed.unsubscribe(self)

    # --- feed ---------------------------------------------------------------------------------

    def on_trial_updated(self, message: TrialUpdated) -> None:
        self.trial = message.trial
        self._show_trial()

    def on_trial_metrics(self, message: TrialMetrics) -> None:
        if message.reset:
            self._points.clear()
        for point in message.points:
            self._points[point.name].append(point)
        table = self.query_one("#metric-table", VirtualTable)
        for name in {p.name for p in message.points}:
            table.put_row(name, self._metric_row(name))
        table.set_order(sorted(self._points, key=lambda n: (n != self.study.metric, n)))
        self._draw_metric()
        self._show_summary()

    def on_trial_events(self, message: TrialEvents) -> None:
        self._events += message.events
        self._show_trial()

    def on_trial_log(self, message: TrialLog) -> None:
        log = self.query_one(f"#{message.stream}-log", Log)
        if message.reset:
            log.clear()
        log.write(message.text)

    # --- drawing ------------------------------------------------------------------------------

    def _show_trial(self) -> None:
        now = self.ctx.clock()
        self.query_one("#trial-info", Static).update(info_table(self.trial, now))
        self.query_one("#trial-history", Static).update(history(self.trial, self._events, now))
        self._show_summary()

    def _show_summary(self) -> None:
        t = self.trial
        parts = [f"{self.study.name}#{t.number}", t.state.value]
        if t.last_step is not None:
            parts.append(f"step {t.last_step}")
        parts.append(f"{self.study.metric} {fmt.value(t.value)}")
        parts.append(fmt.duration(trial_duration(t, self.ctx.clock())))
        if t.reason:  # in one line, a crash's last stderr line kept; the overview has it all
            parts.append(reason_in_one_line(t.reason))
        self.query_one("#trial-summary", Static).update("  ".join(parts))

    def _metric_row(self, name: str) -> Row:
        points = self._points[name]
        values = [p.value for p in points if p.value == p.value]  # NaN != NaN
        low, high = (min(values), max(values)) if values else (None, None)
        last = points[-1]
        cells = (name, str(len(points)), str(last.step), fmt.value(last.value), fmt.value(low),
                 fmt.value(high))  # fmt: skip
        return Row(cells, "running" if name == self._metric else None)

    def _draw_metric(self) -> None:
        points = self._points.get(self._metric, [])
        markers = tuple(rung_levels(self.study)) if self._metric == self.study.metric else ()
        plot = Plot(
            (Series(self._metric, [(p.step, p.value) for p in points]),),
            markers=markers,
            x_ticks=tuple((r, fmt.value(r, 3)) for r in markers) or None,
            title=f"{self._metric} by step · m: next metric",
            empty=f"no {self._metric} reported yet",
        )
        self.query_one("#metric-chart", Chart).show(plot)

    @on(VirtualTable.Highlighted, "#metric-table")
    def _metric_highlighted(self, event: VirtualTable.Highlighted) -> None:
        if event.key is not None and event.key != self._metric:
            self._select_metric(event.key)

    def _select_metric(self, name: str) -> None:
        table = self.query_one("#metric-table", VirtualTable)
        old, self._metric = self._metric, name
        for key in (old, name):
            if key in self._points:
                table.put_row(key, self._metric_row(key))
        table.move_to(name)
        self._draw_metric()

    # --- actions ------------------------------------------------------------------------------

    def action_back(self) -> None:
        self.dismiss()

    def action_next_tab(self) -> None:
        tabs = self.query_one("#trial-tabs", TabbedContent)
        tabs.active = TABS[(TABS.index(tabs.active) + 1) % len(TABS)]

    def action_next_metric(self) -> None:
        names = sorted(self._points, key=lambda n: (n != self.study.metric, n))
        if names:
            index = names.index(self._metric) if self._metric in names else -1
            self._select_metric(names[(index + 1) % len(names)])
            self.query_one("#trial-tabs", TabbedContent).active = "metrics"

    def action_stop_trial(self) -> None:
        if self.trial.state.is_finished():
            self.notify(f"trial #{self.trial.number} is already {self.trial.state.value}",
                        severity="warning")  # fmt: skip
            return
        request = CommandRequest(CommandAction.STOP_TRIAL, self.study.name, self.trial.number)
        confirm_and_send(self, self.ctx.db_path, request)
