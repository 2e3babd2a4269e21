"""Chart: lines or dots drawn in braille, with y labels, x ticks, a legend and marker lines.

Colours come from component classes (chart--series-N, chart--emphasis, chart--marker) so the
.tcss file and the theme decide them; the widget only decides which series gets which class.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
from rich.style import Style
from rich.text import Text
from textual.widget import Widget

from .. import format as fmt
from . import decimate
from .braille import BrailleCanvas
from .points import Points

N_COLOURS = 6
_MARKER = -1
_MIN_PLOT = (8, 2)  # cells: below this the chart says so instead of drawing a smudge


@dataclass(frozen=True, slots=True)
class Series:
    label: str
    points: Sequence[tuple[float, float]] | Points  # Points: a long live curve, drawn from arrays
    lines: bool = True  # False: a scatter of dots
    emphasis: bool = False


@dataclass(frozen=True, slots=True)
class Plot:
    series: tuple[Series, ...] = ()
    markers: tuple[float, ...] = ()  # vertical dotted lines (rung levels)
    x_log: bool = False
    y_log: bool = False
    x_ticks: tuple[tuple[float, str], ...] | None = None  # (x, label); None: automatic
    x_format: Callable[[float], str] = field(default=lambda x: fmt.value(x, 3))
    title: str = ""
    empty: str = "nothing to plot yet"


class Chart(Widget):
    COMPONENT_CLASSES: ClassVar[set[str]] = {
        *(f"chart--series-{i}" for i in range(N_COLOURS)),
        "chart--emphasis",
        "chart--marker",
        "chart--axis",
        "chart--title",
    }

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self._plot = Plot()

    @property
    def plot_data(self) -> Plot:
        return self._plot

    def show(self, plot: Plot) -> None:
        self._plot = plot
        self.refresh()

    def render(self) -> Text:
        width, height = self.size.width, self.size.height
        plot = self._plot
        lines = [self._legend(plot, width)]
        body = _Frame.build(plot, width, height - 2) if height >= 2 + _MIN_PLOT[1] else None
        if body is None:
            message = plot.empty if not _has_points(plot) else "(too small to draw)"
            lines.append(Text(message, style=self._style("chart--axis")))
            return Text("\n").join(lines)
        lines += body.draw(self._style)
        return Text("\n", no_wrap=True, overflow="crop").join(lines)

    def _style(self, name: str) -> Style:
        return self.get_component_rich_style(name, default=Style())

    def _legend(self, plot: Plot, width: int) -> Text:
        text = Text(plot.title, style=self._style("chart--title"), no_wrap=True, overflow="crop")
        for index, series in enumerate(plot.series):
            if not series.label:
                continue
            style = self._style(_series_class(index, series))
            text.append("  ")
            text.append("■ " + series.label, style=style)
        text.truncate(width, overflow="ellipsis")
        return text


def _series_class(index: int, series: Series) -> str:
    return "chart--emphasis" if series.emphasis else f"chart--series-{index % N_COLOURS}"


def _has_points(plot: Plot) -> bool:
    return any(series.points for series in plot.series)


def _scale(value: float, log: bool) -> float | None:
    if not math.isfinite(value):
        return None
    if log:
        return math.log10(value) if value > 0 else None
    return value


@dataclass
class _Scaled:
    """One series on the axes' scales, as arrays; `valid` marks the points that can be drawn."""

    valid: np.ndarray
    xs: np.ndarray  # the valid points only
    ys: np.ndarray

    @classmethod
    def of(cls, series: Series, plot: Plot) -> _Scaled:
        raw_x, raw_y = decimate.columns(series.points)
        xs, ys = decimate.scaled(raw_x, plot.x_log), decimate.scaled(raw_y, plot.y_log)
        valid = ~(np.isnan(xs) | np.isnan(ys))
        return cls(valid, xs[valid], ys[valid])


