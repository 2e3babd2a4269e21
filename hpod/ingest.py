"""Reports on their way into SQLite: buffered in memory, written in one transaction per flush.

A trial may report thousands of steps a second; one transaction each would make SQLite's fsync
the bottleneck. The flusher writes whatever has accumulated at most every `interval` seconds,
and `flush()` lets a trial's end make its reports durable before its final state is written.

A trial that reports faster than SQLite can write is slowed down, not buffered without end:
past HIGH_WATER points the trial's reader writes them before it reads on (`full`), so the
trial's pipe fills and its next report waits. Each transaction holds at most CHUNK points, so a
command from the CLI waiting for the write lock never waits long.
"""

from __future__ import annotations

import asyncio
import logging
import time

from hpod.store.records import MetricPoint
from hpod.store.store import Store

logger = logging.getLogger(__name__)


def _said_once(task: asyncio.Future[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.debug("the last flush failed too: %s", task.exception())


HIGH_WATER = 100_000  # points in memory (a few tens of MB) before the readers wait
CHUNK = 20_000  # points per transaction: about 0.1 s of SQLite's time


class MetricSink:
    def __init__(self, store: Store, *, interval: float) -> None:
        self._store = store
        self._interval = interval
        self._points: list[MetricPoint] = []
        self._progress: dict[int, tuple[int, float | None]] = {}
        self._has_data = asyncio.Event()
        self._lock = asyncio.Lock()
        self.written = 0

    def add(self, trial_id: int, step: int, metrics: dict[str, float], objective: str) -> None:
        # NOTE: the hot path of ingest (once per report): kept to the bare minimum.
        now = time.time()
        points = self._points
        for name, value in metrics.items():
            points.append(MetricPoint(trial_id, step, name, value, now))
        objective_value = metrics.get(objective)
        if objective_value is None:
            previous = self._progress.get(trial_id)
            if previous is not None:
                # keep the last objective value when this report lacks it
                objective_value = previous[1]
        self._progress[trial_id] = (step, objective_value)
        if not self._has_data.is_set():
            self._has_data.set()

    @property
    def full(self) -> bool:
        """Whether a reader should flush before it reads on (the back-pressure)."""
        return len(self._points) >= HIGH_WATER

    async def run(self) -> None:
        """The flusher: owned by the daemon's TaskGroup, cancelled at shutdown."""
        try:
            while True:
                await self._has_data.wait()
                # NOTE: a batching window, not synchronisation: reports that arrive meanwhile
                # share this flush's transaction.
                await asyncio.sleep(self._interval)
                await self.flush()
        finally:
            # Best effort, past a cancel: after a failed write (a full disk) its points are
            # still here and fail again; the daemon says why the store failed, once.
            last = asyncio.ensure_future(self.flush())
            last.add_done_callback(_said_once)
            await asyncio.shield(last)

    async def flush(self) -> None:
        """Write what is buffered now, CHUNK points per transaction. Points leave the buffer
        only once their transaction has committed: a flush cancelled midway (a trial's reader
        given up on) leaves the rest to the next one, lost to none."""
        async with self._lock:
            self._has_data.clear()
            todo = len(self._points)  # not those added meanwhile: a flood must not keep it here
            while todo or self._progress:
                n = min(CHUNK, todo)
                # Each trial's progress goes with the last chunk: its last_step never runs
                # ahead of the reports stored.
                progress = dict(self._progress) if n == todo else {}
                await self._store.add_metrics(self._points[:n], progress)
                del self._points[:n]  # add() only appends: these are the n just written
                self.written += n
                todo -= n
                for trial_id, written in progress.items():
                    if self._progress.get(trial_id) == written:  # not updated meanwhile
                        del self._progress[trial_id]
                if not todo:
                    break
