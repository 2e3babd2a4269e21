"""The read-only reader beside a live writer: WAL means neither blocks the other."""

from __future__ import annotations

import asyncio
import sqlite3
import threading

import pytest
from hpod.store import (
    LATEST_VERSION,
    MetricPoint,
    SchemaTooNew,
    StoreReader,
    StoreUnavailable,
    TrialState,
    open_store,
)


async def test_the_reader_sees_each_commit_of_the_writer(store, db_path, make_study, make_trial):
    with StoreReader(db_path) as reader:
        assert reader.list_studies() == []
        version = reader.data_version()
        study = await make_study("mnist")
        assert reader.data_version() != version
        assert reader.find_study("mnist") == study
        trial = await make_trial(TrialState.RUNNING, study_id=study.id)
        assert reader.get_trial(trial.id) == await store.get_trial(trial.id)


async def test_an_open_read_snapshot_does_not_block_the_writer(store, db_path, make_trial):
    trial = await make_trial(TrialState.RUNNING)
    with StoreReader(db_path) as reader, reader.snapshot():
        assert reader.metrics(trial.id) == []  # the read transaction now holds a snapshot
        for step in range(20):
            await store.add_metrics(
                [MetricPoint(trial.id, step, "loss", 1.0, 0.0)], {trial.id: (step, 1.0)}
            )
        done = await store.transition(trial.id, TrialState.COMPLETE)
        # Inside the snapshot the reader still sees the state it started with.
        assert reader.metrics(trial.id) == []
        assert reader.get_trial(trial.id).state is TrialState.RUNNING
    with StoreReader(db_path) as fresh:
        assert len(fresh.metrics(trial.id)) == 20
        assert fresh.get_trial(trial.id) == done


async def test_the_writer_commits_while_a_reader_thread_reads(store, db_path, make_trial):
    trial = await make_trial(TrialState.RUNNING)
    stop = threading.Event()
    seen: list[int] = []
    errors: list[BaseException] = []

    def read_until_stopped() -> None:
        try:
            with StoreReader(db_path) as reader:
                while not stop.is_set():
                    with reader.snapshot():
                        rows = reader.metrics(trial.id)
                        last_step = reader.get_trial(trial.id).last_step
                    # Each snapshot is whole: the progress row matches the points in it.
                    assert last_step == (rows[-1][1].step if rows else None)
                    seen.append(len(rows))
        except BaseException as e:  # handed to the test thread below
            errors.append(e)

    reader_thread = threading.Thread(target=read_until_stopped)
    reader_thread.start()
    try:
        for step in range(200):
            batch = [MetricPoint(trial.id, step, "loss", float(step), 0.0)]
            await store.add_metrics(batch, {trial.id: (step, float(step))})
    finally:
        stop.set()
        await asyncio.to_thread(reader_thread.join, 30.0)
    assert not reader_thread.is_alive()
    assert errors == []
    assert seen == sorted(seen)  # never goes backwards
    assert len(await store.metrics(trial.id)) == 200


async def test_two_readers_and_the_writer_at_once(store, db_path, make_study):
    study = await make_study()
    with StoreReader(db_path) as a, StoreReader(db_path) as b, a.snapshot(), b.snapshot():
        assert a.list_studies() == b.list_studies() == [study]
        await store.create_trial(study.id, {"x": 1})
        assert a.count_trials(study.id).total == 0
    assert a.path == b.path == db_path


def test_a_missing_database_gives_a_clear_error_and_creates_nothing(tmp_path):
    db_path = tmp_path / "runs" / ".hpod" / "hpod.db"
    with pytest.raises(StoreUnavailable) as raised:
        StoreReader(db_path)
    message = str(raised.value)
    assert message == (
        f"no hpod database at {db_path} — is a daemon serving this folder? "
        f"start one with `hpod serve {tmp_path / 'runs'}`"
    )
    assert not db_path.parent.exists()


def test_a_missing_database_outside_the_default_layout(tmp_path):
    with pytest.raises(StoreUnavailable, match="hpod serve FOLDER"):
        StoreReader(tmp_path / "elsewhere.db")


async def test_the_reader_opens_a_database_whose_writer_has_closed(db_path, clock):
    async with open_store(db_path, clock=clock) as store:
        await store.create_study("s", "s.toml", spec=None, identity="", direction="minimize",
                                 metric="loss")  # fmt: skip
    with StoreReader(db_path) as reader:
        assert [s.name for s in reader.list_studies()] == ["s"]


async def test_the_reader_cannot_write(store, db_path):
    with StoreReader(db_path) as reader:
        conn = reader._conn  # the edge under test: the file is opened read-only
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            conn.execute("INSERT INTO events (time, level, message) VALUES (0, 'info', 'x')")


def test_a_file_nobody_initialised_is_reported(tmp_path):
    db_path = tmp_path / "hpod.db"
    sqlite3.connect(db_path).close()  # an empty file: user_version 0
    with pytest.raises(StoreUnavailable, match="not an initialised hpod database"):
        StoreReader(db_path)


async def test_the_reader_refuses_a_newer_schema(store, db_path):
    with sqlite3.connect(db_path) as conn:
        conn.execute(f"PRAGMA user_version = {LATEST_VERSION + 1}")
    with pytest.raises(SchemaTooNew, match="upgrade hpod"):
        StoreReader(db_path)


async def test_a_closed_reader_says_so(store, db_path):
    reader = StoreReader(db_path)
    reader.close()
    reader.close()  # idempotent
    with pytest.raises(StoreUnavailable, match="closed"):
        reader.list_studies()
