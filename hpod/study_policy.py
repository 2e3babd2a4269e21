"""A study's search policy: which point to try next (suggester), whether a running trial goes
on (scheduler), and when the budget is spent. Pure and synchronous; the controller acts on it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

from hpod.cost_feed import CostFeed
from hpod.decision import Decision
from hpod.repeats import RepeatedScheduler, RepeatGroups
from hpod.rung_feed import RungFeed
from hpod.schedule import SCHEDULER_OPTIONS, Scheduler, make_scheduler
from hpod.schedule.base import Ended, Event, Reported, Started
from hpod.schedule.rungs import reached
from hpod.spec import StudySpec
from hpod.spec_sections import SchedulerSpec
from hpod.store.records import MetricPoint, StudyRecord, TrialRecord, TrialState
from hpod.suggest import make_suggester
from hpod.suggest.base import CostAware, Suggester
from hpod.suggester_defaults import suggester_options

# How long a trial waits for the answer to a report when the scheduler may stop it. Long
# enough for a busy daemon to answer, short enough that a stalled daemon does not stall GPUs.
DECISION_TIMEOUT = 10.0


class StudyPolicy:
    def __init__(self, spec: StudySpec, *, suggester: Suggester | None = None,
                 scheduler: Scheduler | None = None) -> None:
        self.spec = spec
        self.suggester = suggester if suggester is not None else build_suggester(spec)
        self.scheduler = scheduler if scheduler is not None else build_scheduler(spec)
        repeats = spec.trial.repeats
        # With repeats, the scheduler and the suggester judge configurations (hpod.repeats).
        self._judge: Scheduler | RepeatedScheduler | None = self.scheduler
        if repeats > 1 and self.scheduler is not None:
            self._judge = RepeatedScheduler(self.scheduler, repeats)
        self._groups = RepeatGroups(repeats) if repeats > 1 else None
        # With repeats a rung value is one run's, not the configuration's mean: not fed.
        self._rungs = RungFeed() if self.scheduler is not None and repeats == 1 else None
        self._costs = CostFeed() if tells_costs(spec, self.suggester) else None

    def updated(self, spec: StudySpec) -> StudyPolicy:
        """The policy under a live edit of the study file (budget, parallel, ...): the same
        suggester, scheduler and configurations; the edit refuses a change of those."""
        policy = StudyPolicy(spec, suggester=self.suggester, scheduler=self.scheduler)
        policy._judge, policy._groups, policy._rungs = self._judge, self._groups, self._rungs
        policy._costs = self._costs
        return policy

    @property
    def decision_timeout(self) -> float:
        # Under fifo no report can end a trial, so trials need not wait for the answer: their
        # reporting rate is then bound by the pipe, not by a round trip per report.
        return 0.0 if self.scheduler is None else DECISION_TIMEOUT

    def budget_spent(self, study: StudyRecord, n_created: int) -> bool:
        budget = self.spec.budget
        if budget.trials is not None and n_created >= budget.trials:
            return True
        left = self.seconds_until_budget_ends(study)
        return left is not None and left <= 0

    def seconds_until_budget_ends(self, study: StudyRecord) -> float | None:
        if self.spec.budget.hours is None:
            return None
        return study.created_at + self.spec.budget.hours * 3600.0 - time.time()

    def decide(self, trial_id: int, step: float, value: float, resumable: bool = True) -> Decision:
        """The scheduler's answer to a report. `resumable` False: the trial cannot checkpoint,
        so it is never paused (it gets the stop-mode answer; see Scheduler.cannot_pause)."""
        if self._judge is None:
            return Decision.CONTINUE
        if not resumable and self._judge is self.scheduler:
            self.scheduler.cannot_pause(trial_id)
        if self._rungs is None or self.scheduler is None:
            return self._judge.on_report(trial_id, step, value)
        heading_to = self.scheduler.next_milestone(trial_id)
        decision = self._judge.on_report(trial_id, step, value)
        if heading_to is not None and self.scheduler.next_milestone(trial_id) != heading_to:
            self._rungs.entered(trial_id, entered_level(self.scheduler, step), value)
        return decision

    @property
    def tells_costs(self) -> bool:
        """Whether the suggester is told what each trial costs (timed_report)."""
        return self._costs is not None

    def timed_report(self, trial_id: int, resource: float, seconds: float) -> None:
        """A report at `resource`, `seconds` after the trial's latest start: what the trial
        costs (hpod.cost_feed), told to the suggester with the rung values."""
        if self._costs is not None:
            self._costs.reported(trial_id, resource, seconds)

    def on_start(self, trial: TrialRecord) -> None:
        if self._rungs is not None:
            self._rungs.started(trial)
        if self._costs is not None:
            self._costs.started(trial)
        if isinstance(self._judge, RepeatedScheduler):
            self._judge.on_start(trial)
        elif self._judge is not None:
            self._judge.on_start(trial.id)

    def on_end(self, trial: TrialRecord) -> None:
        if self._rungs is not None:
            self._rungs.ended(trial.id)
        if self._costs is not None:
            self._costs.ended(trial.id)
        if isinstance(self._judge, RepeatedScheduler):
            self._judge.on_end(trial)
        elif self._judge is not None:
            self._judge.on_complete(trial.id)

    def config_stopped(self, trial: TrialRecord) -> bool:
        """The scheduler stopped this run's configuration (with repeats): it need not start."""
        return isinstance(self._judge, RepeatedScheduler) and \
            self._judge.is_stopped(trial.config_number)

    def observe(self, trial: TrialRecord) -> TrialRecord | None:
        """Tell the suggester about a finished trial; failures are remembered, not modelled.

        With repeats, a run only counts once all the runs of its configuration have ended: the
        suggester then sees their mean. Returns the record observed (None: not yet).

        Rung values queued since the last call (hpod.rung_feed) are told first: the controller
        calls this under its suggest lock, so they never race a suggestion in its thread."""
        self.tell_rungs()
        if self._groups is not None:
            combined = self._groups.add(trial)
            if combined is None:
                return None
            trial = combined
        if trial.state is TrialState.COMPLETE:
            self.suggester.observe(trial.params, _finite(trial.value))
        elif trial.state is TrialState.FAILED:
            self.suggester.observe(trial.params, None)
        elif trial.state is TrialState.STOPPED:
            # A trial stopped early carries a value at a lower resource (ASHA's rung): the rung
            # it last entered, as the rung feed told it; else the report's step.
            resource = self._rungs.last_level(trial.id) if self._rungs is not None else None
            if resource is None and trial.last_step is not None:
                resource = float(trial.last_step)
            self.suggester.observe(trial.params, _finite(trial.value), resource)
        return trial

    def tell_rungs(self) -> None:
        """Tell the suggester the rung values of running trials, and the trials' costs, queued
        since the last call."""
        if self._rungs is not None:
            for params, value, resource in self._rungs.drain():
                self.suggester.observe(params, value, resource)
        if self._costs is not None:
            rates, overhead = self._costs.drain()
            suggester: CostAware = self.suggester  # type: ignore[assignment]
            for params, seconds_per_unit in rates:
                suggester.observe_cost(params, seconds_per_unit)
            if overhead is not None:
                suggester.observe_overhead(overhead.startup, overhead.resource)

    def replay_costs(self, trials: Sequence[TrialRecord],
                     metrics: Mapping[int, Sequence[MetricPoint]]) -> None:
        """After a restart: the costs of past trials from their stored reports."""
        if self._costs is not None:
            self._costs.rebuilt(trials, metrics, self.spec.objective.metric,
                                self.spec.scheduler.resource)

    def replay(self, events: list[Event], trials: Sequence[TrialRecord] = ()) -> None:
        """Rebuild the scheduler's rungs after a restart from the stored history, in order."""
        if isinstance(self._judge, RepeatedScheduler):
            self._judge.replay(events, trials)
        elif self._judge is not None:
            self._judge.replay(events)
            if self._rungs is not None:
                self._rungs.rebuilt(self._judge.rungs_snapshot(), trials)

    def next_resume(self) -> int | None:
        """A paused trial the scheduler promotes now (it runs again before any new point)."""
        return self._judge.next_resume() if self._judge is not None else None

    def take_stopped(self) -> list[int]:
        """Paused trials the scheduler will never promote: they are stopped for good."""
        return self._judge.take_stopped() if self._judge is not None else []

    def no_more_trials(self) -> None:
        if self._judge is not None:
            self._judge.on_no_more_trials()


