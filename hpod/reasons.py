"""How a trial's recorded reason reads: a crash's reason with the last lines of its stderr
appended (what the store keeps, and the TUI's trial screen shows whole), and the same in one
line for a table row, an event or the log."""

from __future__ import annotations

_STDERR_TAIL = "; last lines of stderr:\n"


def with_stderr_tail(reason: str, stderr_tail: str) -> str:
    return f"{reason}{_STDERR_TAIL}{stderr_tail}" if stderr_tail else reason


def reason_in_one_line(reason: str, width: int = 200) -> str:
    """The reason's first line, and for a crash the last line its stderr ended with, where
    Python puts the error."""
    head, mark, tail = reason.partition(_STDERR_TAIL)
    first = head.splitlines()[0] if head.strip() else head
    last = next((line.strip() for line in reversed(tail.splitlines()) if line.strip()), "")
    if not mark or not last:
        return first
    if len(last) > width:
        last = last[: width - 1] + "…"
    return f"{first}; stderr ended with: {last}"
