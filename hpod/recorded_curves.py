"""Learning curves a real run recorded in an hpod store, replayed by `hpod simulate`.

A simulated trial replays the curve of the recorded complete trial whose params are nearest to
its own (in the space's unit encoding; a different choice of a categorical counts as distance
1): the values it reported, at the steps (or `resource` values) it reported them, at the pace
it ran. Trials stopped early in the record are not replayed: nothing is known of them past
their stop, and replaying a truncated curve would count its last value as fully trained.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from hpod.errors import SpaceError
from hpod.schedule.simulate import Curve
from hpod.simulation import SimulationError
from hpod.space import Space
from hpod.spec import StudySpec
from hpod.store.reader import StoreReader
from hpod.store.records import MetricPoint, TrialState

_MIN_SECONDS = 1e-3  # a step recorded as taking no time still advances the virtual clock


@dataclass(frozen=True)
class RecordedCurves:
    """Curves of one study's complete trials, each with its params' encoding."""

    path: Path
    study: str
    space: Space
    points: np.ndarray  # (n, d) unit encodings of the recorded params
    curves: tuple[Curve, ...]
    categorical: np.ndarray  # (d,) bool
    # Each curve is as long as its trial ran: a study needs no max_resource or `epochs` to
    # replay them (see hpod.simulation.CurveSource).
    own_length: ClassVar[bool] = True

    @classmethod
    def load(cls, db_path: str | Path, spec: StudySpec) -> RecordedCurves:
        """The complete trials of the study named like `spec` in the store at `db_path`."""
        path = Path(db_path)
        fix = "run the study there first, or use --curves synthetic"
        with StoreReader(path) as reader:
            study = reader.find_study(spec.name)
            if study is None:
                known = ", ".join(s.name for s in reader.list_studies()) or "none"
                raise SimulationError(f"no study named {spec.name!r} in this store (studies: "
                                      f"{known})", path=str(path), fix=fix)
            points, curves = [], []
            for trial in reader.list_trials(study.id, [TrialState.COMPLETE]):
                try:
                    encoded = spec.space.to_unit(trial.params)
                except (SpaceError, KeyError, TypeError, ValueError):
                    continue  # recorded under another space: not comparable
                metrics = [point for _row, point in reader.metrics(trial.id)]
                curve = curve_of(metrics, spec.objective.metric, spec.scheduler.resource)
                if curve is not None:
                    points.append(encoded)
                    curves.append(curve)
        if not curves:
            raise SimulationError(
                f"study {spec.name!r} in this store has no complete trial whose params fit the "
                f"study file's [space] and that reported `{spec.objective.metric}`",
                path=str(path), fix=fix)
        d = spec.space.dim
        encoded = np.array(points).reshape(len(points), d)
        return cls(path, spec.name, spec.space, encoded, tuple(curves),
                   np.asarray(spec.space.is_categorical))

    def nearest(self, encoded: np.ndarray) -> int:
        diff = np.abs(self.points - encoded)
        diff = np.where(self.categorical, (diff > 0.5).astype(float), diff)
        return int(np.argmin((diff**2).sum(axis=1)))  # ties: the earliest recorded trial

    def curve(self, params: Mapping[str, Any], max_resource: float | None = None) -> Curve:
        # A recorded curve is as long as the trial ran: max_resource changes nothing here.
        return self.curves[self.nearest(self.space.to_unit(params))]


def curve_of(metrics: list[MetricPoint], objective: str, resource: str | None) -> Curve | None:
    """One trial's reports as a Curve: the objective at each step (or `resource` value), the
    latest value where a step was reported twice, at the median pace between reports."""
    reports: dict[tuple[float, int], dict[str, float]] = {}
    for point in metrics:
        reports.setdefault((point.time, point.step), {})[point.name] = point.value
    by_position: dict[float, tuple[float, float]] = {}  # position -> (time, value)
    for (when, step), named in sorted(reports.items()):
        value = named.get(objective)
        if value is None:
            continue
        position = named.get(resource, step) if resource else step
        if math.isfinite(position) and position >= 0:
            by_position[float(position)] = (when, value)
    if not by_position:
        return None
    steps = sorted(by_position)
    times = sorted(when for when, _value in by_position.values())
    gaps = [b - a for a, b in zip(times, times[1:]) if b > a]
    pace = statistics.median(gaps) if gaps else 1.0
    return Curve(tuple(by_position[s][1] for s in steps), max(pace, _MIN_SECONDS), tuple(steps))
