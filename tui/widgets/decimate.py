"""Cut a series down to what a braille canvas can show, without changing a single dot (pure).

A chart is a few hundred pixels wide; a learning curve can have a million points. Drawn point by
point in Python, a redraw costs seconds. Here the points are scaled and mapped to pixels with
numpy, then each run of consecutive points that fall in the same pixel column is cut to its
first and last pixels and its lowest and highest ones:

- lines: the segments inside a column are vertical, so together they cover exactly the pixels
  between the run's lowest and highest points; the segments between columns join the last
  point of one run to the first of the next, which are kept. The picture is the same dot for
  dot, and a draw costs one numpy pass plus O(runs) Python (about the plot's pixel width for a
  curve over steps).
- dots: each pixel is drawn once, however many points fall on it.

The arithmetic is the same as the point-by-point mapping (same operations in the same order
on float64, round half to even), so a pixel never moves by one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .points import Points


@dataclass(frozen=True, slots=True)
class Run:
    """Consecutive points of a line in one pixel column (y pixels grow downwards)."""

    starts_segment: bool  # the point before it was missing (or there was none): no joining line
    x: int
    first: int
    low: int
    high: int
    last: int


def columns(points: Sequence[tuple[float, float]] | Points) -> tuple[np.ndarray, np.ndarray]:
    """The x and y values as float arrays (views for Points, copies otherwise)."""
    if isinstance(points, Points):
        return points.xs, points.ys
    if not points:
        return np.empty(0), np.empty(0)
    pairs = np.asarray(points, dtype=float).reshape(-1, 2)
    return pairs[:, 0], pairs[:, 1]


def scaled(values: np.ndarray, log: bool) -> np.ndarray:
    """Values on the axis' scale; NaN where a value cannot be drawn (not finite, or <= 0 on a
    log axis)."""
    if not log:
        return np.where(np.isfinite(values), values, np.nan)
    # NOTE: math.log10 in Python, not np.log10: numpy's vectorised log may differ in the last
    # bit, which can move a point across a pixel boundary. Log axes hold few points (the
    # parameter scatter), curves are linear.
    return np.fromiter(
        (math.log10(v) if v > 0 and math.isfinite(v) else math.nan for v in values.tolist()),
        dtype=float,
        count=values.size,
    )


def to_pixels(values: np.ndarray, lo: float, hi: float, pixels: int, flip: bool) -> np.ndarray:
    """Scaled values to pixel indexes over `pixels`, as round((v - lo) / (hi - lo) * (pixels - 1))
    (or (hi - v) when `flip`: y grows downwards). NaN must be filtered out first."""
    span = hi - lo
    offsets = (hi - values) if flip else (values - lo)
    return np.rint(offsets / span * (pixels - 1)).astype(np.int64)


def line_runs(valid: np.ndarray, px: np.ndarray, py: np.ndarray) -> list[Run]:
    """The runs of a line: `valid` marks the drawable points among all of them, in order;
    `px`/`py` are the pixels of the valid ones only."""
    index = np.flatnonzero(valid)
    if index.size == 0:
        return []
    segment = np.empty(index.size, dtype=bool)
    segment[0] = True
    segment[1:] = np.diff(index) != 1  # a missing point between them breaks the line
    boundary = segment.copy()
    boundary[1:] |= px[1:] != px[:-1]
    starts = np.flatnonzero(boundary)
    ends = np.append(starts[1:], index.size) - 1
    lows = np.minimum.reduceat(py, starts)
    highs = np.maximum.reduceat(py, starts)
    return [
        Run(*fields)
        for fields in zip(
            segment[starts].tolist(),
            px[starts].tolist(),
            py[starts].tolist(),
            lows.tolist(),
            highs.tolist(),
            py[ends].tolist(),
            strict=True,
        )
    ]


def dot_pixels(px: np.ndarray, py: np.ndarray, height: int) -> list[tuple[int, int]]:
    """Each distinct pixel of a scatter once (the order of a series' own dots does not matter:
    they share one colour)."""
    if px.size == 0:
        return []
    codes = np.unique(px * height + py)
    return list(zip((codes // height).tolist(), (codes % height).tolist(), strict=True))
