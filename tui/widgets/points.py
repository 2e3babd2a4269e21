"""Points: a growing series of (x, y) pairs kept as two float arrays (pure, no Textual).

A live learning curve gains thousands of points a second and is redrawn twice a second. As a
list of tuples, every redraw would walk it in Python; as columns, the chart scales and
decimates it with numpy (see decimate.py) and appending costs only the new points.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

_FIRST_CAPACITY = 64


class Points:
    """Append-only (x, y) pairs; a Sequence of tuples to its readers, two arrays to the chart."""

    __slots__ = ("_size", "_xs", "_ys")

    def __init__(self, pairs: Iterable[tuple[float, float]] = ()) -> None:
        self._xs = np.empty(_FIRST_CAPACITY)
        self._ys = np.empty(_FIRST_CAPACITY)
        self._size = 0
        self.extend(pairs)

    def extend(self, pairs: Iterable[tuple[float, float]]) -> None:
        pairs = pairs if isinstance(pairs, list | tuple) else list(pairs)
        if pairs:
            columns = np.asarray(pairs, dtype=float).reshape(-1, 2)  # one C pass, no Python loop
            self.extend_columns(columns[:, 0], columns[:, 1])

    def extend_columns(self, xs: Iterable[float], ys: Iterable[float]) -> None:
        new_x = np.asarray(xs if not isinstance(xs, Iterator) else list(xs), dtype=float)
        new_y = np.asarray(ys if not isinstance(ys, Iterator) else list(ys), dtype=float)
        if new_x.shape != new_y.shape or new_x.ndim != 1:
            raise ValueError(f"x and y columns differ: {new_x.shape} and {new_y.shape}")
        end = self._size + new_x.size
        if end > self._xs.size:
            # Doubling keeps appends amortised O(new points) however long the curve grows.
            capacity = max(end, 2 * self._xs.size)
            self._xs = np.resize(self._xs, capacity)
            self._ys = np.resize(self._ys, capacity)
        self._xs[self._size : end] = new_x
        self._ys[self._size : end] = new_y
        self._size = end

    @property
    def xs(self) -> np.ndarray:
        """A read-only view of the x column (valid until the next append)."""
        view = self._xs[: self._size]
        view.flags.writeable = False
        return view

    @property
    def ys(self) -> np.ndarray:
        view = self._ys[: self._size]
        view.flags.writeable = False
        return view

    def __len__(self) -> int:
        return self._size

    def __iter__(self) -> Iterator[tuple[float, float]]:
        return zip(self.xs.tolist(), self.ys.tolist(), strict=True)

    def __getitem__(self, index: int) -> tuple[float, float]:
        if not -self._size <= index < self._size:
            raise IndexError(f"point {index} of {self._size}")
        index %= self._size
        return float(self._xs[index]), float(self._ys[index])

    def __repr__(self) -> str:
        return f"<Points {self._size}>"
