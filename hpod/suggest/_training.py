"""Which observations a model-based suggester learns from.

A point may be observed several times: at several resources (epochs) when a scheduler reports
rungs, or again after a re-run. Models here are single-fidelity, so they learn from one level
(the "GP at r_acq" rule of algorithms.md 2.7): final results (resource None) when there are
enough of them, else the largest resource observed for at least `min_points` points, else the
level with the most points. Per point the latest value at that level counts. Failed trials
(value None) are never learned from.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from hpod.errors import SearchExhausted
from hpod.space import Space
from hpod.suggest.base import History, Observation


def training_indices(observations: Sequence[Observation], keys: Sequence[Hashable], *,
                     min_points: int) -> list[int]:
    """Indices into `observations` of the points to learn from, one per point, at the chosen
    level. `keys[i]` is the space key of observation i (callers cache them)."""
    # level -> key -> index of the latest observation; a final result is the highest level.
    levels: dict[float, dict[Hashable, int]] = {}
    for i, obs in enumerate(observations):
        if obs.value is None:
            continue
        level = math.inf if obs.resource is None else obs.resource
        levels.setdefault(level, {})[keys[i]] = i
    if not levels:
        return []
    full = [lv for lv, pts in levels.items() if len(pts) >= min_points]
    level = max(full) if full else max(levels, key=lambda lv: (len(levels[lv]), lv))
    return sorted(levels[level].values())


class EncodedHistory:
    """hpod.suggest.base.History plus each observation's key and encoded point, computed once
    at observe time rather than on every suggest."""

    def __init__(self, space: Space) -> None:
        self.space = space
        self.history = History(space)
        self._keys: list[Hashable] = []
        self._rows: list[np.ndarray] = []  # (d,) each
        self._succeeded: set[Hashable] = set()

    def add(self, params: Mapping[str, Any], value: float | None, resource: float | None) -> None:
        obs = self.history.add(params, value, resource)
        key = self.space.key(obs.params)
        self._keys.append(key)
        self._rows.append(self.space.to_unit(obs.params))
        if obs.value is not None:
            self._succeeded.add(key)

    def training(self, *, maximize: bool, min_points: int) -> tuple[np.ndarray, np.ndarray]:
        """(X (n, d), v (n,)): the points to learn from and their values in minimisation form."""
        idx = training_indices(self.history.observations, self._keys, min_points=min_points)
        d = self.space.dim
        X = np.array([self._rows[i] for i in idx]).reshape(len(idx), d)
        obs = self.history.observations
        v = np.array([obs[i].value for i in idx], dtype=float)
        return X, (-v if maximize else v)

    def joint_training(self, *, maximize: bool, min_points: int, top: float | None
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        """(X (n, d + 1), v (n,), at_acq (n,) bool, r_acq coordinate): every level of every point,
        the encoded level as the last column (hpod.suggest.gp.fidelity)."""
        from hpod.suggest.gp.fidelity import Levels, joint_training_indices

        obs = self.history.observations
        idx, levels, acq_level = joint_training_indices(obs, self._keys, min_points=min_points)
        finite = [lv for lv in levels if not math.isinf(lv)]
        scale = Levels(top, finite)
        d = self.space.dim
        X = np.array([self._rows[i] for i in idx]).reshape(len(idx), d)
        column = np.array([scale.encode(lv) for lv in levels], dtype=float)
        v = np.array([obs[i].value for i in idx], dtype=float)
        at_acq = np.array([lv == acq_level for lv in levels], dtype=bool)
        return (np.column_stack([X, column]), (-v if maximize else v), at_acq,
                scale.encode(acq_level))

    def taken(self, pending: Iterable[Mapping[str, Any]] = ()) -> set[Hashable]:
        """Keys never to propose: observed (failed included) and pending."""
        out = set(self._keys)
        out.update(self.space.key(p) for p in pending)
        return out

    def free_or_exhausted(self, pending: Iterable[Mapping[str, Any]] = ()) -> set[Hashable]:
        """`taken(pending)`, after checking that a finite space still has a point free (raises
        SearchExhausted when none is: the study ends there)."""
        taken = self.taken(pending)
        if self.space.is_finite() and len(taken) >= self.space.grid_size():
            raise SearchExhausted(f"all {self.space.grid_size()} points of the space were "
                                  "observed or are pending")
        return taken

    def encoded(self) -> np.ndarray:
        """(len(self), d): every observed point, failed ones included, in arrival order."""
        return np.array(self._rows).reshape(len(self._rows), self.space.dim)

    def n_succeeded_or_pending(self, pending: Iterable[Mapping[str, Any]]) -> int:
        """Distinct points with a successful observation or pending: a running trial already
        told at a rung (hpod.rung_feed) counts once."""
        return len(self._succeeded | {self.space.key(p) for p in pending})

    @property
    def n_succeeded(self) -> int:
        """Distinct points with at least one successful observation."""
        return len(self._succeeded)

    def __len__(self) -> int:
        return len(self.history)
