"""Reading back a GP suggester's saved state (hpod.suggest.base.Resumable): every value is
checked before any is used, so a state from another version or a hand-edited database is
refused as a whole with a ValueError that says what was wrong, never half-applied."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

# Bumped whenever the layout of GPSuggester.state() changes; an older state is then refused
# (the study goes on from its history alone, as hpod did before states were saved).
STATE_FORMAT = 1


def field(state: Any, name: str, where: str) -> Any:
    if not isinstance(state, Mapping) or name not in state:
        raise ValueError(f"{where}: no {name!r}")
    return state[name]


def finite_array(value: Any, where: str, shape: tuple[int | None, ...]) -> np.ndarray:
    """value as a float array of `shape` (None: any length on that axis), all finite."""
    try:
        raw = np.asarray(value)
        # Numbers only: no strings that float() would read, no integers too big for a float.
        if raw.dtype.kind not in "iuf":
            raise TypeError
        array = raw.astype(float)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{where}: expected numbers, got {value!r}") from None
    if array.ndim != len(shape) or any(want is not None and got != want
                                       for got, want in zip(array.shape, shape)):
        raise ValueError(f"{where}: expected shape {shape}, got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{where}: not finite")
    return array


def positive_float(value: Any, where: str) -> float:
    try:
        number = float(value) if type(value) in (int, float) else math.nan
    except OverflowError:  # an integer too big for a float
        number = math.nan
    if not math.isfinite(number) or number <= 0:
        raise ValueError(f"{where}: expected a positive number, got {value!r}")
    return number


def count(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{where}: expected a count, got {value!r}")
    return value
