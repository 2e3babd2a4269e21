"""Watches over the append-mostly tables: events (the events screen) and commands (the app).

Events are only ever appended, so a cursor on the last id is the whole state. Commands are
appended and then finished once (pending -> applied/rejected), so the pending ones are re-read
until they finish.
"""

from __future__ import annotations

from dataclasses import dataclass

from hpod.store import CommandRecord, CommandState, EventRecord, NotFound, StoreReader
from textual.message import Message

from .messages import CommandsUpdated, EventsAppended
from .model import EventRow

EVENT_PAGE = 1000  # rows per poll; a long history arrives over a few quick polls


@dataclass(frozen=True, slots=True)
class EventsInterest:
    def open(self) -> EventsWatch:
        return EventsWatch()


class EventsWatch:
    def __init__(self) -> None:
        self._cursor = 0
        self._busy = False
        self._started = False
        self._study_names: dict[int, str] = {}
        self._trial_numbers: dict[int, int | None] = {}

    @property
    def busy(self) -> bool:
        return self._busy

    def retarget(self, interest: object) -> None:
        pass  # nothing to choose: every event is shown

    def poll(self, reader: StoreReader, changed: bool) -> list[Message]:
        if not (changed or self._busy or not self._started):
            return []
        self._started = True
        with reader.snapshot():
            events = reader.list_events(since_id=self._cursor, limit=EVENT_PAGE)
            if any(e.study_id is not None for e in events):
                # Read afresh, not only for ids never seen: a study that never had a valid
                # definition can be deleted (Store.forget_study), and SQLite gives the highest
                # id to the next study created.
                self._study_names = {s.id: s.name for s in reader.list_studies()}
            rows = tuple(self._row(reader, e) for e in events)
        self._busy = len(events) == EVENT_PAGE
        if not events:
            return []
        self._cursor = events[-1].id
        return [EventsAppended(rows)]

    def _row(self, reader: StoreReader, event: EventRecord) -> EventRow:
        study = None
        if event.study_id is not None:
            study = self._study_names.get(event.study_id)
        number = None
        if event.trial_id is not None:
            if event.trial_id not in self._trial_numbers:
                try:
                    self._trial_numbers[event.trial_id] = reader.get_trial(event.trial_id).number
                except NotFound:
                    self._trial_numbers[event.trial_id] = None
            number = self._trial_numbers[event.trial_id]
        return EventRow(event, study, number)


@dataclass(frozen=True, slots=True)
class CommandsInterest:
    def open(self) -> CommandsWatch:
        return CommandsWatch()


class CommandsWatch:
    def __init__(self) -> None:
        self._seen: dict[int, CommandState] = {}
        self._last_id = 0
        self._started = False

    @property
    def busy(self) -> bool:
        return False

    def retarget(self, interest: object) -> None:
        pass

    def poll(self, reader: StoreReader, changed: bool) -> list[Message]:
        if not (changed or not self._started):
            return []
        self._started = True
        pending = [cid for cid, state in self._seen.items() if state is CommandState.PENDING]
        since = min(pending) - 1 if pending else self._last_id
        updated: list[CommandRecord] = []
        for command in reader.list_commands(since_id=since):
            if self._seen.get(command.id) is not command.state:
                self._seen[command.id] = command.state
                updated.append(command)
            self._last_id = max(self._last_id, command.id)
        # Only ids above the oldest pending one are read again: forget the rest, they are final.
        pending = [cid for cid, state in self._seen.items() if state is CommandState.PENDING]
        low = min(pending) if pending else self._last_id + 1
        self._seen = {cid: state for cid, state in self._seen.items() if cid >= low}
        return [CommandsUpdated(tuple(updated))] if updated else []