@dataclass
class _Frame:
    """The plot area's geometry for one render: ranges, label widths, pixel mapping."""

    plot: Plot
    width: int  # whole chart, cells
    height: int  # plot rows + the x labels row
    x_range: tuple[float, float]
    y_range: tuple[float, float]
    label_width: int
    scaled: list[_Scaled]  # by series

    @classmethod
    def build(cls, plot: Plot, width: int, height: int) -> _Frame | None:
        # Arrays, not Python loops: a live curve may hold a million points (see decimate.py).
        scaled = [_Scaled.of(series, plot) for series in plot.series]
        drawn = [s for s in scaled if s.xs.size]
        if not drawn:
            return None
        x_lo = min(float(s.xs.min()) for s in drawn)
        x_hi = max(float(s.xs.max()) for s in drawn)
        for marker in plot.markers:
            sm = _scale(marker, plot.x_log)
            if sm is not None:
                x_lo, x_hi = min(x_lo, sm), max(x_hi, sm)
        x_range = _padded(x_lo, x_hi)
        y_range = _padded(min(float(s.ys.min()) for s in drawn),
                          max(float(s.ys.max()) for s in drawn))  # fmt: skip
        # Every label the axis will show, the middle one too: one wider than the ends would
        # push its row's axis out of line.
        labels = [_y_label(v, plot.y_log) for v in _y_label_values(y_range, height - 1).values()]
        label_width = max(len(s) for s in labels) + 1
        if width - label_width < _MIN_PLOT[0]:
            return None
        return cls(plot, width, height, x_range, y_range, label_width, scaled)

    @property
    def plot_width(self) -> int:
        return self.width - self.label_width

    @property
    def plot_height(self) -> int:
        return self.height - 1

    def _px(self, x: float, canvas: BrailleCanvas) -> int:
        lo, hi = self.x_range
        return round((x - lo) / (hi - lo) * (canvas.pixel_width - 1))

    def draw(self, style: Callable[[str], Style]) -> list[Text]:
        plot = self.plot
        canvas = BrailleCanvas(self.plot_width, self.plot_height)
        for marker in plot.markers:
            sm = _scale(marker, plot.x_log)
            if sm is not None:
                canvas.vline(self._px(sm, canvas), _MARKER)
        order = sorted(range(len(plot.series)), key=lambda i: plot.series[i].emphasis)
        for index in order:
            self._draw_series(canvas, plot.series[index], self.scaled[index], index)
        classes = {i: _series_class(i, s) for i, s in enumerate(plot.series)}
        classes[_MARKER] = "chart--marker"
        axis = style("chart--axis")
        rows: list[Text] = []
        for row_index, row in enumerate(canvas.cells()):
            text = Text(no_wrap=True, overflow="crop")
            text.append(self._y_axis_label(row_index).rjust(self.label_width - 1) + "│", axis)
            for char, layer in row:
                text.append(char, style(classes[layer]) if layer is not None else None)
            rows.append(text)
        rows.append(self._x_axis(axis, canvas))
        return rows

    def _draw_series(
        self, canvas: BrailleCanvas, series: Series, scaled: _Scaled, layer: int
    ) -> None:
        """The same dots as joining every point to the next (a dot alone after a gap, a gap
        being a value that cannot be drawn), but from the decimated runs: see decimate.py."""
        px = decimate.to_pixels(scaled.xs, *self.x_range, canvas.pixel_width, flip=False)
        py = decimate.to_pixels(scaled.ys, *self.y_range, canvas.pixel_height, flip=True)
        if not series.lines:
            for x, y in decimate.dot_pixels(px, py, canvas.pixel_height):
                canvas.dot(x, y, layer)
            return
        previous = (0, 0)
        for run in decimate.line_runs(scaled.valid, px, py):
            if run.starts_segment:
                canvas.dot(run.x, run.first, layer)
            else:
                canvas.line(*previous, run.x, run.first, layer)
            if run.low != run.high:
                canvas.line(run.x, run.low, run.x, run.high, layer)
            previous = (run.x, run.last)

    def _y_axis_label(self, row: int) -> str:
        value = _y_label_values(self.y_range, self.plot_height).get(row)
        return "" if value is None else _y_label(value, self.plot.y_log)

    def _x_axis(self, style: Style, canvas: BrailleCanvas) -> Text:
        plot = self.plot
        line = [" "] * self.plot_width
        lo, hi = self.x_range
        if plot.x_ticks is not None:
            ticks = [(v, label) for v, label in plot.x_ticks if _scale(v, plot.x_log) is not None]
        else:
            ticks = [(_unscale(v, plot.x_log), "") for v in (lo, (lo + hi) / 2, hi)]
            ticks = [(v, plot.x_format(v)) for v, _ in ticks]
        taken = -1
        for value, label in sorted(ticks, key=lambda t: t[0]):
            scaled = _scale(value, plot.x_log)
            assert scaled is not None
            cell = self._px(scaled, canvas) // 2
            start = min(max(cell - len(label) // 2, 0), self.plot_width - len(label))
            if start <= taken or start < 0:
                continue  # would overlap the previous label
            line[start : start + len(label)] = list(label)
            taken = start + len(label)
        return Text(" " * self.label_width + "".join(line), style=style, no_wrap=True)


def _padded(lo: float, hi: float) -> tuple[float, float]:
    if hi > lo:
        return lo, hi
    pad = abs(lo) * 0.05 or 1.0
    return lo - pad, hi + pad


def _unscale(value: float, log: bool) -> float:
    return 10**value if log else value


def _y_label_values(y_range: tuple[float, float], plot_height: int) -> dict[int, float]:
    """The rows of the y axis that carry a label, and their values: top, bottom, and the
    middle when there is room."""
    lo, hi = y_range
    last = plot_height - 1
    values = {0: hi, last: lo}
    if plot_height >= 5:
        values[last // 2] = hi - (hi - lo) * (last // 2) / last
    return values


def _y_label(value: float, log: bool) -> str:
    return fmt.value(_unscale(value, log), 3)
