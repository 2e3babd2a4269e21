"""A virtual-clock simulator: learning curves replayed through a scheduler with N workers.

Syne Tune's simulator-backend idea: nothing trains and nothing sleeps; each trial is a curve
(the value reported after each step, and the seconds a step takes), and an event queue
advances a virtual clock from one step completion to the next. The same scheduler code as in
the daemon decides, and the same controller rules fill a free slot: drain `take_stopped()`,
then `next_resume()`, then a new trial if `should_start_new()`. A six-hour study runs in
milliseconds and is exactly reproducible, which is what the scheduler tests rely on.

Trial i (0-based, in start order) replays curve i. Its reports are at steps 1, 2, ...,
len(values), or at the curve's own `steps` (a resource such as a data fraction, or the epochs a
recorded trial reported at); a paused trial resumes from its checkpoint (or, with
checkpoints=False, retrains from its first step and re-reports old steps, which the schedulers
must ignore).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from hpod.decision import Decision
from hpod.schedule.base import (
    Ended,
    Event,
    NoMoreTrials,
    Paused,
    Reported,
    Scheduler,
    Started,
)
from hpod.store.records import TrialState

# on_leave(trial_id, state, last step (None before any report), last value)
LeaveHook = Callable[[int, TrialState, float | None, float | None], None]

@dataclass(frozen=True)
class Curve:
    """values[i] is the value reported after step i + 1, at resource steps[i] (i + 1 when
    `steps` is None)."""

    values: tuple[float, ...]
    seconds_per_step: float = 1.0
    steps: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", tuple(float(v) for v in self.values))
        if not self.values:
            raise ValueError("a Curve needs at least one value")
        if not (math.isfinite(self.seconds_per_step) and self.seconds_per_step > 0):
            raise ValueError(f"`seconds_per_step` must be > 0, got {self.seconds_per_step!r}")
        if self.steps is not None:
            steps = tuple(float(s) for s in self.steps)
            if len(steps) != len(self.values):
                raise ValueError(f"`steps` has {len(steps)} entries for {len(self.values)} values")
            if not all(math.isfinite(s) and s >= 0 for s in steps) or any(
                    b <= a for a, b in zip(steps, steps[1:])):
                raise ValueError("`steps` must be finite, >= 0 and strictly increasing")
            object.__setattr__(self, "steps", steps)

    @classmethod
    def from_function(
        cls, fn: Callable[[int], float], n_steps: int, seconds_per_step: float = 1.0
    ) -> Curve:
        return cls(tuple(fn(step) for step in range(1, n_steps + 1)), seconds_per_step)

    @property
    def n_steps(self) -> int:
        return len(self.values)

    def resource(self, count: int) -> float:
        """The step reported after `count` steps of training (1-based)."""
        return count if self.steps is None else self.steps[count - 1]


@dataclass(frozen=True)
class TrialOutcome:
    trial_id: int
    state: TrialState  # COMPLETE, STOPPED, PAUSED (never resumed) or RUNNING (cut by the budget)
    last_step: float  # the resource of its last report (the step count for plain curves)
    last_value: float | None
    steps_trained: int  # includes steps retrained after a resume without checkpoint
    resumes: int
    started_at: float
    ended_at: float | None


@dataclass(frozen=True)
class SimulationResult:
    direction: str
    trials: tuple[TrialOutcome, ...]
    events: tuple[Event, ...]  # the history, in order: what Scheduler.replay() takes
    decisions: tuple[Decision, ...]  # one per Reported event
    incumbent: tuple[tuple[float, float], ...]  # (time, best fully-trained value) improvements
    total_time: float
    total_steps: int
    worker_seconds: float  # busy worker time, launches included

    @property
    def best(self) -> float | None:
        return self.incumbent[-1][1] if self.incumbent else None

    def best_at(self, time: float) -> float | None:
        """The best fully-trained value known at virtual `time`."""
        best = None
        for when, value in self.incumbent:
            if when > time:
                break
            best = value
        return best

    def time_to_reach(self, target: float) -> float | None:
        """The first virtual time the incumbent is at least as good as `target`."""
        for when, value in self.incumbent:
            if (value <= target) if self.direction == "minimize" else (value >= target):
                return when
        return None


@dataclass
class _Run:
    curve: Curve
    started_at: float
    state: TrialState = TrialState.RUNNING
    step: int = 0
    steps_trained: int = 0
    resumes: int = 0
    last_value: float | None = None
    ended_at: float | None = None


@dataclass
class _Simulation:
    scheduler: Scheduler
    source: Sequence[Curve] | Callable[[int], Curve | None]
    workers: int
    max_trials: int | None
    launch_seconds: float
    checkpoints: bool
    start_until: float | None = None
    on_leave: LeaveHook | None = None
    clock: float = 0.0
    idle: int = 0
    closed: bool = False
    runs: dict[int, _Run] = field(default_factory=dict)
    queue: list[tuple[float, int, int, float]] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    incumbent: list[tuple[float, float]] = field(default_factory=list)
    total_steps: int = 0
    worker_seconds: float = 0.0
    _seq: int = 0

    def run(self, max_seconds: float | None) -> float:
        self.idle = self.workers
        self.fill()
        while self.queue:
            when, _, trial_id, busy = heapq.heappop(self.queue)
            if max_seconds is not None and when > max_seconds:
                return max_seconds
            self.clock = when
            self.worker_seconds += busy
            self.step(trial_id)
            self.fill()
        return self.clock

    def schedule(self, trial_id: int, delay: float) -> None:
        self._seq += 1
        heapq.heappush(self.queue, (self.clock + delay, self._seq, trial_id, delay))

    def step(self, trial_id: int) -> None:
        run = self.runs[trial_id]
        run.step += 1
        run.steps_trained += 1
        self.total_steps += 1
        value = run.curve.values[run.step - 1]
        position = run.curve.resource(run.step)
        run.last_value = value
        self.events.append(Reported(trial_id, position, value))
        decision = self.scheduler.on_report(trial_id, position, value)
        self.decisions.append(decision)
        if run.step == run.curve.n_steps:
            self.improve(value)
            self.end(trial_id, TrialState.COMPLETE)
        elif decision is Decision.STOP:
            self.end(trial_id, TrialState.STOPPED)
        elif decision is Decision.PAUSE:
            run.state = TrialState.PAUSED
            self.events.append(Paused(trial_id))
            self.idle += 1
            self.leave(trial_id, TrialState.PAUSED)
        else:
            self.schedule(trial_id, run.curve.seconds_per_step)

    def improve(self, value: float) -> None:
        if not math.isfinite(value):
            return
        sign = 1.0 if self.scheduler.direction == "minimize" else -1.0
        if not self.incumbent or sign * value < sign * self.incumbent[-1][1]:
            self.incumbent.append((self.clock, value))

    def end(self, trial_id: int, state: TrialState) -> None:
        run = self.runs[trial_id]
        if run.state is TrialState.RUNNING:
            self.idle += 1
        run.state, run.ended_at = state, self.clock
        self.events.append(Ended(trial_id))
        self.leave(trial_id, state)
        self.scheduler.on_complete(trial_id)

    def leave(self, trial_id: int, state: TrialState) -> None:
        if self.on_leave is not None:
            run = self.runs[trial_id]
            last = run.curve.resource(run.step) if run.step else None
            self.on_leave(trial_id, state, last, run.last_value)

    def fill(self) -> None:
        """The controller's slot-filling rule, repeated until nothing changes."""
        while True:
            for trial_id in self.scheduler.take_stopped():
                self.end(trial_id, TrialState.STOPPED)
            spent = self.max_trials is not None and len(self.runs) >= self.max_trials
            if self.start_until is not None and self.clock >= self.start_until:
                spent = True  # a time budget: nothing new starts, what runs goes on
            if spent and not self.closed:
                self.close()
                continue
            if self.idle == 0:
                return
            promoted = self.scheduler.next_resume()
            if promoted is not None:
                self.resume(promoted)
                continue
            if self.closed or not self.scheduler.should_start_new():
                return
            curve = self.next_curve()
            if curve is None:
                self.close()
                continue
            self.start(curve)

    def close(self) -> None:
        self.closed = True
        self.events.append(NoMoreTrials())
        self.scheduler.on_no_more_trials()

    def next_curve(self) -> Curve | None:
        index = len(self.runs)
        if callable(self.source):
            return self.source(index)
        return self.source[index] if index < len(self.source) else None

    def start(self, curve: Curve) -> None:
        trial_id = len(self.runs)
        self.runs[trial_id] = _Run(curve, started_at=self.clock)
        self.idle -= 1
        self.events.append(Started(trial_id))
        self.scheduler.on_start(trial_id)
        self.schedule(trial_id, self.launch_seconds + curve.seconds_per_step)

    def resume(self, trial_id: int) -> None:
        run = self.runs.get(trial_id)
        if run is None or run.state is not TrialState.PAUSED:
            raise RuntimeError(f"next_resume() returned trial {trial_id}, which is not paused")
        run.state = TrialState.RUNNING
        run.resumes += 1
        if not self.checkpoints:
            run.step = 0
        self.idle -= 1
        self.events.append(Started(trial_id))
        self.scheduler.on_start(trial_id)
        self.schedule(trial_id, self.launch_seconds + run.curve.seconds_per_step)


