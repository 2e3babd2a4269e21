"""What a trial costs, passed on to a suggester that weighs points by it (EI per second).

The cost of trying a point is the seconds a trial of it takes: a startup (process, imports,
data) plus its seconds per unit of resource times the resource it trains. Each is measured from
the times of the trials' reports:

- a trial's **rate**, seconds per unit of resource, is the median over its consecutive reports
  of (time between them) / (resource between them): the startup does not enter it, nor does
  the time a paused trial waited for its promotion;
- the **startup** is the median over trials of (time of the first report) - rate * (its
  resource);
- the **resource a trial trains** is the mean of the highest resource each ended trial reached:
  under early stopping most trials stop at a rung, without it every trial trains to the end.

The suggester learns each point's rate and weighs a new point by startup + rate * mean
resource: what a trial there is expected to cost in this study.

A trial with one report has no gap between reports. Under a scheduler whose first rung is the
first report, that is most trials, and the cheap points would go unseen: such a trial's rate is
estimated as (time of its first report - the study's startup) / its resource, floored at a
tenth of that time, and told again whenever the startup moves, until a second report measures
it. On benchmarks/multifidelity.py from epoch 1 (45 seeds, docs/benchmarks.md) this brought
`asha` + `gp` at half the budget from 0.1545 to 0.1437 (better on 27 of 45 seeds, p = 0.013).

The daemon times live reports by the wall clock, a restart reads the same from the stored
reports, and `hpod simulate` from its virtual clock. Like the rung feed (hpod.rung_feed), costs
are handed over by `drain()`, under the controller's suggest lock.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hpod.store.records import MetricPoint, TrialRecord

_RATE_WINDOW = 64
# An estimated rate keeps at least this share of the time to the first report, so a trial
# whose first report came before the study's (median) startup is not told it cost nothing.
_MIN_ESTIMATED_SHARE = 0.1
Rate = tuple[dict[str, Any], float]  # (params, seconds per unit of resource)


@dataclass(frozen=True)
class Overhead:
    """What every trial of the study adds to its rate: the expected seconds of a trial at a
    point with rate c are startup + c * resource."""

    startup: float  # seconds
    resource: float  # the resource an average trial trains


@dataclass
class _Timing:
    params: dict[str, Any]
    last: tuple[float, float] | None = None  # (resource, seconds) of the last report this run
    # Only the latest gaps: a trial may report thousands of times a second, and this runs on
    # every report; the median of the last _RATE_WINDOW is as good a rate, in bounded memory.
    rates: deque[float] = field(default_factory=lambda: deque(maxlen=_RATE_WINDOW))
    first: tuple[float, float] | None = None  # the first report of the first run
    reached: float = 0.0
    ended: bool = False
    runs: int = 1  # the first report of the first run times the startup

    @property
    def rate(self) -> float | None:
        return statistics.median(self.rates) if self.rates else None


class CostFeed:
    def __init__(self) -> None:
        self._trials: dict[int, _Timing] = {}
        self._new_rates: dict[int, _Timing] = {}  # trials whose rate changed since drain()
        self._told: Overhead | None = None
        self._estimated: set[int] = set()  # one-report trials told an estimated rate

    def started(self, trial: TrialRecord) -> None:
        """The trial (re)starts: its next report is timed from this start."""
        timing = self._trials.get(trial.id)
        if timing is None:
            self._trials[trial.id] = _Timing(trial.params)
        else:  # a resume, or a retry
            timing.last = None
            timing.runs += 1

    def reported(self, trial_id: int, resource: float, seconds: float) -> None:
        """A report at `resource`, `seconds` after the trial's latest start. A report at
        resource 0 (before training) counts only as a point in time."""
        timing = self._trials.get(trial_id)
        if timing is None or not (math.isfinite(resource) and math.isfinite(seconds)):
            return
        if timing.first is None and timing.runs == 1 and resource > 0:
            timing.first = (resource, seconds)
        if timing.last is not None:
            last_resource, last_seconds = timing.last
            if resource > last_resource and seconds > last_seconds:
                timing.rates.append((seconds - last_seconds) / (resource - last_resource))
                self._new_rates[trial_id] = timing
        timing.last = (resource, seconds)
        timing.reached = max(timing.reached, resource)

    def ended(self, trial_id: int) -> None:
        timing = self._trials.get(trial_id)
        if timing is not None:
            timing.ended = True

    def rebuilt(self, trials: Sequence[TrialRecord],
                metrics: Mapping[int, Sequence[MetricPoint]], objective: str,
                resource: str | None) -> None:
        """The timings of a study's past trials from their stored reports, after a restart.
        Only the latest start of a trial is stored: the first report of a trial started again
        since (resumed, or requeued after a kill) is not used for the startup."""
        for trial in trials:
            reports = _timed_reports(metrics.get(trial.id, ()), objective, resource)
            if not reports:
                continue  # never reported: its first start, if it comes, is timed live
            timing = self._trials.setdefault(trial.id, _Timing(trial.params))
            for when, at in reports:
                self.reported(trial.id, at, when)
            if timing.first is not None:
                first_at, first_when = timing.first
                timing.first = ((first_at, first_when - trial.started_at)
                                if trial.started_at is not None and first_when >= trial.started_at
                                else None)
            # Its next report, if any, comes from a new start, which times no startup.
            timing.last, timing.runs = None, 2
            timing.ended = trial.state.is_finished()

    def drain(self) -> tuple[list[Rate], Overhead | None]:
        """The rates measured since the last call, with the estimates of one-report trials
        that are new or whose startup moved, and the overhead when it changed."""
        rates: dict[int, Rate] = {trial_id: (t.params, t.rate)  # type: ignore[misc]
                                  for trial_id, t in self._new_rates.items()}
        self._new_rates.clear()
        overhead = self.overhead()
        changed = overhead != self._told
        if overhead is not None:
            startup_moved = self._told is None or overhead.startup != self._told.startup
            rates.update(self._estimated_rates(overhead.startup, again=startup_moved))
        self._told = overhead
        return list(rates.values()), overhead if changed else None

    def _estimated_rates(self, startup: float, *, again: bool) -> dict[int, Rate]:
        """Rates for trials with one report: their first report less the startup. Only the
        new ones, or all of them again when the startup changed (`again`)."""
        estimates: dict[int, Rate] = {}
        for trial_id, t in self._trials.items():
            if t.rates or t.first is None or (trial_id in self._estimated and not again):
                continue
            resource, seconds = t.first
            if not seconds > 0:
                continue  # a clock that stepped back: no time to estimate from (and never 0 s)
            training = max(seconds - startup, _MIN_ESTIMATED_SHARE * seconds)
            estimates[trial_id] = (t.params, training / resource)
            self._estimated.add(trial_id)
        return estimates

    def overhead(self) -> Overhead | None:
        """The study's startup and mean trained resource; None before any trial has a rate."""
        startups = [max(t.first[1] - t.rate * t.first[0], 0.0)  # type: ignore[operator]
                    for t in self._trials.values() if t.first is not None and t.rates]
        ended = [t.reached for t in self._trials.values() if t.ended and t.reached > 0]
        reached = ended or [t.reached for t in self._trials.values() if t.reached > 0]
        if not reached or not any(t.rates for t in self._trials.values()):
            return None
        return Overhead(statistics.median(startups) if startups else 0.0,
                        statistics.fmean(reached))


def _timed_reports(points: Sequence[MetricPoint], objective: str,
                   resource: str | None) -> list[tuple[float, float]]:
    """(time, resource) of each stored report carrying the objective, in order; the resource
    is the `resource` metric of the same report when the study names one, else its step."""
    reports: dict[tuple[float, int], dict[str, float | None]] = {}
    for point in points:
        reports.setdefault((point.time, point.step), {})[point.name] = point.value
    out = []
    for (when, step), named in sorted(reports.items()):
        if objective not in named:
            continue
        at = named.get(resource) if resource else None
        out.append((when, float(at) if at is not None else float(step)))
    return out
