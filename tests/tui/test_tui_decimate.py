"""The chart draws long series from decimated runs: the picture must be the one that joining
every point to the next gives, dot for dot. The reference here is that point-by-point drawing
(the chart's drawing before decimation), run over the same frame."""

from __future__ import annotations

import math
import random

import pytest
from hpod.tui.widgets.braille import BrailleCanvas
from hpod.tui.widgets.chart import Chart, Plot, Series, _Frame
from hpod.tui.widgets.points import Points
from rich.style import Style
from textual.app import App, ComposeResult

WIDTH, HEIGHT = 70, 14  # cells of the whole chart body (y labels + plot, plot rows + x axis)


def style(name: str) -> Style:
    return Style(link=name)  # distinct per class, so the comparison sees each dot's colour


def reference_rows(frame: _Frame) -> list[str]:
    """The plot rows as the point-by-point drawing makes them: (char, class) per cell.

    A cell takes the colour of the last series to draw in it, so the colours are compared too.
    """
    plot = frame.plot
    canvas = BrailleCanvas(frame.plot_width, frame.plot_height)
    (x_lo, x_hi), (y_lo, y_hi) = frame.x_range, frame.y_range

    def scale(v: float, log: bool) -> float | None:
        if not math.isfinite(v):
            return None
        return (math.log10(v) if v > 0 else None) if log else v

    for marker in plot.markers:
        sm = scale(marker, plot.x_log)
        if sm is not None:
            canvas.vline(round((sm - x_lo) / (x_hi - x_lo) * (canvas.pixel_width - 1)), -1)
    for index in sorted(range(len(plot.series)), key=lambda i: plot.series[i].emphasis):
        series = plot.series[index]
        previous = None
        for x, y in series.points:
            sx, sy = scale(x, plot.x_log), scale(y, plot.y_log)
            if sx is None or sy is None:
                previous = None
                continue
            point = (round((sx - x_lo) / (x_hi - x_lo) * (canvas.pixel_width - 1)),
                     round((y_hi - sy) / (y_hi - y_lo) * (canvas.pixel_height - 1)))  # fmt: skip
            if series.lines and previous is not None:
                canvas.line(*previous, *point, index)
            else:
                canvas.dot(*point, index)
            previous = point
    classes = {i: "chart--emphasis" if s.emphasis else f"chart--series-{i}"
               for i, s in enumerate(plot.series)}  # fmt: skip
    classes[-1] = "chart--marker"
    return [repr([(char, classes.get(layer)) for char, layer in row]) for row in canvas.cells()]


def drawn_rows(frame: _Frame) -> list[str]:
    """The chart's plot rows as (char, class) per cell, read back from its styled text."""
    rows = []
    for text in frame.draw(style)[:-1]:  # the last row is the x axis
        cells = []
        start = text.plain.index("│") + 1  # after the y axis (a middle label may be wider)
        for offset, char in enumerate(text.plain[start:], start):
            names = {span.style.link for span in text.spans
                     if span.start <= offset < span.end and isinstance(span.style, Style)}  # fmt: skip
            name = None
            if char != " ":
                (name,) = names
            cells.append((char, name))
        rows.append(repr(cells))
    return rows


def random_walk(rng: random.Random, n: int, *, gaps: bool, monotone: bool) -> list[tuple]:
    points, y, x = [], 0.0, 0.0
    for step in range(n):
        y += rng.gauss(0, 1)
        x = step if monotone else rng.uniform(0, n)
        value = y
        if gaps and rng.random() < 0.02:
            value = rng.choice([math.nan, math.inf, -math.inf])
        points.append((x, value))
    return points


