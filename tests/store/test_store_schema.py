"""Opening, reopening and migrating the file; errors on files the store cannot use.

To add schema version N+1: append the migration in store/schema.py, then save a dump of a
seeded version-N database as fixtures/vN.sql (as v1.sql was made); the upgrade tests below
pick every fixture up by its name.
"""

from __future__ import annotations

import asyncio
import math
import re
import sqlite3
from pathlib import Path

import pytest
from helpers import hpod_cli
from hpod.store import (
    LATEST_VERSION,
    CommandAction,
    CommandState,
    Direction,
    EventLevel,
    MetricPoint,
    SchemaTooNew,
    StoreReader,
    StoreUnavailable,
    StudyState,
    TrialState,
    open_store,
    submit_command,
)
from hpod.store.schema import MIGRATIONS

FIXTURES = Path(__file__).parent / "fixtures"
DUMPS = sorted(FIXTURES.glob("v*.sql"))


def user_version(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute("PRAGMA user_version").fetchone()[0]


def schema_of(path: Path) -> list[tuple[str, str, str]]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL")
        return sorted((t, n, re.sub(r"\s+", " ", sql).strip()) for t, n, sql in rows)


async def test_a_new_file_is_created_in_wal_mode_at_the_latest_version(db_path):
    async with open_store(db_path):
        assert db_path.exists()
        with sqlite3.connect(db_path) as conn:
            assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert user_version(db_path) == LATEST_VERSION


async def test_reopening_keeps_everything(db_path, clock):
    async with open_store(db_path, clock=clock) as store:
        study = await store.create_study("s", "s.toml", spec={"k": [1, 2]}, identity="i",
                                         direction=Direction.MAXIMIZE, metric="acc")  # fmt: skip
        trial = await store.create_trial(study.id, {"lr": 0.1})
        await store.transition(trial.id, TrialState.RUNNING, placement="gpu:0")
        await store.add_metrics(
            [MetricPoint(trial.id, 0, "acc", float("nan"), 1.0),
             MetricPoint(trial.id, 1, "acc", 0.7, 2.0)], {trial.id: (1, 0.7)},
        )  # fmt: skip
        trial = await store.transition(trial.id, TrialState.COMPLETE, value=0.7)
        study = await store.update_study(study.id, state=StudyState.COMPLETE)
        event_id = await store.record_event(EventLevel.INFO, "done", study_id=study.id)
    command_id = submit_command(db_path, CommandAction.PAUSE_STUDY, "s")

    async with open_store(db_path, clock=clock) as store:
        assert await store.list_studies() == [study]
        assert await store.list_trials(study.id) == [trial]
        points = [p for _, p in await store.metrics(trial.id)]
        assert math.isnan(points[0].value) and points[1] == MetricPoint(
            trial.id, 1, "acc", 0.7, 2.0
        )
        assert [e.id for e in await store.list_events()] == [event_id]
        assert [c.id for c in await store.pending_commands()] == [command_id]
        assert await store.best_trial(study.id, Direction.MAXIMIZE) == trial
        # and it keeps numbering where it left off
        assert (await store.create_trial(study.id, {})).number == 1
    assert user_version(db_path) == LATEST_VERSION


async def test_a_newer_schema_is_refused_and_left_alone(db_path):
    async with open_store(db_path):
        pass
    with sqlite3.connect(db_path) as conn:
        conn.execute(f"PRAGMA user_version = {LATEST_VERSION + 1}")
    with pytest.raises(SchemaTooNew) as raised:
        async with open_store(db_path):
            pass
    assert f"schema version {LATEST_VERSION + 1}" in str(raised.value)
    assert str(db_path) in str(raised.value)
    assert user_version(db_path) == LATEST_VERSION + 1


@pytest.mark.parametrize("version", range(LATEST_VERSION + 1))
async def test_a_file_at_any_older_version_is_migrated(tmp_path, db_path, version):
    """Built from the migrations themselves; the dumps below freeze what old files really hold."""
    db_path.parent.mkdir(parents=True)
    with sqlite3.connect(db_path) as conn:
        for statements in MIGRATIONS[:version]:
            for statement in statements:
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {version}")
    fresh = tmp_path / "fresh.db"
    async with open_store(fresh):
        pass

    async with open_store(db_path) as store:
        assert await store.list_studies() == []
    assert user_version(db_path) == LATEST_VERSION
    assert schema_of(db_path) == schema_of(fresh)


def test_there_is_a_dump_for_every_old_version():
    versions = sorted(int(p.stem[1:]) for p in DUMPS)
    assert versions == list(range(1, LATEST_VERSION + 1))


@pytest.mark.parametrize("dump", DUMPS, ids=[p.stem for p in DUMPS])
async def test_a_saved_old_database_opens_with_its_data(tmp_path, dump):
    db_path = tmp_path / "old.db"
    with sqlite3.connect(db_path) as conn:
        conn.executescript(dump.read_text())
        conn.execute(f"PRAGMA user_version = {int(dump.stem[1:])}")
    fresh = tmp_path / "fresh.db"
    async with open_store(fresh):
        pass

    async with open_store(db_path) as store:
        seeded = await store.find_study("seeded")
        assert seeded is not None and seeded.direction is Direction.MINIMIZE
        assert seeded.spec is not None and seeded.spec["metric"] == "loss"
        broken = await store.find_study("broken")
        assert broken is not None and (broken.state, broken.spec) == (StudyState.INVALID, None)
        trials = await store.list_trials(seeded.id)
        first, second = trials[:2]  # what v1.sql seeded; later dumps add to it
        assert (first.state, first.value, first.params) == (TrialState.COMPLETE, 0.5, {"lr": 0.01})
        assert first.origin is None
        assert second.state is TrialState.QUEUED
        values = [p.value for _, p in await store.metrics(first.id)]
        assert values[0] == 0.9 and math.isnan(values[1])
        assert [e.level for e in await store.list_events()] == [EventLevel.WARNING]
        commands = await store.pending_commands()
        command = commands[0]
        assert (command.action, command.trial_number) == (CommandAction.STOP_TRIAL, 1)
        await store.finish_command(command.id, CommandState.APPLIED, "stopped")
        if int(dump.stem[1:]) >= 2:
            assert trials[2].origin == "file:0"
            assert commands[1].action is CommandAction.ENQUEUE
            assert commands[1].payload == {"params": {"x": 0.75}}
        if int(dump.stem[1:]) >= 3:
            assert first.peak_gpu_memory_mb == 812.5
            assert [(t.repeat, t.repeat_of, t.config_number) for t in trials[3:5]] == [
                (0, None, 3), (1, 3, 3)]
        else:
            assert all((t.repeat, t.repeat_of, t.peak_gpu_memory_mb) == (0, None, None)
                       for t in trials)
        saved = {"format": 1, "kind": "gp", "note": "seeded"}
        assert await store.suggester_state(seeded.id) == (
            saved if int(dump.stem[1:]) >= 4 else None)
    assert schema_of(db_path) == schema_of(fresh)
    with StoreReader(db_path) as reader:
        assert reader.count_trials(seeded.id).total == len(trials)


async def test_two_processes_creating_the_file_at_once_migrate_it_once(db_path):
    async with open_store(db_path) as a, open_store(db_path) as b:
        await a.create_study("x", "x.toml", spec=None, identity="", direction="minimize",
                             metric="loss")  # fmt: skip
        assert [s.name for s in await b.list_studies()] == ["x"]

    results = await asyncio.gather(
        *(_open_and_count(db_path.with_name("race.db")) for _ in range(4))
    )
    assert results == [0, 0, 0, 0]


async def _open_and_count(path: Path) -> int:
    async with open_store(path) as store:
        return len(await store.list_studies())


async def test_a_file_that_is_not_a_database_is_unavailable(db_path):
    db_path.parent.mkdir(parents=True)
    db_path.write_text("these are my notes, not a database\n" * 100)
    with pytest.raises(StoreUnavailable, match=re.escape(str(db_path))):
        async with open_store(db_path):
            pass


def make_optuna_like_database(path: Path) -> None:
    """Another program's SQLite file whose table names clash with hpod's (Optuna's do)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE studies (study_id INTEGER PRIMARY KEY, study_name TEXT)")
    conn.execute("CREATE TABLE trials (trial_id INTEGER PRIMARY KEY, study_id INTEGER)")
    conn.execute("CREATE TABLE version_info (version_info_id INTEGER PRIMARY KEY)")
    conn.execute("INSERT INTO studies (study_name) VALUES ('theirs')")
    conn.commit()
    conn.close()


FOREIGN = (
    "{path} is an SQLite database, but not hpod's (it has tables studies, trials, version_info "
    "and no hpod schema version); hpod left it unchanged. Fix: give --db a new file or an hpod "
    "database"
)


async def test_another_programs_database_is_refused_before_anything_changes(tmp_path):
    path = tmp_path / "optuna.db"
    make_optuna_like_database(path)
    before = path.read_bytes()
    with pytest.raises(StoreUnavailable) as raised:
        async with open_store(path):
            pass
    assert str(raised.value) == FOREIGN.format(path=path)
    # Not switched to WAL (journal_mode is stored in the file), nothing created beside it.
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["optuna.db"]


def test_serve_on_another_programs_database_says_so_in_one_line(tmp_path):
    path = tmp_path / "optuna.db"
    make_optuna_like_database(path)
    before = path.read_bytes()
    folder = tmp_path / "studies"
    folder.mkdir()
    result = hpod_cli("serve", folder, "--db", path, check=False, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().splitlines()[-1] == "hpod: " + FOREIGN.format(path=path)
    assert path.read_bytes() == before


async def test_an_empty_file_becomes_an_hpod_database(db_path):
    db_path.parent.mkdir(parents=True)
    db_path.touch()  # e.g. made by `touch` or by a tool that creates files before writing
    async with open_store(db_path) as store:
        assert await store.list_studies() == []
    assert user_version(db_path) == LATEST_VERSION


async def test_a_damaged_file_is_refused_with_the_fix(db_path):
    db_path.parent.mkdir(parents=True)
    db_path.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)
    with pytest.raises(StoreUnavailable) as raised:
        async with open_store(db_path):
            pass
    message = str(raised.value)
    assert message.startswith(f"the hpod database at {db_path} is damaged ("), message
    assert f"`sqlite3 {db_path} .recover | sqlite3 {db_path}.recovered`" in message


async def test_a_folder_that_cannot_be_created_is_unavailable(tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the folder should be")
    with pytest.raises(StoreUnavailable, match="cannot open the hpod database"):
        async with open_store(blocker / ".hpod" / "hpod.db"):
            pass


async def test_a_closed_store_says_so(db_path):
    async with open_store(db_path) as store:
        pass
    await store.close()  # idempotent
    with pytest.raises(StoreUnavailable, match="closed"):
        await store.list_studies()
    with pytest.raises(StoreUnavailable, match="closed"):
        await store.record_event(EventLevel.INFO, "late")