def simulate(
    scheduler: Scheduler,
    curves: Sequence[Curve] | Callable[[int], Curve | None],
    *,
    workers: int = 4,
    max_trials: int | None = None,
    max_seconds: float | None = None,
    launch_seconds: float = 0.0,
    checkpoints: bool = True,
    start_until: float | None = None,
    on_leave: LeaveHook | None = None,
) -> SimulationResult:
    """Run a fresh `scheduler` over `curves` (a list, or a function of the trial number
    returning a Curve or None when exhausted) with `workers` parallel slots.

    Stops when nothing is running and nothing can start, or at `max_seconds` of virtual time
    (trials still running then are cut). `max_trials` bounds new trials (default: all curves);
    `launch_seconds` is paid at every start and resume (process start, checkpoint load).
    No new trial starts at or after virtual time `start_until` (a study's hours), while running
    and paused ones go on. `on_leave(trial_id, state, last_step, last_value)` is called when a
    trial leaves its slot (COMPLETE, STOPPED or PAUSED) or a paused one is stopped for good,
    before the scheduler's `on_complete`: what the daemon records and observes there.
    """
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"`workers` must be an integer >= 1, got {workers!r}")
    if callable(curves) and max_trials is None and max_seconds is None:
        raise ValueError("with a curve function, set `max_trials` or `max_seconds`")
    if max_trials is not None and max_trials < 1:
        raise ValueError(f"`max_trials` must be >= 1, got {max_trials!r}")
    if launch_seconds < 0:
        raise ValueError(f"`launch_seconds` must be >= 0, got {launch_seconds!r}")
    if max_trials is None and not callable(curves):
        max_trials = len(curves)
    sim = _Simulation(scheduler, curves, workers, max_trials, launch_seconds, checkpoints,
                      start_until, on_leave)
    total_time = sim.run(max_seconds)
    trials = tuple(
        TrialOutcome(
            trial_id,
            run.state,
            run.curve.resource(run.step) if run.step else 0,
            run.last_value,
            run.steps_trained,
            run.resumes,
            run.started_at,
            run.ended_at,
        )
        for trial_id, run in sim.runs.items()
    )
    return SimulationResult(
        direction=scheduler.direction,
        trials=trials,
        events=tuple(sim.events),
        decisions=tuple(sim.decisions),
        incumbent=tuple(sim.incumbent),
        total_time=total_time,
        total_steps=sim.total_steps,
        worker_seconds=sim.worker_seconds,
    )
