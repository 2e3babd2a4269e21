"""The write-ahead log: checkpointed by the daemon, cut back after it grew, and a reader that
pins it said in the events (hpod.wal_watch)."""

from __future__ import annotations

import os
import sqlite3

from hpod.store import EventLevel, MetricPoint, TrialState
from hpod.store.schema import WAL_SIZE_LIMIT
from hpod.wal_watch import WalWatch


async def _write(store, trial, first: int, n: int) -> None:
    points = [MetricPoint(trial.id, i, "loss", float(i), 1.0) for i in range(first, first + n)]
    await store.add_metrics(points, {trial.id: (first + n - 1, 0.5)})


def _wal_size(db_path) -> int:
    return os.path.getsize(f"{db_path}-wal")


async def test_a_reader_that_pins_the_log_is_said_once_and_its_end_too(store, db_path,
                                                                       make_trial) -> None:
    trial = await make_trial(TrialState.RUNNING)
    watch = WalWatch(store, warn_bytes=1024 * 1024)
    await _write(store, trial, 0, 1000)
    await watch.check()  # a log nobody pins: emptied, nothing said
    assert await store.list_events() == []

    reader = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, isolation_level=None)
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM metrics").fetchone()  # a snapshot, held
        for start in range(1000, 61_000, 20_000):
            await _write(store, trial, start, 20_000)
        log, done = await store.checkpoint_wal()
        assert done < log and log >= 1024 * 1024
        await watch.check()
        await watch.check()  # still pinned: said once
        (warning,) = await store.list_events()
        assert warning.level is EventLevel.WARNING
        assert "cannot be emptied" in warning.message and "read transaction" in warning.message
    finally:
        reader.execute("COMMIT")
        reader.close()
    await watch.check()
    events = await store.list_events()
    assert [e.level for e in events] == [EventLevel.WARNING, EventLevel.INFO]
    assert "no longer held open" in events[1].message


async def test_a_log_that_grew_is_cut_back_when_it_restarts(store, db_path, make_trial) -> None:
    trial = await make_trial(TrialState.RUNNING)
    reader = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM metrics").fetchone()
    step = 0
    while _wal_size(db_path) <= WAL_SIZE_LIMIT:
        await _write(store, trial, step, 50_000)
        step += 50_000
    reader.execute("COMMIT")
    reader.close()
    log, done = await store.checkpoint_wal()
    assert done == log  # all of it in the database now
    await _write(store, trial, step, 10)  # the next write starts the log over
    assert _wal_size(db_path) <= WAL_SIZE_LIMIT
