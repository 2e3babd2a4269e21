"""The read-only reader beside a live writer: WAL means neither blocks the other."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading

import pytest
from helpers import hpod_cli
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


# --- a damaged file ---------------------------------------------------------------------------


def damaged_fix(db_path) -> str:
    return (
        f"Fix: stop the daemon, then restore the file from a backup, or salvage what is left with "
        f"`sqlite3 {db_path} .recover | sqlite3 {db_path}.recovered` (an sqlite3 with .recover: "
        f"3.29 or newer, built with the dbpage table) and serve that: "
        f"`hpod serve {db_path.parent.parent} --db {db_path}.recovered`"
    )


async def truncate_under_the_writer(store, db_path, make_study) -> None:
    """What `truncate -s 20480 hpod.db` under a running daemon does: the main file loses pages
    its schema and the WAL's newest commits still point to."""
    study = await make_study()
    for n in range(300):
        await store.create_trial(study.id, {"padding": "x" * 200, "n": n})
    # NOTE: the private connection is the only way to force a checkpoint; it moves the rows
    # into the main file, so that cutting it loses some of them.
    await store._connection().execute("PRAGMA wal_checkpoint(TRUNCATE)")
    for n in range(5):
        await store.create_trial(study.id, {"n": 300 + n})
    assert db_path.stat().st_size > 20480
    os.truncate(db_path, 20480)


async def test_a_truncated_file_is_reported_with_the_fix(store, db_path, make_study):
    await truncate_under_the_writer(store, db_path, make_study)
    with pytest.raises(StoreUnavailable) as raised:
        with StoreReader(db_path) as reader, reader.snapshot():
            for study in reader.list_studies():
                reader.list_trials(study.id)
    assert str(raised.value) == (
        f"the hpod database at {db_path} is damaged (database disk image is malformed). "
        + damaged_fix(db_path)
    )


async def test_a_truncated_file_makes_the_cli_say_one_line(store, db_path, make_study):
    await truncate_under_the_writer(store, db_path, make_study)
    folder = db_path.parent.parent
    result = hpod_cli("status", folder, check=False)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip() == (
        f"hpod: the hpod database at {db_path} is damaged (database disk image is malformed). "
        + damaged_fix(db_path)
    )


def test_a_file_that_is_not_a_database_is_reported_with_the_fix(db_path):
    db_path.parent.mkdir(parents=True)
    db_path.write_bytes(b"these are my notes, not a database\n" * 200)
    with pytest.raises(StoreUnavailable) as raised:
        StoreReader(db_path)
    assert str(raised.value) == (
        f"the hpod database at {db_path} is damaged (file is not a database). "
        + damaged_fix(db_path)
    )


# --- an older schema, another program's database ----------------------------------------------


def set_user_version(db_path, version: int) -> None:
    conn = sqlite3.connect(db_path)
    try:
        conn.execute(f"PRAGMA user_version = {version}")
    finally:
        conn.close()


async def test_an_older_schema_names_the_folder_to_serve(store, db_path):
    set_user_version(db_path, LATEST_VERSION - 1)
    with pytest.raises(StoreUnavailable) as raised:
        StoreReader(db_path)
    assert str(raised.value) == (
        f"the hpod database at {db_path} has the older schema version {LATEST_VERSION - 1}; "
        f"start a daemon on it (`hpod serve {db_path.parent.parent}`) once to upgrade it"
    )


async def test_an_older_schema_outside_the_default_layout_names_the_file(tmp_path):
    db_path = tmp_path / "results.db"
    async with open_store(db_path):
        pass
    set_user_version(db_path, LATEST_VERSION - 1)
    with pytest.raises(StoreUnavailable, match="older schema") as raised:
        StoreReader(db_path)
    assert f"(`hpod serve FOLDER --db {db_path}`)" in str(raised.value)


def test_another_programs_database_is_not_taken_for_a_new_one(tmp_path):
    db_path = tmp_path / "optuna.db"
    conn = sqlite3.connect(db_path)
    conn.execute("CREATE TABLE studies (study_id INTEGER PRIMARY KEY, study_name TEXT)")
    conn.execute("CREATE TABLE trials (trial_id INTEGER PRIMARY KEY)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreUnavailable) as raised:
        StoreReader(db_path)
    assert str(raised.value) == (
        f"{db_path} is an SQLite database, but not hpod's (it has tables studies, trials and no "
        "hpod schema version); hpod left it unchanged. Fix: give --db a new file or an hpod "
        "database"
    )
