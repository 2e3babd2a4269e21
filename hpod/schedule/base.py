"""The Scheduler contract, the history events it is rebuilt from, and option validation.

A scheduler is pure and synchronous: no I/O, no clock, no randomness without a seed. The
controller feeds it events and acts on the `Decision`s it returns (syne-tune's split between
scheduler and tuner; ray's warning against schedulers that call the executor).

Call order, per trial: `on_start` (new or resumed) -> [`cannot_pause`, when the trial cannot
checkpoint] -> `on_report`* -> `on_complete` (finished,
failed or stopped: a crash inserts nothing into any rung, only reports do). When a slot frees,
the controller first drains `take_stopped()`, then asks `next_resume()`, and only when that is
None and `should_start_new()` holds does it ask the suggester for a new point. When the budget
allows no more new trials it calls `on_no_more_trials()` once, so synchronous cohorts that will
never fill are judged with the members they have.

A trial may start again after its `on_complete` (a retry of a failed run) or after a STOP (a
restart requeued it before it exited): schedulers accept both, and a stopped trial is told
STOP again at its next report.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from numbers import Real
from typing import Protocol, runtime_checkable

from hpod.decision import Decision

DIRECTIONS = ("minimize", "maximize")


@dataclass(frozen=True, slots=True)
class Started:
    trial_id: int


@dataclass(frozen=True, slots=True)
class Reported:
    trial_id: int
    step: float
    value: float


@dataclass(frozen=True, slots=True)
class Paused:
    """The trial left its slot paused. Replay ignores it: the scheduler's own PAUSE decisions are
    re-derived from the reports, and an external pause (shutdown, user) changes no scheduler
    state until the trial starts again."""

    trial_id: int


@dataclass(frozen=True, slots=True)
class Ended:
    trial_id: int


@dataclass(frozen=True, slots=True)
class NoMoreTrials:
    pass


Event = Started | Reported | Paused | Ended | NoMoreTrials


@runtime_checkable
class Scheduler(Protocol):
    direction: str

    def on_start(self, trial_id: int) -> None: ...

    def on_report(self, trial_id: int, step: float, value: float) -> Decision: ...

    def on_complete(self, trial_id: int) -> None: ...

    def cannot_pause(self, trial_id: int) -> None: ...

    def on_no_more_trials(self) -> None: ...

    def next_resume(self) -> int | None: ...

    def should_start_new(self) -> bool: ...

    def take_stopped(self) -> list[int]: ...

    def next_milestone(self, trial_id: int) -> float | None: ...

    def rungs_snapshot(self) -> dict[float, list[tuple[int, float]]]: ...

    def replay(self, events: Iterable[Event]) -> list[Decision]: ...


class TrialStatus(Enum):
    """Where a trial stands with a rung scheduler."""

    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"  # told STOP; its further reports get STOP again
    ENDED = "ended"


def settled_answer(trial_id: int, status: TrialStatus | None) -> Decision | None:
    """The answer to a report that no rung can change: a trial told to stop or pause (or
    ended) hears the same again. None: the report is for the scheduler to judge."""
    if status is None:
        raise ValueError(f"trial {trial_id} reported before on_start()")
    if status in (TrialStatus.STOPPED, TrialStatus.ENDED):
        return Decision.STOP
    if status is TrialStatus.PAUSED:
        return Decision.PAUSE
    return None


class SchedulerBase:
    """Shared plumbing: direction handling, replay, and the defaults of the optional hooks."""

    def __init__(self, direction: str) -> None:
        self.direction = check_direction(direction)
        self._sign = 1.0 if self.direction == "minimize" else -1.0
        self._n_events = 0

    def score(self, value: float) -> float:
        """The value as a loss to minimise; NaN and +-inf rank worst of all (+inf)."""
        value = float(value)
        if not math.isfinite(value):
            return math.inf
        return self._sign * value

    # Defaults for schedulers that never pause, never wait and never stop paused trials.
    def cannot_pause(self, trial_id: int) -> None:
        """The trial cannot checkpoint: where it would be paused it gets the stop-mode answer
        instead (ASHA). Synchronous cohorts (sh, hyperband) still pause it: it is retrained from
        scratch when promoted, as scikit-learn's halving search does."""

    def on_no_more_trials(self) -> None:
        self._n_events += 1

    def next_resume(self) -> int | None:
        return None

    def should_start_new(self) -> bool:
        return True

    def take_stopped(self) -> list[int]:
        return []

    def next_milestone(self, trial_id: int) -> float | None:
        return None

    def rungs_snapshot(self) -> dict[float, list[tuple[int, float]]]:
        return {}

    def replay(self, events: Iterable[Event]) -> list[Decision]:
        """Rebuild the state from stored history, in order; returns the decisions the reports got.

        Must be called on a fresh scheduler built with the same options. A report from a trial
        held paused counts as a start first: history may lack the starts of resumed trials.
        """
        if self._n_events:
            raise RuntimeError("replay() needs a fresh scheduler; this one has already seen events")
        decisions: list[Decision] = []
        for event in events:
            match event:
                case Started(trial_id):
                    self.on_start(trial_id)
                case Reported(trial_id, step, value):
                    if self._held_paused(trial_id):
                        # NOTE: live, a paused trial's reports never reach the scheduler (its
                        # run answers them with the verdict), so this one is from a later run.
                        # The store keeps a trial's latest start only: earlier resumes (a
                        # promotion, a requeue) are inferred here, as the start they were.
                        self.on_start(trial_id)
                    decisions.append(self.on_report(trial_id, step, value))
                case Ended(trial_id):
                    self.on_complete(trial_id)
                case NoMoreTrials():
                    self.on_no_more_trials()
                case Paused():
                    pass
                case _:
                    raise TypeError(f"not a scheduler event: {event!r}")
        return decisions

    def _held_paused(self, trial_id: int) -> bool:
        """True while the trial waits paused (schedulers that pause override this)."""
        return False

    # Subclasses implement these and call _seen() first.
    def on_start(self, trial_id: int) -> None:
        raise NotImplementedError

    def on_report(self, trial_id: int, step: float, value: float) -> Decision:
        raise NotImplementedError

    def on_complete(self, trial_id: int) -> None:
        raise NotImplementedError

    def _seen(self) -> None:
        self._n_events += 1


