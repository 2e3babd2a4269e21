"""The points a study runs before its suggester's own, waiting for a slot: its file's
`[[enqueue]]` tables and the user's `hpod enqueue` commands.

Each runs exactly once, across restarts and live edits: a trial records the origin of its
point (hpod.enqueue: `file:<digest>`, `user:<command id>`), and a point whose origin has a
trial never waits again. Parsing and origins live in hpod.enqueue; this is the queue.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from hpod.enqueue import file_origins, is_file_origin, is_user_origin, user_origin

Entry = tuple[str, dict[str, Any]]  # (origin, the partial point)


class EnqueuedPoints:
    def __init__(self) -> None:
        self._waiting: deque[Entry] = deque()
        self._made: set[str] = set()  # origins of every trial made from an enqueued point

    def __len__(self) -> int:
        return len(self._waiting)

    def origins(self) -> set[str]:
        """Every origin waiting."""
        return {origin for origin, _ in self._waiting}

    def made(self, origins: Iterable[str | None]) -> None:
        """Trials exist for these origins (read from the store at a start)."""
        self._made.update(origin for origin in origins if origin is not None)

    def from_file(self, points: Sequence[Mapping[str, Any]]) -> None:
        """The file's points that have no trial yet wait, in the file's order and before the
        user's (which came later), as at a start. A point taken out of the file, or changed,
        no longer waits."""
        # "file:<index>": what a trial made by an older hpod records for the same point.
        waiting = [(origin, dict(partial)) for index, (origin, partial)
                   in enumerate(zip(file_origins(points), points))
                   if origin not in self._made and f"file:{index}" not in self._made]
        waiting += [entry for entry in self._waiting if not is_file_origin(entry[0])]
        self._waiting = deque(waiting)

    def add_user(self, partial: dict[str, Any], command_id: int) -> bool:
        """`hpod enqueue`'s point; False when the command was applied before (a daemon killed
        before it recorded the command as applied replays it at its next start)."""
        origin = user_origin(command_id)
        if origin in self._made or origin in self.origins():
            return False
        self._waiting.append((origin, partial))
        return True

    def restore_user(self, origin: str, point: dict[str, Any]) -> None:
        """A user's point that waited when the daemon stopped (kept in its command)."""
        self._waiting.append((origin, point))

    def take(self, *, budget_spent: bool) -> Entry | None:
        """The next point to make a trial of: the file's count against the budget, the
        user's run even when it is spent."""
        entry: Entry | None = None
        if self._waiting and not budget_spent:
            entry = self._waiting.popleft()
        else:
            entry = next((e for e in self._waiting if is_user_origin(e[0])), None)
            if entry is None:
                return None
            self._waiting.remove(entry)
        # Made from now on: a live edit while its suggestion is computed must not queue the
        # point again (from_file).
        self._made.add(entry[0])
        return entry

    def put_back(self, entry: Entry) -> None:
        """A point taken, of which no trial was made after all (a stop during its suggestion):
        it waits first again."""
        self._made.discard(entry[0])
        self._waiting.appendleft(entry)

    def user_waiting(self) -> bool:
        """`hpod enqueue` points without a trial yet: they run even when the budget is spent."""
        return any(is_user_origin(origin) for origin, _ in self._waiting)

    def file_waiting(self) -> int:
        return sum(1 for origin, _ in self._waiting if is_file_origin(origin))
