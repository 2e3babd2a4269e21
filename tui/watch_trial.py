"""The trial view's watch: the trial's record, its metrics, its events and its log tails.

Log files are written by the trial process itself, not through the database, so their sizes
are checked on every poll (two stat calls) instead of waiting for `data_version`.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass, field
from pathlib import Path

from hpod.store import NotFound, StoreReader, TrialRecord
from textual.message import Message

from .messages import TrialEvents, TrialLog, TrialMetrics, TrialUpdated

LOG_TAIL_BYTES = 64 * 1024
_EVENT_PAGE = 1000


@dataclass(frozen=True, slots=True)
class TrialInterest:
    trial_id: int
    study_id: int
    log_dir: Path | None = None  # holds stdout.log and stderr.log

    def open(self) -> TrialWatch:
        return TrialWatch(self)


@dataclass
class LogFollower:
    """Follows one growing log file: its tail first, then only what was appended."""

    path: Path
    max_bytes: int = LOG_TAIL_BYTES
    _offset: int | None = None  # bytes already sent; None: nothing yet
    # A write may end inside a multi-byte character: keep its first bytes for the next read.
    _decoder: codecs.IncrementalDecoder = field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")(errors="replace")
    )

    def read(self) -> tuple[str, bool] | None:
        """(new text, reset) or None when nothing changed; reset means "replace what you have"."""
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return None
        reset = self._offset is None or size < self._offset  # new, or truncated and rewritten
        start = 0 if reset else self._offset
        assert start is not None
        if size == start and not reset:
            return None
        if size - start > self.max_bytes:
            start, reset = size - self.max_bytes, True  # too much to show: only the tail
        with self.path.open("rb") as f:
            f.seek(start)
            data = f.read(size - start)
        self._offset = start + len(data)
        if reset:
            self._decoder.reset()
        text = self._decoder.decode(data)
        if reset and start > 0:
            text = text.partition("\n")[2]  # the first line was cut in the middle
        return text, reset


class TrialWatch:
    def __init__(self, interest: TrialInterest) -> None:
        self._interest = interest
        self._trial: TrialRecord | None = None
        self._metric_cursor: int | None = None  # None: nothing sent yet
        self._event_cursor = 0
        self._logs = self._followers(interest)
        self._busy = False

    @property
    def busy(self) -> bool:
        return self._busy

    def retarget(self, interest: object) -> None:
        if not isinstance(interest, TrialInterest) or interest.trial_id != self._interest.trial_id:
            raise ValueError(f"a trial watch cannot follow {interest!r}")
        self._interest = interest
        self._logs = self._followers(interest)

    @staticmethod
    def _followers(interest: TrialInterest) -> dict[str, LogFollower]:
        if interest.log_dir is None:
            return {}
        return {s: LogFollower(interest.log_dir / f"{s}.log") for s in ("stdout", "stderr")}

    def poll(self, reader: StoreReader, changed: bool) -> list[Message]:
        out: list[Message] = []
        if changed or self._trial is None or self._busy:
            out += self._read_store(reader)
        out += self._read_logs()
        return out

    def _read_store(self, reader: StoreReader) -> list[Message]:
        interest = self._interest
        out: list[Message] = []
        with reader.snapshot():
            try:
                trial = reader.get_trial(interest.trial_id)
            except NotFound:
                return []
            if trial != self._trial:
                self._trial = trial
                out.append(TrialUpdated(trial))
            reset = self._metric_cursor is None
            rows = reader.metrics(trial.id, since_id=self._metric_cursor or 0)
            if rows or reset:
                self._metric_cursor = rows[-1][0] if rows else 0
                out.append(TrialMetrics(trial.id, tuple(p for _, p in rows), reset))
            events = reader.list_events(
                since_id=self._event_cursor, study_id=interest.study_id, limit=_EVENT_PAGE
            )
        self._busy = len(events) == _EVENT_PAGE
        if events:
            self._event_cursor = events[-1].id
            mine = tuple(e for e in events if e.trial_id == trial.id)
            if mine:
                out.append(TrialEvents(trial.id, mine))
        return out

    def _read_logs(self) -> list[Message]:
        out: list[Message] = []
        for stream, follower in self._logs.items():
            news = follower.read()
            if news is not None:
                out.append(TrialLog(self._interest.trial_id, stream, news[0], news[1]))
        return out