# --- option validation (optuna-style messages: the option, what was wrong, the fix) ---------


def reject_unknown(kind: str, options: Mapping[str, object], allowed: Iterable[str]) -> None:
    allowed = sorted(allowed)
    for name in options:
        if name not in allowed:
            close = difflib.get_close_matches(name, allowed, n=1)
            hint = f" Did you mean `{close[0]}`?" if close else ""
            raise ValueError(
                f"scheduler {kind!r} has no option `{name}`.{hint} "
                f"Its options are: {', '.join(allowed)}."
            )


def check_direction(direction: object) -> str:
    if direction not in DIRECTIONS:
        raise ValueError(
            f"`direction` must be 'minimize' or 'maximize', got {direction!r}. "
            "Fix: set the objective's direction to one of them."
        )
    return str(direction)


def _is_number(value: object) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def _finite_above(value: object, bound: float) -> bool:
    if not _is_number(value):
        return False
    number = float(value)  # type: ignore[arg-type]
    return math.isfinite(number) and number > bound


def check_positive(name: str, value: object, *, integer: bool = False) -> float:
    if not _finite_above(value, 0):
        raise ValueError(f"`{name}` must be a finite number > 0, got {value!r}.")
    if integer and int(value) != value:  # type: ignore[call-overload]
        raise ValueError(f"`{name}` must be a whole number, got {value!r}.")
    return value  # type: ignore[return-value]


def check_reduction_factor(value: object) -> float:
    if not _finite_above(value, 1):
        raise ValueError(
            f"`reduction_factor` must be a number > 1, got {value!r}. "
            "Fix: use 3 (the default; keep the top third at each rung) or 2 to 4."
        )
    return value  # type: ignore[return-value]


def check_resources(min_resource: object, max_resource: object, *, required: bool) -> None:
    check_positive("min_resource", min_resource)
    if max_resource is None:
        if required:
            raise ValueError(
                "`max_resource` is required for this scheduler: the resource (e.g. epochs) at "
                "which a trial is fully trained. Fix: set max_resource = <last epoch>."
            )
        return
    check_positive("max_resource", max_resource)
    if max_resource <= min_resource:  # type: ignore[operator]
        raise ValueError(
            f"`max_resource` ({max_resource!r}) must be greater than `min_resource` "
            f"({min_resource!r}). Fix: lower min_resource or raise max_resource."
        )


def check_choice(name: str, value: object, choices: tuple[str, ...]) -> str:
    if value not in choices:
        close = difflib.get_close_matches(str(value), choices, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"`{name}` must be one of {', '.join(map(repr, choices))}, got {value!r}.{hint}"
        )
    return str(value)