def entered_level(scheduler: Scheduler, step: float) -> float:
    """The rung a report at `step` entered: the highest level it reached (a report that jumps
    over rungs counts for the highest one, hpod.schedule.rungs), so that a value is told at
    the same level live and after a restart. Rung schedulers expose their ladder as `levels`;
    the others never move a milestone."""
    reached_levels = [lv for lv in getattr(scheduler, "levels", ()) if reached(step, lv)]
    return float(max(reached_levels)) if reached_levels else float(step)


def tells_costs(spec: StudySpec, suggester: Suggester) -> bool:
    """Whether the study's suggester learns what points cost (EI per second). Under `cost =
    "auto"` (the default) only when the budget is time (hours, or no budget at all): there a
    cheaper point leaves time for more, while under a number of trials each one counts the
    same, whatever it costs."""
    if not isinstance(suggester, CostAware):
        return False
    cost = spec.suggester.options.get("cost", "auto")
    if cost == "auto":
        return spec.budget.hours is not None or spec.budget.trials is None
    return cost == "on"


def build_suggester(spec: StudySpec) -> Suggester:
    return make_suggester(
        spec.suggester.kind,
        spec.space,
        seed=spec.seed,
        direction=spec.objective.direction.value,
        **suggester_options(spec.suggester, spec.scheduler),
    )


