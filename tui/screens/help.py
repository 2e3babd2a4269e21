"""HelpScreen: the keys of the screen it was opened from (`?`), generated from its bindings."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

_PACKAGE = __name__.rsplit(".", 2)[0]  # hpod.tui


def own_keys(screen: Screen[object]) -> list[tuple[str, str]]:
    """The active keys that hpod's own classes define, one row per action ("↑/k  Up").

    Textual's generic ones (scrolling, focus, copy) are left out: they work as everywhere.
    """
    ours: set[tuple[str, str]] = set()
    for active in screen.active_bindings.values():
        for cls in type(active.node).__mro__:
            if cls.__module__.startswith(_PACKAGE):
                for b in getattr(cls, "BINDINGS", ()):
                    if isinstance(b, Binding):
                        ours.add((b.action, b.description))
    rows: dict[tuple[str, str], list[str]] = {}
    for active in screen.active_bindings.values():
        b = active.binding
        if (b.action, b.description) in ours and b.description:
            rows.setdefault((b.action, b.description), []).append(screen.app.get_key_display(b))
    return [("/".join(keys), description) for (_, description), keys in rows.items()]


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,question_mark,q", "close", "Close"),
    ]

    def __init__(self, title: str, keys: Sequence[tuple[str, str]], notes: str = "") -> None:
        super().__init__()
        self.help_title = title
        self.keys = list(keys)
        self.notes = notes

    def compose(self) -> ComposeResult:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold", no_wrap=True)
        table.add_column()
        for key, description in self.keys:
            table.add_row(key, description)
        with VerticalScroll(id="help-box") as box:
            box.border_title = f"keys — {self.help_title}"
            box.border_subtitle = "esc closes"
            yield Static(table, id="help-keys")
            if self.notes:
                yield Static(self.notes, id="help-notes")

    def action_close(self) -> None:
        self.dismiss(None)
