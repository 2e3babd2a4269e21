"""`hpod simulate`: replay a study on a virtual clock with the daemon's own search code.

The study file is loaded as the daemon loads it; its suggester and scheduler come from the same
StudyPolicy the daemon's controller uses, and `_Driver` makes the controller's calls to it (start,
report -> decision, record and observe, promote, stop paused losers) from the simulator in
`hpod.schedule.simulate`, whose slot-filling rule is the controller's. What trains is a learning
curve per trial: synthetic curves over the study's space (`hpod.schedule.landscape`), or curves
a real run of the study recorded in a store (`hpod.recorded_curves`). Nothing sleeps: a night
of tuning replays in seconds, the same every time for the same seed.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from hpod.decision import Decision
from hpod.enqueue import complete_point
from hpod.errors import SearchExhausted, StudySpecError
from hpod.schedule.landscape import SyntheticCurves
from hpod.schedule.rank_agreement import LevelAgreement, rank_agreement
from hpod.schedule.simulate import Curve, SimulationResult, simulate
from hpod.spec import StudySpec
from hpod.store.records import Direction, TrialRecord, TrialState
from hpod.study_policy import StudyPolicy

logger = logging.getLogger(__name__)

# A study whose budget is hours only may start thousands of trials: the simulation starts at
# most this many unless told otherwise (a GP suggestion costs ~0.1 s at a few hundred points).
DEFAULT_TRIAL_CAP = 1000
_LENGTH_KEYS = ("epochs", "epoch")


class SimulationError(StudySpecError):
    """The study cannot be simulated as asked; names the file, the field and the fix."""


class CurveSource(Protocol):
    """Where simulated trials' curves come from. A source whose curves carry their own length
    (a recorded run) sets `own_length = True`: the simulation then never asks how long a trial
    trains, which a study without [scheduler] max_resource or `epochs` cannot say."""

    def curve(self, params: Mapping[str, Any], max_resource: float | None = None) -> Curve: ...


@dataclass(frozen=True)
class StudySimulation:
    spec: StudySpec
    workers: int
    curves: str  # "synthetic" or the store's path
    seed: int
    result: SimulationResult
    params: tuple[dict[str, Any], ...]  # trial i's params
    capped: int | None  # the trial cap applied to a budget of hours only, else None
    notes: tuple[str, ...] = ()  # where the simulation differs from the study as written
    # How well each rung level ranks curves against their final values (empty without rungs):
    # is stopping at the rungs a good bet? Over the synthetic curves the simulation trained, or
    # over every complete curve of a recorded run.
    rank_agreement: tuple[LevelAgreement, ...] = ()

    @property
    def maximize(self) -> bool:
        return self.spec.objective.direction is Direction.MAXIMIZE

    def best_trial(self) -> tuple[int, float, float] | None:
        """(trial, value, virtual time it completed) of the best complete trial."""
        done = [t for t in self.result.trials if t.state is TrialState.COMPLETE
                and t.last_value is not None and math.isfinite(t.last_value)]
        if not done:
            return None
        sign = -1.0 if self.maximize else 1.0
        best = min(done, key=lambda t: (sign * t.last_value, t.ended_at))  # type: ignore[operator]
        return best.trial_id, best.last_value, best.ended_at  # type: ignore[return-value]

    def timeline(self, rows: int = 10) -> list[dict[str, Any]]:
        """What the study had done by evenly spaced virtual times up to its end."""
        total = self.result.total_time
        out = []
        for k in range(1, rows + 1):
            at = total * k / rows
            ended = [t for t in self.result.trials if t.ended_at is not None and t.ended_at <= at]
            out.append({
                "time": at,
                "started": sum(t.started_at <= at for t in self.result.trials),
                "stopped": sum(t.state is TrialState.STOPPED for t in ended),
                "complete": sum(t.state is TrialState.COMPLETE for t in ended),
                "best": self.result.best_at(at),
            })
        return out


def simulate_study(spec: StudySpec, *, workers: int | None = None,
                   curves: CurveSource | None = None, curves_label: str = "synthetic",
                   seed: int = 0, max_trials: int | None = None,
                   max_seconds: float | None = None, launch_seconds: float = 0.0,
                   resumable: bool = True,
                   policy: Callable[[StudySpec], StudyPolicy] = StudyPolicy) -> StudySimulation:
    """Replay `spec` with `workers` virtual workers (default: its `parallel`).

    `curves` default to SyntheticCurves(seed=seed) over the study's space. The suggester is
    seeded with the study's seed, or `seed` when the file sets none. `max_trials` overrides the
    budget's trials; `max_seconds` cuts the study at that virtual time, running trials and
    all. `resumable` False plays trials that cannot checkpoint (never paused).
    """
    workers = spec.parallel if workers is None else workers
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"`workers` must be an integer >= 1, got {workers!r}")
    notes = []
    if spec.seed is None:
        spec = dataclasses.replace(spec, seed=seed)
    if spec.trial.repeats > 1:
        # Replayed curves give every run of a point the same values: repeats would add nothing.
        spec = dataclasses.replace(spec, trial=dataclasses.replace(spec.trial, repeats=1))
        notes.append("[trial] repeats are not simulated: each configuration runs once")
    if curves is None:
        curves = synthetic_curves(spec, seed=seed)
    length = _own_length if getattr(curves, "own_length", False) else trial_length(spec)
    hours = spec.budget.hours
    trials = spec.budget.trials if max_trials is None else max_trials
    capped = None
    if trials is None:
        trials = capped = DEFAULT_TRIAL_CAP
        why = ("the budget gives only hours" if hours is not None else
               "the study has no trial budget (it ends when its grid is exhausted)")
        notes.append(f"{why}: at most {capped} trials start (--trials changes it)")
    driver = _Driver(spec, policy(spec), curves, length, resumable, launch_seconds)
    if driver.policy.tells_costs:
        notes.append("the GP weighs each point by its predicted cost (expected improvement per "
                     "second), timed on the virtual clock: the budget is time; "
                     "[suggester] cost = \"off\" turns it off")
    started = time.perf_counter()
    result = simulate(driver, driver.next_curve, workers=workers, max_trials=trials,
                      max_seconds=max_seconds, launch_seconds=launch_seconds,
                      on_leave=driver.leave,
                      start_until=None if hours is None else hours * 3600.0)
    logger.debug("simulated %d trials of %s in %.2f s", len(result.trials), spec.name,
                 time.perf_counter() - started)
    levels = getattr(driver.policy.scheduler, "levels", ())
    # A recorded source holds every complete curve of a real run: measure on all of them, not
    # only on those the suggester happened to land near (nor each of those several times).
    recorded = getattr(curves, "curves", None)
    sample = (list(recorded) if recorded is not None else
              [curves.curve(record.params, length(record.params)) for record in driver.records])
    agreement = rank_agreement(sample, levels,
                               maximize=spec.objective.direction is Direction.MAXIMIZE)
    return StudySimulation(spec, workers, curves_label, seed, result,
                           tuple(record.params for record in driver.records), capped,
                           tuple(notes), tuple(agreement))


def synthetic_curves(spec: StudySpec, *, seed: int = 0, **options: Any) -> SyntheticCurves:
    """The synthetic curves `hpod simulate` replays for `spec` (options: noise, cost_spread,
    epoch_seconds)."""
    sched = spec.scheduler
    top = sched.max_resource
    if top is None:  # trials as long as their own `epochs`; the landscape's scale is the largest
        name = _length_key(spec)
        fixed = spec.space.fixed.get(name)
        high = getattr(spec.space.param(name), "high", 1) if fixed is None else fixed
        top = float(high)
    return SyntheticCurves(spec.space, max_resource=top, min_resource=sched.min_resource,
                           maximize=spec.objective.direction is Direction.MAXIMIZE, seed=seed,
                           **options)


def trial_length(spec: StudySpec) -> Callable[[Mapping[str, Any]], float | None]:
    """How far a trial of `spec` trains: [scheduler] max_resource, else its `epochs` value."""
    if spec.scheduler.max_resource is not None:
        return _own_length
    name = _length_key(spec)

    def length(params: Mapping[str, Any]) -> float:
        return float(params[name])

    return length


def _own_length(params: Mapping[str, Any]) -> None:
    return None  # the curve source's own length


def _length_key(spec: StudySpec) -> str:
    names = [spec.scheduler.resource] if spec.scheduler.resource else []
    for name in [*names, *_LENGTH_KEYS]:
        value = spec.space.fixed.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            return name
        if name in {p.name for p in spec.space.params} and \
                getattr(spec.space.param(name), "low", 0) > 0:
            return name
    raise SimulationError(
        "hpod simulate needs to know how long a full trial trains", path=str(spec.path),
        field="scheduler.max_resource",
        fix="set [scheduler] max_resource = <the epochs of a full trial>, or give the trials "
            "a number `epochs` in [space]")


class _Driver:
    """The controller's side: a Scheduler for the simulator, made of the study's policy."""

    def __init__(self, spec: StudySpec, policy: StudyPolicy, curves: CurveSource,
                 length: Callable[[Mapping[str, Any]], float | None], resumable: bool,
                 launch_seconds: float = 0.0) -> None:
        self.spec = spec
        self.policy = policy
        self.direction = spec.objective.direction.value
        self._curves = curves
        self._length = length
        self._resumable = resumable
        self.records: list[TrialRecord] = []
        self._live: set[int] = set()  # running or paused: their points are pending
        self._paused: set[int] = set()
        self._launch_seconds = launch_seconds
        # Each report is timed on the virtual clock, as the daemon times it on the wall clock
        # (hpod.cost_feed): the launch, then one curve step per report since the latest start.
        self._curve_of: dict[int, Curve] = {}
        self._reports_since_start: dict[int, int] = {}

    # -- where points come from (the controller's _next_trial, minus requeues) ---------------
    def next_curve(self, index: int) -> Curve | None:
        enqueued = self.spec.enqueue[index] if index < len(self.spec.enqueue) else None
        pending = [self.records[i].params for i in sorted(self._live)]
        self.policy.tell_rungs()
        try:
            suggestion = self.policy.suggester.suggest(pending)
        except SearchExhausted:
            if enqueued is None or len(enqueued) < self.spec.space.dim:
                return None
            suggestion = dict(enqueued)
        params = suggestion if enqueued is None else complete_point(self.spec.space, enqueued,
                                                                    suggestion)
        self.records.append(TrialRecord(
            id=index, study_id=0, number=index, params=params, state=TrialState.QUEUED,
            attempt=0, value=None, last_step=None, reason=None, exit_code=None, checkpoint=None,
            placement=None, created_at=0.0, started_at=None, finished_at=None,
            origin=None if enqueued is None else f"file:{index}"))
        curve = self._curves.curve(params, self._length(params))
        self._curve_of[index] = curve
        return curve

    # -- the Scheduler contract, as the controller calls the policy --------------------------
    def on_start(self, trial_id: int) -> None:
        self._reports_since_start[trial_id] = 0
        self._live.add(trial_id)
        self._paused.discard(trial_id)
        self.policy.on_start(self._record(trial_id, TrialState.RUNNING))

    def on_report(self, trial_id: int, step: float, value: float) -> Decision:
        count = self._reports_since_start[trial_id] = self._reports_since_start[trial_id] + 1
        seconds = self._launch_seconds + count * self._curve_of[trial_id].seconds_per_step
        self.policy.timed_report(trial_id, step, seconds)
        if self._resumable:
            return self.policy.decide(trial_id, step, value)
        return self.policy.decide(trial_id, step, value, resumable=False)

    def on_complete(self, trial_id: int) -> None:
        pass  # recorded and observed in leave(), as the controller's _record does

    def cannot_pause(self, trial_id: int) -> None:
        pass  # `resumable` says it for every trial, through the policy as the daemon does

    def on_no_more_trials(self) -> None:
        self.policy.no_more_trials()

    def next_resume(self) -> int | None:
        promoted = self.policy.next_resume()
        return promoted if promoted in self._paused else None

    def should_start_new(self) -> bool:
        return True

    def take_stopped(self) -> list[int]:
        return [t for t in self.policy.take_stopped() if t in self._paused]

    def next_milestone(self, trial_id: int) -> float | None:
        scheduler = self.policy.scheduler
        return None if scheduler is None else scheduler.next_milestone(trial_id)

    def rungs_snapshot(self) -> dict[float, list[tuple[int, float]]]:
        scheduler = self.policy.scheduler
        return {} if scheduler is None else scheduler.rungs_snapshot()

    def replay(self, events: Any) -> list[Decision]:
        raise NotImplementedError("a simulation is never restarted")

    # -- a trial leaves its slot: record, tell the scheduler, observe -------------------------
    def leave(self, trial_id: int, state: TrialState, step: float | None,
              value: float | None) -> None:
        was_paused = trial_id in self._paused
        record = self._record(trial_id, state, step=step, value=value)
        if state is TrialState.PAUSED:
            self._paused.add(trial_id)
        else:
            self._live.discard(trial_id)
            self._paused.discard(trial_id)
            if not was_paused:  # a paused loser stopped for good is only observed
                self.policy.on_end(record)
        self.policy.observe(record)

    def _record(self, trial_id: int, state: TrialState, *, step: float | None = None,
                value: float | None = None) -> TrialRecord:
        last = None if step is None else (int(step) if float(step).is_integer() else step)
        record = dataclasses.replace(self.records[trial_id], state=state, value=value,
                                     last_step=last)  # type: ignore[arg-type]
        self.records[trial_id] = record
        return record
