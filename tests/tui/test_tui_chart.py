"""The chart's y axis: one column for every row, whatever its labels."""

from __future__ import annotations

from rich.style import Style

from hpod.tui.widgets.chart import Plot, Series, _Frame


def test_the_y_axis_stays_in_one_column_when_the_middle_label_is_the_widest() -> None:
    # From 0.5 to 1 the padded range gives short end labels and a longer middle one.
    plot = Plot(series=(Series("loss", [(1.0, 1.0), (10.0, 0.5)]),))
    frame = _Frame.build(plot, 40, 12)
    assert frame is not None
    rows = [text.plain for text in frame.draw(lambda _name: Style())]
    labelled = [row for row in rows[:-1] if row.split("│")[0].strip()]
    assert len(labelled) == 3  # top, middle, bottom
    assert {row.index("│") for row in rows[:-1]} == {frame.label_width - 1}