def build_scheduler(spec: StudySpec) -> Scheduler | None:
    """The study's scheduler; None for fifo, where no report can change a trial's course."""
    return scheduler_of(spec.scheduler, spec.objective.direction.value, spec.seed)


def scheduler_of(options: SchedulerSpec, direction: str, seed: int | None) -> Scheduler | None:
    """The scheduler a [scheduler] table makes. Its common fields go to the kinds that take
    them; what `options` names goes to the kind as it is, so a name it does not take is an
    error (ValueError), not silently ignored."""
    if options.kind == "fifo":
        return None
    common: dict[str, Any] = {
        "direction": direction,
        "min_resource": options.min_resource,
        "max_resource": options.max_resource,
        "reduction_factor": options.reduction_factor,
        "mode": options.mode,
        "brackets": options.brackets,
        "grace": options.grace,
        "seed": seed,
    }
    accepted = SCHEDULER_OPTIONS[options.kind]
    return make_scheduler(options.kind, **{**{k: v for k, v in common.items() if k in accepted},
                                           **options.options})


def history_events(
    trials: Sequence[TrialRecord],
    metrics: Mapping[int, Sequence[MetricPoint]],
    objective: str,
    resource: str | None,
) -> list[Event]:
    """The scheduler's view of a study's past, in time order: starts, reports, ends.

    Every stored report carrying the objective is one Reported, also a step reported again by
    a trial resumed from scratch: the live scheduler saw (and ignored) it too. A report's step
    is the `resource` metric of the same report when the study names one.

    The store keeps a trial's creation and its latest start, not every start: a trial paused
    and promoted, or requeued after a kill, started several times. Its first start is replayed
    at its creation (trials start in creation order, which bracket assignment depends on), and
    its latest one where it happened when it reported before it. Starts in between are
    inferred by the scheduler's replay: a paused trial's next report means it was resumed.
    """
    timed: list[tuple[float, int, Event]] = []
    for trial in trials:
        if trial.started_at is None:
            continue
        # The metrics of one report share their time: (time, step) is the report.
        reports: dict[tuple[float, int], dict[str, MetricPoint]] = {}
        for point in metrics.get(trial.id, ()):
            reports.setdefault((point.time, point.step), {})[point.name] = point
        first = min((when for when, _step in reports), default=trial.started_at)
        timed.append((min(trial.created_at, trial.started_at, first), 0, Started(trial.id)))
        if first < trial.started_at:
            timed.append((trial.started_at, 0, Started(trial.id)))
        for (when, step), named in reports.items():
            reported = named.get(objective)
            if reported is None:
                continue
            position = named[resource].value if resource and resource in named else step
            timed.append((when, 1, Reported(trial.id, float(position), reported.value)))
        if trial.state.is_finished() and trial.finished_at is not None:
            timed.append((trial.finished_at, 2, Ended(trial.id)))
    # Stable: events at the same moment keep the trials' order (creation order).
    timed.sort(key=lambda item: (item[0], item[1]))
    return [event for _time, _order, event in timed]


def _finite(value: float | None) -> float | None:
    if value is None or math.isnan(value) or math.isinf(value):
        return None
    return value
