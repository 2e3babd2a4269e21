"""StudyScreen: one study's trials (sortable, filterable, live) and its charts."""

from __future__ import annotations

import dataclasses
import logging
import time
from typing import ClassVar

from hpod.store import CommandAction, StudyRecord
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Header, Input, Static, TabbedContent, TabPane
from textual.worker import Worker, WorkerState

from .. import format as fmt
from .. import param_importance
from ..context import TuiContext
from ..controls import CommandRequest, confirm_and_send, toggle_pause
from ..messages import CurvesUpdated, StepValues, StudyUpdated, TrialsUpdated
from ..model import StudySummary, elapsed, estimate_left, param_names, spec_section
from ..plots import best_plot, curves_plot, params_plot
from ..watch_study import StudyInterest
from ..widgets.chart import Chart
from ..widgets.footer import KeysFooter
from ..widgets.points import Points
from ..widgets.status import CommandBar
from ..widgets.table import VirtualTable
from ..widgets.trial_table import TrialTable
from .trial import TrialScreen

logger = logging.getLogger(__name__)

LAYOUTS = ("split", "table", "charts")
CHART_TABS = ("curves", "best", "params")


class StudyScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back"),
        Binding("enter", "open", "Open trial", show=False),
        Binding("space", "mark", "Compare"),
        Binding("c", "clear_marks", "Clear marks", show=False),
        Binding("s", "sort", "Sort"),
        Binding("r", "reverse", "Reverse", show=False),
        Binding("slash", "filter", "Filter"),
        Binding("g", "next_chart", "Chart"),
        Binding("v", "layout", "Layout", show=False),
        Binding("left_square_bracket", "param(-1)", "Prev param", show=False),
        Binding("right_square_bracket", "param(1)", "Next param", show=False),
        Binding("x", "stop_trial", "Stop trial"),
        Binding("p", "pause", "Pause/resume", show=False),
        Binding("X", "stop_study", "Stop study", show=False),
    ]
    HELP = (
        "Filter: words that must all appear in a row, e.g. `running`, `lr=0.01`, `#12`, `gpu:1`.\n"
        "Curves show the trial under the cursor and the marked ones; dotted lines are rungs."
    )

    def __init__(self, ctx: TuiContext, study: StudyRecord) -> None:
        super().__init__()
        self.ctx = ctx
        self.study = study
        self.summary: StudySummary | None = None
        self._params = param_names(study)
        self._param_index = 0
        self._param_chosen = False  # by the user with [ ]: importance no longer picks it
        self._importance: param_importance.Reading | None = None
        # What it was computed from: complete trials and values at a step (-1: never).
        self._importance_for = (-1, -1)
        self._step_values: StepValues | None = None
        self._step_values_seen = 0  # StepValues messages handled
        self._wants_step_values = False  # the last computation found too few complete trials
        self._importance_at = -float("inf")  # time.monotonic() its last computation started
        self._importance_cost = 0.0  # seconds the last computation took
        self._marked: set[int] = set()
        # Columns, not lists of points: a running trial's curve grows by thousands a second
        # and is redrawn on every update (see widgets/decimate.py).
        self._curves: dict[int, Points] = {}
        self._interest = StudyInterest(study.id)
        self._loading = True
        self._charts_dirty = True

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="study-summary")
        yield Input(placeholder="filter: words that must all appear (esc clears)", id="filter")
        with Vertical(id="study-body", classes="-split"):
            yield TrialTable(self.ctx.clock, id="trials")
            with TabbedContent(id="charts"):
                with TabPane("Curves", id="curves"):
                    yield Chart(id="curves-chart")
                with TabPane("Best so far", id="best"):
                    yield Chart(id="best-chart")
                with TabPane("Params", id="params"):
                    yield Chart(id="params-chart")
        yield CommandBar()
        yield KeysFooter()

    def on_mount(self) -> None:
        self.title = f"hpod · {self.study.name}"
        self.sub_title = str(self.ctx.db_path)
        repeats = spec_section(self.study, "trial").get("repeats", 1)
        self.table.configure(self.study.metric, self._params,
                             repeats=isinstance(repeats, int) and repeats > 1)
        self.table.focus()
        self._show_filter(False)
        self._show_summary()
        self.ctx.feed.subscribe(self, self._interest)
        self.set_interval(1.0, self._tick)

    def on_unmount(self) -> None:
        self.ctx.feed.unsubscribe(self)

    @property
    def table(self) -> TrialTable:
        return self.query_one("#trials", TrialTable)

    # --- feed ---------------------------------------------------------------------------------

    def on_study_updated(self, message: StudyUpdated) -> None:
        self.summary = message.summary
        self.study = message.summary.study
        best = message.summary.best
        self.table.set_best(best.id if best else None)
        self._show_summary()

    def on_trials_updated(self, message: TrialsUpdated) -> None:
        table = self.table
        had_rows = table.row_count > 0
        table.apply(message.trials, message.stats)
        self._loading = message.loading
        if message.trials:
            self._charts_dirty = True
        if not had_rows and table.row_count:
            self._follow_cursor()
        self._show_summary()

    def on_step_values(self, message: StepValues) -> None:
        self._step_values = message
        self._step_values_seen += 1

    def _ask_step_values(self) -> None:
        """Only while the complete trials are too few and the params chart shows: the feed
        reads the whole study."""
        shown = self.query_one("#charts", TabbedContent).active == "params"
        wanted = self._wants_step_values and shown
        if wanted != self._interest.step_values:
            self._subscribe(dataclasses.replace(self._interest, step_values=wanted))

    def _subscribe(self, interest: StudyInterest) -> None:
        self._interest = interest
        self.ctx.feed.subscribe(self, interest)

    def on_curves_updated(self, message: CurvesUpdated) -> None:
        for trial_id in message.reset:
            self._curves[trial_id] = Points()
        for trial_id, points in message.points.items():
            if trial_id in self._interest.curves:
                curve = self._curves.setdefault(trial_id, Points())
                curve.extend(points)
        self._draw_curves()

    def _tick(self) -> None:
        self.table.tick()
        self._show_summary()
        if self._charts_dirty:
            self._draw_charts()
        elif self.query_one("#charts", TabbedContent).active == "params":
            self._refresh_importance()

    # --- parameter importance -----------------------------------------------------------------

    def _refresh_importance(self) -> None:
        """Compute it again in a worker once more trials completed (or new values at a step
        came), at most every param_importance.wait_after(the last one's cost) seconds."""
        complete = self.summary.counts.complete if self.summary else 0
        now = time.monotonic()
        inputs = (complete, self._step_values_seen)
        if inputs == self._importance_for or now - self._importance_at < \
                param_importance.wait_after(self._importance_cost):
            return
        if any(w.group == "importance" and w.is_running for w in self.workers):
            return
        self._importance_for, self._importance_at = inputs, now
        study, trials, at_step = self.study, list(self.table.trials()), self._step_values
        self.run_worker(lambda: param_importance.compute(study, trials, at_step), thread=True,
                        group="importance", exit_on_error=False)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        worker = event.worker
        if worker.group != "importance":
            return
        if event.state in (WorkerState.SUCCESS, WorkerState.ERROR):
            self._importance_cost = time.monotonic() - self._importance_at
        if event.state is WorkerState.ERROR:
            logger.warning("parameter importance failed: %s", worker.error)
        elif event.state is WorkerState.SUCCESS and isinstance(worker.result,
                                                                param_importance.Reading):
            reading = worker.result
            self._wants_step_values = reading.wants_step_values
            self._ask_step_values()
            if reading.importance is None:
                # Nothing was fitted, so nothing costly to wait after: the next results (the
                # values at a step it just asked for) are taken at once.
                self._importance_at = -float("inf")
                return
            self._importance = reading
            current = self._params[self._param_index] if self._params else None
            self._params = param_importance.ranked(self._params, reading.importance)
            if current is not None and self._param_chosen:
                self._param_index = self._params.index(current)
            else:
                self._param_index = 0  # the most important first, until the user picks
            self._charts_dirty = True

    # --- drawing ------------------------------------------------------------------------------

    def _show_summary(self) -> None:
        summary, now = self.summary, self.ctx.clock()
        study = self.study
        parts = [f"{study.name} {study.state.value}"]
        if summary is not None:
            c = summary.counts
            # The words of the studies table: done = complete; the other ends by name.
            counts = [f"{c.running} run", f"{c.complete} done"]
            counts += [f"{n} {w}" for n, w in ((c.stopped, "stopped"), (c.failed, "failed"),
                                                (c.paused, "paused"),
                                                (c.interrupted, "interrupted"),
                                                (c.queued, "queued")) if n]
            parts.append(" ".join(counts))
            if summary.best is not None:
                parts.append(f"best {fmt.value(summary.best.value)} (#{summary.best.number})")
            clock = fmt.duration(elapsed(study, now))
            left = estimate_left(summary, now)
            parts.append(clock + (f", ~{fmt.duration(left)} left" if left is not None else ""))
        table = self.table
        if table.filter_text:
            parts.append(f"filter '{table.filter_text}': {table.row_count}/{table.total}")
        if self._loading:
            parts.append("reading metrics…")
        self.query_one("#study-summary", Static).update(" · ".join(parts))

    def _draw_charts(self) -> None:
        self._charts_dirty = False
        active = self.query_one("#charts", TabbedContent).active
        best_id = self.summary.best.id if self.summary and self.summary.best else None
        # Only the visible chart is rebuilt: a scan of 10 000 trials is not free.
        if active == "best":
            plot = best_plot(self.study, self.table.trials(), self.ctx.clock())
            self.query_one("#best-chart", Chart).show(plot)
        elif active == "params":
            name = self._params[self._param_index] if self._params else None
            plot = params_plot(self.study, self.table.trials(), name, best_id,
                               param_importance.note(self._importance, name or ""),
                               self._importance.at_step if self._importance else None)
            self.query_one("#params-chart", Chart).show(plot)
            self._refresh_importance()
        else:
            self._draw_curves()

    def _draw_curves(self) -> None:
        numbers = {tid: t.number for tid in self._curves if (t := self.table.trial(str(tid)))}
        focus = self.table.trial(self.table.cursor_key)
        plot = curves_plot(self.study, self._curves, numbers, focus.id if focus else None)
        self.query_one("#curves-chart", Chart).show(plot)

    @on(TabbedContent.TabActivated, "#charts")
    def _tab_changed(self) -> None:
        self._ask_step_values()
        self._draw_charts()

    # --- selection ----------------------------------------------------------------------------

    @on(VirtualTable.Highlighted, "#trials")
    def _follow_cursor(self) -> None:
        focus = self.table.trial(self.table.cursor_key)
        wanted = set(self._marked)
        if focus is not None:
            wanted.add(focus.id)
        curves = frozenset(wanted)
        if curves != self._interest.curves:
            for gone in set(self._curves) - curves:
                del self._curves[gone]
            self._subscribe(dataclasses.replace(self._interest, curves=curves))
        self._draw_curves()

    @on(VirtualTable.Selected, "#trials")
    def action_open(self) -> None:
        trial = self.table.trial(self.table.cursor_key)
        if trial is not None:
            self.app.push_screen(TrialScreen(self.ctx, self.study, trial))

    def action_mark(self) -> None:
        trial = self.table.trial(self.table.cursor_key)
        if trial is None:
            return
        self._marked ^= {trial.id}
        self.table.set_marked(str(tid) for tid in self._marked)
        self._follow_cursor()

    def action_clear_marks(self) -> None:
        self._marked.clear()
        self.table.set_marked(())
        self._follow_cursor()

    # --- sorting, filtering, layout -----------------------------------------------------------

    def action_sort(self) -> None:
        column = self.table.cycle_sort()
        label = next(c.label for c in self.table.columns if c.key == column)
        self.notify(f"sorted by {label}", timeout=1.5)

    def action_reverse(self) -> None:
        self.table.sort_by(self.table.sort_column, not self.table.sort_reverse)

    @on(VirtualTable.HeaderClicked, "#trials")
    def _header_clicked(self, event: VirtualTable.HeaderClicked) -> None:
        self.table.sort_by(event.column)

    def _show_filter(self, shown: bool) -> Input:
        box = self.query_one("#filter", Input)
        # Hidden, it must not take focus either: a modal closing hands focus back to the first
        # widget that can take it, and keys typed into an invisible filter empty the table.
        box.display = shown
        box.disabled = not shown
        return box

    def action_filter(self) -> None:
        self._show_filter(True).focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.table.set_filter(event.value)
        self._show_summary()

    @on(Input.Submitted, "#filter")
    def _filter_done(self) -> None:
        self.table.focus()

    def action_back(self) -> None:
        box = self.query_one("#filter", Input)
        if box.has_focus or box.value:
            box.value = ""
            self._show_filter(False)
            self.table.focus()
            return
        self.dismiss()

    def action_next_chart(self) -> None:
        tabs = self.query_one("#charts", TabbedContent)
        tabs.active = CHART_TABS[(CHART_TABS.index(tabs.active) + 1) % len(CHART_TABS)]

    def action_layout(self) -> None:
        body = self.query_one("#study-body", Vertical)
        current = next((name for name in LAYOUTS if body.has_class(f"-{name}")), "split")
        following = LAYOUTS[(LAYOUTS.index(current) + 1) % len(LAYOUTS)]
        body.set_classes(f"-{following}")
        # The keys go where the eyes are: the table when it shows, else the charts' tabs.
        if following == "charts":
            self.query_one("#charts", TabbedContent).focus()
        else:
            self.table.focus()

    def action_param(self, delta: int) -> None:
        if self._params:
            self._param_chosen = True
            self._param_index = (self._param_index + delta) % len(self._params)
            self.query_one("#charts", TabbedContent).active = "params"
            self._draw_charts()

    # --- controls -----------------------------------------------------------------------------

    def action_stop_trial(self) -> None:
        trial = self.table.trial(self.table.cursor_key)
        if trial is None:
            return
        if trial.state.is_finished():
            self.notify(f"trial #{trial.number} is already {trial.state.value}", severity="warning")
            return
        request = CommandRequest(CommandAction.STOP_TRIAL, self.study.name, trial.number)
        confirm_and_send(self, self.ctx.db_path, request)

    def action_pause(self) -> None:
        confirm_and_send(self, self.ctx.db_path, toggle_pause(self.study))

    def action_stop_study(self) -> None:
        request = CommandRequest(CommandAction.STOP_STUDY, self.study.name)
        confirm_and_send(self, self.ctx.db_path, request)
