"""StoreFeed: the only code in the TUI that reads the database.

It runs in one worker thread (the app's `store-feed` worker) with its own read-only
StoreReader. About twice a second it asks SQLite whether anything was committed since it last
looked (`PRAGMA data_version`, no table read) and, if so, lets every subscriber's watch read
what is new for it; the watch turns that into messages and the feed posts them to the
subscriber. Screens subscribe with an interest (what they show) and never see the store.

    feed.subscribe(screen, StudyInterest(study_id, curves=frozenset({trial_id})))

Polling is the one exception to "await, never poll" in hpod: the daemon is another process,
and `data_version` is the cheapest way to learn that it wrote something.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from hpod.store import StoreReader, StoreUnavailable
from textual.message import Message
from textual.message_pump import MessagePump

from .messages import FeedProblem

logger = logging.getLogger(__name__)

POLL_INTERVAL_S = 0.5  # changes show within a second, as the issue asks
RETRY_INTERVAL_S = 2.0  # while the database cannot be opened
# Between the polls of a long catch-up (a big history read in pages): the UI thread needs the
# GIL too, to stay responsive while the pages come in.
BUSY_INTERVAL_S = 0.02


class Watch(Protocol):
    """Follows one subscriber's part of the database; lives on the feed's thread only."""

    @property
    def busy(self) -> bool:
        """True when it has more to read right away (a long history, in pages)."""
        ...

    def retarget(self, interest: object) -> None:
        """Follow a changed interest of the same kind (e.g. other curves of the same study)."""
        ...

    def poll(self, reader: StoreReader, changed: bool) -> list[Message]:
        """Read what is new (`changed`: the database was written since the last poll)."""
        ...


class Interest(Protocol):
    def open(self) -> Watch: ...


@dataclass
class _Subscription:
    target: MessagePump
    kind: type
    watch: Watch
    fresh: bool = field(default=True)  # poll it even though the database did not change


class StoreFeed:
    """Thread-safe subscribe/unsubscribe from the UI thread; `run()` is the worker's body."""

    def __init__(
        self,
        db_path: Path,
        *,
        interval: float = POLL_INTERVAL_S,
        retry_interval: float = RETRY_INTERVAL_S,
    ) -> None:
        if interval <= 0 or retry_interval <= 0:
            raise ValueError("the feed's intervals must be positive")
        self._path = Path(db_path)
        self._interval = interval
        self._retry_interval = retry_interval
        self._lock = threading.Lock()
        self._subscriptions: dict[int, _Subscription] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._version: int | None = None

    @property
    def db_path(self) -> Path:
        return self._path

    def __repr__(self) -> str:
        return f"<StoreFeed {self._path} subscribers={len(self._subscriptions)}>"

    def subscribe(self, target: MessagePump, interest: Interest) -> None:
        """Send `target` what `interest` covers, from now on (a new interest replaces the old)."""
        with self._lock:
            current = self._subscriptions.get(id(target))
            if current is not None and current.target is target and current.kind is type(interest):
                current.watch.retarget(interest)
                current.fresh = True
            else:
                self._subscriptions[id(target)] = _Subscription(
                    target, type(interest), interest.open()
                )
        self._wake.set()

    def unsubscribe(self, target: MessagePump) -> None:
        with self._lock:
            current = self._subscriptions.get(id(target))
            if current is not None and current.target is target:
                del self._subscriptions[id(target)]

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def run(self, problems: MessagePump, cancelled: threading.Event | None = None) -> None:
        """Poll until stop() (or `cancelled`); FeedProblem messages go to `problems`."""
        reader: StoreReader | None = None
        problem: str | None = None
        try:
            while not (self._stop.is_set() or (cancelled is not None and cancelled.is_set())):
                self._wake.clear()
                try:
                    if reader is None:
                        reader = StoreReader(self._path)
                        self._version = None
                    busy = self.poll_once(reader)
                    delay = min(BUSY_INTERVAL_S, self._interval) if busy else self._interval
                    if problem is not None:
                        problem = None
                        problems.post_message(FeedProblem(None))
                except StoreUnavailable as error:
                    # The file is gone, locked or half-written: say so once, keep trying.
                    if reader is not None:
                        reader.close()
                        reader = None
                    if str(error) != problem:
                        problem = str(error)
                        logger.warning("the TUI cannot read the database: %s", error)
                        problems.post_message(FeedProblem(problem))
                    delay = self._retry_interval
                if delay:
                    self._wake.wait(delay)
        finally:
            if reader is not None:
                reader.close()

    def poll_once(self, reader: StoreReader) -> bool:
        """One round over the subscribers; True when one of them has more to read at once."""
        version = reader.data_version()
        changed = version != self._version
        self._version = version
        with self._lock:
            subscriptions = list(self._subscriptions.values())
            fresh = [s.fresh for s in subscriptions]
            for s in subscriptions:
                s.fresh = False
        busy = False
        for subscription, is_fresh in zip(subscriptions, fresh, strict=True):
            for message in subscription.watch.poll(reader, changed or is_fresh):
                subscription.target.post_message(message)
            busy = busy or subscription.watch.busy
        return busy
