"""KeysFooter: Textual's Footer, rebuilt only when the keys it shows change.

Textual's Footer rebuilds all its keys whenever the screen says its bindings may have changed:
on every focus move, screen push or pop, app focus. Each rebuild mounts a dozen widgets and
restyles each of them twice (a FooterKey starts compact and is then bound to the footer's
`compact`), which costs tens of milliseconds of CPU. In hpod the keys of a screen rarely
change, and that CPU is taken from the daemon when both run on a small machine (see
benchmarks/tui.py), so the footer compares what it would show with what it shows.
"""

from __future__ import annotations

from collections.abc import Hashable

from textual.screen import Screen
from textual.widgets import Footer


class KeysFooter(Footer):
    def __init__(self) -> None:
        super().__init__()
        self._shown: tuple[Hashable, ...] | None = None

    def bindings_changed(self, screen: Screen) -> None:
        # Footer.bindings_changed recomposes only in this case; the others must reach it as they
        # are (it also marks the bindings ready).
        if screen.app.app_focus and self.is_attached and screen is self.screen:
            shown = self._keys(screen)
            if shown == self._shown:
                return
            self._shown = shown
        super().bindings_changed(screen)

    def _keys(self, screen: Screen) -> tuple[Hashable, ...]:
        """What Footer.compose draws from: the shown bindings, their state and key labels."""
        app = screen.app
        return tuple(
            (key, a.binding, a.enabled, a.tooltip, app.get_key_display(a.binding))
            for key, a in screen.active_bindings.items()
            if a.binding.show or key == app.COMMAND_PALETTE_BINDING
        )
