"""VirtualTable: a table that renders only the lines on screen (Textual's Line API).

Textual's DataTable measures every cell it is given; at 10 000 rows that takes seconds. Here a
row is a tuple of short cells, made only when its line is drawn (build_row), the order is a
list of keys that the owner computes (sorted, filtered), and `render_line` draws the few
visible lines on demand. Updating
a row redraws its line only if it is visible; reordering keeps the cursor's row on the same
screen line, so a live refresh never moves what the user is looking at.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

Cell = str | Text


@dataclass(frozen=True, slots=True)
class Column:
    key: str
    label: str
    width: int
    justify: Literal["left", "right"] = "left"
    # On a screen narrower than the table, columns with a `drop` rank are hidden, rank 1 first,
    # so an 80-column terminal shows whole columns, not a table cut at its right edge.
    # 0: always shown.
    drop: int = 0


@dataclass(frozen=True, slots=True)
class Row:
    cells: tuple[Cell, ...]
    tag: str | None = None  # a component class suffix: "running" -> vtable--running


class VirtualTable(ScrollView, can_focus=True):
    """Rows by key, drawn in the order given to `set_order`; one line per row, header pinned."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "cursor(-1)", "Up", show=False),
        Binding("down,j", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "jump(0)", "First", show=False),
        Binding("end", "jump(-1)", "Last", show=False),
        Binding("enter", "select", "Open", show=False),
    ]
    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "vtable--header",
        "vtable--cursor",
        "vtable--marked",
        "vtable--running",
        "vtable--good",
        "vtable--bad",
        "vtable--warn",
        "vtable--muted",
    }

    class Highlighted(Message):
        def __init__(self, table: VirtualTable, key: str | None) -> None:
            super().__init__()
            self.table = table
            self.key = key

        @property
        def control(self) -> VirtualTable:
            return self.table

    class Selected(Message):
        def __init__(self, table: VirtualTable, key: str) -> None:
            super().__init__()
            self.table = table
            self.key = key

        @property
        def control(self) -> VirtualTable:
            return self.table

    class HeaderClicked(Message):
        def __init__(self, table: VirtualTable, column: str) -> None:
            super().__init__()
            self.table = table
            self.column = column

        @property
        def control(self) -> VirtualTable:
            return self.table

    def __init__(self, *, name: str | None = None, id: str | None = None,
                 classes: str | None = None) -> None:  # fmt: skip
        super().__init__(name=name, id=id, classes=classes)
        self._all_columns: list[Column] = []
        self._columns: list[Column] = []  # those shown at the current width
        self._shown: list[int] | None = None  # their indices in the row's cells; None: all
        self._rows: dict[str, Row] = {}
        self._built: dict[str, Row] = {}  # rows made by build_row, until invalidated
        self._order: list[str] = []
        self._index: dict[str, int] = {}
        self._cursor = 0
        self._marked: set[str] = set()
        self._sort_marker: tuple[str, bool] | None = None  # (column key, reverse)

    # --- data ---------------------------------------------------------------------------------

    @property
    def columns(self) -> Sequence[Column]:
        return self._columns

    @property
    def order(self) -> Sequence[str]:
        return self._order

    @property
    def row_count(self) -> int:
        return len(self._order)

    @property
    def cursor_key(self) -> str | None:
        return self._order[self._cursor] if self._order else None

    @property
    def cursor_index(self) -> int:
        return self._cursor

    def row(self, key: str) -> Row | None:
        row = self._built.get(key)
        if row is None:
            row = self.build_row(key)
            if row is not None:
                self._built[key] = row
        return row

    def build_row(self, key: str) -> Row | None:
        """The row to draw for `key`; a subclass may make it on demand from its own data, so
        that rows nobody scrolls to are never formatted."""
        return self._rows.get(key)

    def invalidate(self, key: str) -> None:
        """The data behind `key` changed: rebuild its row, and redraw it if it is on screen."""
        self._built.pop(key, None)
        index = self._index.get(key)
        if index is not None:
            self.refresh_line(index + 1)

    def set_columns(self, columns: Iterable[Column]) -> None:
        self._all_columns = list(columns)
        self._fit_columns()
        self.refresh()

    def on_resize(self, event: events.Resize) -> None:
        if self._all_columns:
            self._fit_columns()

    def _fit_columns(self) -> None:
        width = self.scrollable_content_region.width
        shown = list(range(len(self._all_columns)))
        droppable = sorted((i for i, c in enumerate(self._all_columns) if c.drop > 0),
                           key=lambda i: self._all_columns[i].drop)
        while width > 0 and droppable and \
                1 + sum(self._all_columns[i].width + 1 for i in shown) > width:
            shown.remove(droppable.pop(0))
        self._shown = None if len(shown) == len(self._all_columns) else shown
        columns = [self._all_columns[i] for i in shown]
        if columns != self._columns:
            self._columns = columns
            self._resize()
            self.refresh()

    def put_row(self, key: str, row: Row) -> None:
        """Add or replace one row; redraw it if it is on screen (the order is the caller's)."""
        if self._rows.get(key) == row:
            return
        self._rows[key] = row
        self.invalidate(key)

    def set_order(self, keys: list[str]) -> None:
        """Show these rows, in this order, keeping the row under the cursor where it is on screen.

        The anchor is the cursor's row when it is visible, else the top visible row, so a user
        who scrolled away from the cursor does not see the view jump either.
        """
        if keys == self._order:
            return
        top = round(self.scroll_y)
        height = self._body_height()
        old_cursor = self.cursor_key
        cursor_visible = top <= self._cursor < top + height
        top_key = self._order[top] if top < len(self._order) else None
        anchor_key = old_cursor if cursor_visible else top_key
        anchor_line = (self._cursor if cursor_visible else top) - top
        self._order = keys
        self._index = {key: i for i, key in enumerate(keys)}
        if old_cursor is not None and old_cursor in self._index:
            self._cursor = self._index[old_cursor]
        else:
            self._cursor = min(self._cursor, max(0, len(keys) - 1))
        self._resize()
        if top == 0 and self._cursor < height:
            pass  # pinned to the top, like a log: new rows at the top stay in view
        elif anchor_key is not None and anchor_key in self._index:
            self.scroll_to(y=max(0, self._index[anchor_key] - anchor_line), animate=False,
                           immediate=True)  # fmt: skip
        self.refresh()
        if self.cursor_key != old_cursor:
            self.post_message(self.Highlighted(self, self.cursor_key))

    def set_marked(self, keys: Iterable[str]) -> None:
        self._marked = set(keys)
        self.refresh()

    def set_sort_marker(self, column: str | None, reverse: bool = False) -> None:
        self._sort_marker = None if column is None else (column, reverse)
        self.refresh_line(0)

    def move_to(self, key: str) -> bool:
        index = self._index.get(key)
        if index is None:
            return False
        self._set_cursor(index)
        return True

    # --- geometry -----------------------------------------------------------------------------

    def _line_width(self) -> int:
        return 1 + sum(c.width + 1 for c in self._columns)

    def _resize(self) -> None:
        self.virtual_size = Size(self._line_width(), len(self._order) + 1)

    def _body_height(self) -> int:
        return max(1, self.scrollable_content_region.height - 1)

    def _set_cursor(self, index: int) -> None:
        if not self._order:
            return
        index = max(0, min(index, len(self._order) - 1))
        old = self._cursor
        self._cursor = index
        self.refresh_line(old + 1)
        self.refresh_line(index + 1)
        self._scroll_cursor_into_view()
        if old != index:
            self.post_message(self.Highlighted(self, self.cursor_key))

    def _scroll_cursor_into_view(self) -> None:
        top = round(self.scroll_y)
        height = self._body_height()
        if self._cursor < top:
            self.scroll_to(y=self._cursor, animate=False, immediate=True)
        elif self._cursor >= top + height:
            self.scroll_to(y=self._cursor - height + 1, animate=False, immediate=True)

    # --- actions and mouse --------------------------------------------------------------------

    def action_cursor(self, delta: int) -> None:
        self._set_cursor(self._cursor + delta)

    def action_page(self, direction: int) -> None:
        self._set_cursor(self._cursor + direction * self._body_height())

    def action_jump(self, where: int) -> None:
        self._set_cursor(0 if where == 0 else len(self._order) - 1)

    def action_select(self) -> None:
        key = self.cursor_key
        if key is not None:
            self.post_message(self.Selected(self, key))

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        if offset.y == 0:
            column = self._column_at(offset.x + round(self.scroll_x))
            if column is not None:
                self.post_message(self.HeaderClicked(self, column))
            return
        index = round(self.scroll_y) + offset.y - 1
        if 0 <= index < len(self._order):
            self._set_cursor(index)
            if event.chain >= 2:
                self.action_select()

    def _column_at(self, x: int) -> str | None:
        left = 1
        for column in self._columns:
            if left <= x < left + column.width + 1:
                return column.key
            left += column.width + 1
        return None

    # --- drawing ------------------------------------------------------------------------------

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._built.clear()  # a row's look may come from the theme
        self.refresh()

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.scrollable_content_region.width
        base = self.rich_style
        if y == 0:
            strip = self._header_strip(base)
        else:
            index = scroll_y + y - 1
            if index >= len(self._order):
                return Strip.blank(width, base)
            strip = self._row_strip(index, base)
        return strip.crop_extend(scroll_x, scroll_x + width, base)

    def _header_strip(self, base: Style) -> Strip:
        style = base + self.get_component_rich_style("vtable--header")
        cells = []
        for column in self._columns:
            label = column.label
            if self._sort_marker is not None and self._sort_marker[0] == column.key:
                label += "▼" if self._sort_marker[1] else "▲"
            cells.append(label)
        return self._strip(" ", cells, style)

    def _row_strip(self, index: int, base: Style) -> Strip:
        key = self._order[index]
        row = self.row(key)
        style = base
        if row is not None and row.tag is not None:
            style += self.get_component_rich_style(f"vtable--{row.tag}", default=Style())
        marked = key in self._marked
        if marked:
            style += self.get_component_rich_style("vtable--marked")
        if index == self._cursor:
            style += self.get_component_rich_style("vtable--cursor")
        cells = row.cells if row else ()
        if self._shown is not None:
            cells = tuple(cells[i] for i in self._shown if i < len(cells))
        return self._strip("●" if marked else " ", cells, style)

    def _strip(self, gutter: str, cells: Sequence[Cell], style: Style) -> Strip:
        text = Text(gutter, no_wrap=True, end="")
        for column, cell in zip(self._columns, cells, strict=False):
            piece = cell.copy() if isinstance(cell, Text) else Text(cell)
            piece.truncate(column.width, overflow="ellipsis")
            if column.justify == "right":
                piece.pad_left(column.width - piece.cell_len)
            else:
                piece.pad_right(column.width - piece.cell_len)
            text.append_text(piece)
            text.append(" ")
        text.pad_right(max(0, self._line_width() - text.cell_len))
        text.stylize_before(style)
        segments = list(text.render(self.app.console))
        return Strip(Segment.adjust_line_length(segments, self._line_width(), style=style))