@pytest.mark.parametrize(
    ("seed", "n"), [(0, 5), (1, 60), (2, 400), (3, 3000), (4, 3000), (5, 400)]
)
def test_decimated_lines_and_dots_are_the_point_by_point_picture(seed: int, n: int) -> None:
    rng = random.Random(seed)
    curve = random_walk(rng, n, gaps=seed % 2 == 0, monotone=seed != 3)
    other = [(x, y * 0.5 + 3) for x, y in random_walk(rng, n // 2 + 1, gaps=True, monotone=True)]
    scatter = [(rng.uniform(1e-3, 10), rng.gauss(0, 2)) for _ in range(n)]
    plots = [
        Plot((Series("a", curve), Series("b", Points(other), emphasis=True)),
             markers=(n / 3, n / 2)),
        Plot((Series("dots", scatter, lines=False), Series("best", scatter[:3], lines=False,
                                                           emphasis=True)), x_log=True),
        Plot((Series("flat", [(s, 1.0) for s in range(n)]),)),  # one y value: a padded range
    ]  # fmt: skip
    for plot in plots:
        frame = _Frame.build(plot, WIDTH, HEIGHT)
        assert frame is not None
        assert drawn_rows(frame) == reference_rows(frame)


def test_a_curve_of_100000_points_keeps_its_envelope() -> None:
    rng = random.Random(7)
    points = Points((step, math.sin(step / 5000) + rng.gauss(0, 0.3)) for step in range(100_000))
    plot = Plot((Series("loss", points),))
    frame = _Frame.build(plot, WIDTH, HEIGHT)
    assert frame is not None
    (x_lo, x_hi), (y_lo, y_hi) = frame.x_range, frame.y_range
    width, height = 2 * frame.plot_width, 4 * frame.plot_height
    lowest: dict[int, float] = {}
    highest: dict[int, float] = {}
    for x, y in points:
        column = round((x - x_lo) / (x_hi - x_lo) * (width - 1))
        lowest[column] = min(lowest.get(column, y), y)
        highest[column] = max(highest.get(column, y), y)
    cells = [text.plain.split("│", 1)[1] for text in frame.draw(style)[:-1]]

    def is_set(px: int, py: int) -> bool:
        char = cells[py // 4][px // 2]
        bits = ord(char) - 0x2800 if char != " " else 0
        return bool(bits & ((0x01, 0x02, 0x04, 0x40), (0x08, 0x10, 0x20, 0x80))[px % 2][py % 4])

    assert len(lowest) == width  # every pixel column holds points
    for column in lowest:
        for y in (lowest[column], highest[column]):
            assert is_set(column, round((y_hi - y) / (y_hi - y_lo) * (height - 1)))
    # The whole picture, too: the same as drawing all 100 000 points one by one.
    assert drawn_rows(frame) == reference_rows(frame)


def test_points_grow_by_appending_and_read_as_pairs() -> None:
    points = Points([(0, 1.0)])
    points.extend((s, s / 2) for s in range(1, 200))
    points.extend_columns([200, 201], [7.0, math.nan])
    assert len(points) == 202
    assert points[0] == (0.0, 1.0) and points[-2] == (200.0, 7.0) and math.isnan(points[-1][1])
    assert list(points)[:3] == [(0.0, 1.0), (1.0, 0.5), (2.0, 1.0)]
    assert points.xs.tolist()[-3:] == [199.0, 200.0, 201.0]
    with pytest.raises(IndexError):
        points[202]
    with pytest.raises(ValueError, match="columns differ"):
        points.extend_columns([1.0], [])
    assert not Points() and len(Points()) == 0


class ChartApp(App[None]):
    def compose(self) -> ComposeResult:
        yield Chart(id="long")
        yield Chart(id="short")


async def test_a_chart_in_an_app_draws_a_long_curve_like_its_list() -> None:
    long = [(s, 1 / (1 + s) + 0.01 * math.sin(s)) for s in range(50_000)]
    app = ChartApp()
    async with app.run_test(size=(80, 24)) as pilot:
        app.query_one("#long", Chart).show(Plot((Series("loss", Points(long)),), title="t"))
        app.query_one("#short", Chart).show(Plot((Series("loss", long),), title="t"))
        await pilot.pause()
        first, second = (app.query_one(f"#{n}", Chart).render() for n in ("long", "short"))
        assert first.plain == second.plain
        assert any("⠀" < char <= "⣿" for char in first.plain)
