"""Repeated runs of one configuration (`[trial] repeats = N`): for trainings whose result
depends on the seed as much as on the hyperparameters.

Each configuration runs N times, each run a trial of its own (its own process, folder, curve
and `HPOD_SEED`); the store links them by `repeat` / `repeat_of`. Everything that judges a
configuration judges the group, never a single run:

* the suggester sees one observation per configuration, the mean of its runs, once they have
  all ended (a GP then models the noise of the mean, not N points on top of each other);
* the scheduler sees one trial per configuration (`RepeatedScheduler`): a run's report at a
  step counts as the mean over the configuration's runs that reached that step, and when the
  configuration is stopped every run of it is — queued ones never start;
* `hpod best` and the TUI rank configurations by that mean and show its spread.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TypeGuard

from hpod.decision import Decision
from hpod.schedule import Scheduler
from hpod.schedule.base import Ended, Event, Reported, Started
from hpod.store.records import TrialRecord, TrialState


def run_seed(study_seed: int | None, config_number: int, repeat: int) -> int:
    """The seed a run gets as HPOD_SEED: different for every run of a configuration, the same
    for the same run across restarts and retries (a retry must not become a new sample)."""
    text = f"{study_seed}:{config_number}:{repeat}"
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big") >> 1


def combine(runs: Sequence[TrialRecord]) -> TrialRecord:
    """One record standing for a configuration whose runs have all ended.

    Its value is the mean of the runs that completed; if none did, of the ones stopped early
    (at the smallest step any of them reached, the resource the mean is comparable at); if
    every run failed, the configuration failed. Runs whose value is NaN/inf count as failed.
    """
    if not runs:
        raise ValueError("a configuration needs at least one run")
    first = min(runs, key=lambda run: run.repeat)
    for state in (TrialState.COMPLETE, TrialState.STOPPED):
        values = [run.value for run in runs if run.state is state and _finite(run.value)]
        if values:
            steps = [run.last_step for run in runs if run.state is state
                     and run.last_step is not None]
            step = (max if state is TrialState.COMPLETE else min)(steps) if steps else None
            return dataclasses.replace(first, state=state, value=mean_of(values),
                                       last_step=step)
    return dataclasses.replace(first, state=TrialState.FAILED, value=None)


def mean_of(values: Sequence[float]) -> float:
    """The mean of the runs' values: NaN if one is NaN or they hold both infinities, the
    infinity if one is infinite. Never an overflow: a trial may report values near the float
    limit, and statistics.fmean raises OverflowError on two of them (which failed the study,
    and `hpod status` after it)."""
    if any(math.isnan(v) for v in values):
        return math.nan
    infinite = {v for v in values if math.isinf(v)}
    if infinite:
        return infinite.pop() if len(infinite) == 1 else math.nan
    try:
        return statistics.fmean(values)
    except OverflowError:
        return math.fsum(v / len(values) for v in values)  # |each term| <= max|v| / n


def _stdev(values: Sequence[float]) -> float:
    try:
        return statistics.stdev(values)
    except OverflowError:
        scale = max(abs(v) for v in values)  # finite values, scaled so no square overflows
        return statistics.stdev([v / scale for v in values]) * scale


@dataclass(frozen=True, slots=True)
class ConfigResult:
    """A configuration as `hpod best`/`hpod trials` report it."""

    number: int  # the trial number of its first run
    params: dict
    runs: int  # how many runs it has (its repeats)
    values: tuple[float, ...]  # the finite values of its finished runs, by repeat
    mean: float | None
    std: float | None  # sample standard deviation; None with fewer than two values
    state: TrialState  # COMPLETE/STOPPED/FAILED once every run ended, else the runs' progress


def config_results(trials: Iterable[TrialRecord]) -> list[ConfigResult]:
    """Group runs into configurations, in the order of their first runs."""
    groups: dict[int, list[TrialRecord]] = defaultdict(list)
    for trial in trials:
        groups[trial.config_number].append(trial)
    out = []
    for number in sorted(groups):
        runs = sorted(groups[number], key=lambda run: run.repeat)
        if all(run.state.is_finished() for run in runs):
            combined = combine(runs)
            state, mean = combined.state, combined.value
            values = tuple(r.value for r in runs
                           if r.state is state and r.value is not None and _finite(r.value))
        else:
            state = TrialState.RUNNING if any(r.state is TrialState.RUNNING for r in runs) \
                else TrialState.QUEUED
            values = tuple(r.value for r in runs
                           if r.state.is_finished() and r.value is not None and _finite(r.value))
            mean = mean_of(values) if values else None
        std = _stdev(values) if len(values) >= 2 else None
        out.append(ConfigResult(number, runs[0].params, len(runs), values, mean, std, state))
    return out


class RepeatedScheduler:
    """A scheduler that judges configurations: its trial ids are configuration numbers.

    Only for schedulers that stop (not pause): a configuration paused at a rung would have to
    park all its runs and resume them together, which the spec refuses (hpod.spec_sections).
    """

    def __init__(self, scheduler: Scheduler, repeats: int) -> None:
        self._scheduler = scheduler
        self._repeats = repeats
        self._config_of: dict[int, int] = {}  # trial id -> configuration number
        self._started: set[int] = set()
        self._ended: dict[int, set[int]] = defaultdict(set)  # configuration -> ended trial ids
        self._live: dict[int, set[int]] = defaultdict(set)  # configuration -> running trial ids
        # Values at a step, per configuration and run: what a report's mean is taken over.
        self._at_step: dict[tuple[int, float], dict[int, float]] = defaultdict(dict)
        self._stopped: set[int] = set()
        self._completed: set[int] = set()

    def on_start(self, trial: TrialRecord) -> None:
        config = self._config_of[trial.id] = trial.config_number
        self._live[config].add(trial.id)
        self._ended[config].discard(trial.id)  # a retried or requeued run is live again
        # Once per configuration, and again after it ended (a failed run retried): the
        # scheduler then treats it as a retry that trains on from its rungs.
        if config not in self._started or config in self._completed:
            self._started.add(config)
            self._completed.discard(config)
            self._scheduler.on_start(config)

    def on_report(self, trial_id: int, step: float, value: float) -> Decision:
        config = self._config_of[trial_id]
        if config in self._stopped:
            return Decision.STOP
        seen = self._at_step[(config, step)]
        seen[trial_id] = value
        # NaN/inf in a run makes the mean NaN: the scheduler ranks it worst, as it would rank
        # the run on its own.
        decision = self._scheduler.on_report(config, step, mean_of(list(seen.values())))
        if decision is Decision.STOP:
            self._stopped.add(config)
        return decision

    def on_end(self, trial: TrialRecord) -> None:
        config = self._config_of.get(trial.id, trial.config_number)
        self._live[config].discard(trial.id)
        self._ended[config].add(trial.id)
        # The configuration ends with its last run: until then the scheduler must keep its
        # rungs open to the runs still going.
        if len(self._ended[config]) >= self._repeats and not self._live[config]:
            self._completed.add(config)
            self._scheduler.on_complete(config)

    def is_stopped(self, config_number: int) -> bool:
        """The scheduler stopped this configuration: its queued runs need not start."""
        return config_number in self._stopped

    def replay(self, events: Iterable[Event], trials: Sequence[TrialRecord]) -> None:
        by_id = {trial.id: trial for trial in trials}
        for event in events:
            match event:
                case Started(trial_id):
                    self.on_start(by_id[trial_id])
                case Reported(trial_id, step, value):
                    self.on_report(trial_id, step, value)
                case Ended(trial_id):
                    self.on_end(by_id[trial_id])

    # The rest of the scheduler's surface, for the policy: nothing pauses, so nothing resumes.
    def next_resume(self) -> int | None:
        return None

    def take_stopped(self) -> list[int]:
        return []

    def on_no_more_trials(self) -> None:
        self._scheduler.on_no_more_trials()


class RepeatGroups:
    """The runs of each configuration seen so far, to know when one has all its results."""

    def __init__(self, repeats: int) -> None:
        self._repeats = repeats
        self._runs: dict[int, dict[int, TrialRecord]] = defaultdict(dict)

    def add(self, trial: TrialRecord) -> TrialRecord | None:
        """Record a run's latest state; the combined configuration once all its runs ended."""
        runs = self._runs[trial.config_number]
        runs[trial.repeat] = trial
        if len(runs) < self._repeats or not all(r.state.is_finished() for r in runs.values()):
            return None
        return combine(list(runs.values()))


def _finite(value: float | None) -> TypeGuard[float]:
    return value is not None and not math.isnan(value) and not math.isinf(value)
