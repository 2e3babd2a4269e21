"""Reading a database where nothing can be created beside it: a read-only mount (a kill -9'd
daemon's folder remounted read-only, results copied to a read-only share) or a folder the
reader may not write. The newest commits may exist only in the -wal file, and SQLite cannot
create the -shm index it normally reads that through.

The read-only mounts are real: a small tmpfs per test (root only; skipped where mounting is
not allowed). The unwritable folder is real too, with chmod (not as root, who writes anyway).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hpod.store import StoreReader
from hpod.store.reader import read_access

TRIALS = 300
CHECKPOINTED = 100  # trials a checkpoint copied into the main file; the rest live in the WAL

# A daemon's store, killed with SIGKILL while its newest commits are still only in the WAL.
_KILLED_WRITER = textwrap.dedent(f"""
    import asyncio, os, signal, sys
    from hpod.store import Direction, open_store

    async def main(db):
        async with open_store(db) as store:
            study = await store.create_study("s", "s.toml", spec={{}}, identity="i",
                                             direction=Direction.MINIMIZE, metric="loss")
            for n in range({TRIALS}):
                await store.create_trial(study.id, {{"x": n}})
                if n == {CHECKPOINTED} - 1:
                    # NOTE: the private connection is the only way to force a checkpoint.
                    await store._connection().execute("PRAGMA wal_checkpoint(TRUNCATE)")
            os.kill(os.getpid(), signal.SIGKILL)

    asyncio.run(main(sys.argv[1]))
""")


def kill_a_writer_of(db: Path) -> None:
    db.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(db)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == -signal.SIGKILL, done.stderr
    assert {p.name for p in db.parent.iterdir()} == {"hpod.db", "hpod.db-wal", "hpod.db-shm"}
    # The test means something only if the main file alone is behind.
    assert _trials_in_main_file_only(db) == CHECKPOINTED


def _trials_in_main_file_only(db: Path) -> int:
    conn = sqlite3.connect(f"{db.as_uri()}?mode=ro&immutable=1", uri=True)
    try:
        return conn.execute("SELECT count(*) FROM trials").fetchone()[0]
    finally:
        conn.close()


def trials_seen(db: Path) -> int:
    with StoreReader(db) as reader, reader.snapshot():
        (study,) = reader.list_studies()
        return reader.count_trials(study.id).total


@contextmanager
def tmpfs(path: Path) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16M", "tmpfs", str(path)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()}); "
                    "test_the_access_follows_the_files_beside_the_database covers the choice")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def remount_read_only(path: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)


# --- the choice -------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("can_create_files", "read_only_fs", "has_wal", "has_shm", "expected"),
    [
        # A writable folder: SQLite creates what it needs and shares the writer's index.
        (True, False, True, True, "shared"),
        (True, False, False, False, "shared"),
        # A read-only mount: nobody can write, so the WAL is read privately, whatever -shm says.
        (False, True, True, True, "private-wal"),
        (False, True, True, False, "private-wal"),
        (False, True, False, False, "immutable"),
        (False, True, False, True, "immutable"),
        # An unwritable folder on a writable mount: a writer may still be live on its -shm.
        (False, False, True, True, "shared"),
        (False, False, True, False, "private-wal"),
        (False, False, False, False, "immutable"),
    ],
)
def test_the_access_follows_the_files_beside_the_database(
    can_create_files, read_only_fs, has_wal, has_shm, expected
):
    assert read_access(can_create_files=can_create_files, read_only_fs=read_only_fs,
                       has_wal=has_wal, has_shm=has_shm) == expected


# --- a real read-only mount -------------------------------------------------------------------

def test_a_killed_daemons_folder_remounted_read_only_shows_every_commit(tmp_path):
    with tmpfs(tmp_path / "share") as share:
        db = share / ".hpod" / "hpod.db"
        kill_a_writer_of(db)
        remount_read_only(share)
        assert trials_seen(db) == TRIALS
        # The CLI's way in, end to end: `hpod status` on the read-only folder.
        status = subprocess.run([sys.executable, "-m", "hpod", "status", str(share), "--json"],
                                capture_output=True, text=True, timeout=60)
        assert status.returncode == 0, status.stderr
        (study,) = json.loads(status.stdout)["studies"]
        assert sum(study["trials"].values()) == TRIALS, study


@pytest.mark.parametrize("copied", [("hpod.db", "hpod.db-wal"),
                                    ("hpod.db", "hpod.db-wal", "hpod.db-shm")])
def test_a_copy_on_a_read_only_share_shows_every_commit(tmp_path, copied):
    source = tmp_path / "daemon" / "hpod.db"
    kill_a_writer_of(source)
    with tmpfs(tmp_path / "share") as share:
        for name in copied:
            shutil.copy(source.with_name(name), share / name)
        remount_read_only(share)
        assert trials_seen(share / "hpod.db") == TRIALS
        assert sorted(p.name for p in share.iterdir()) == sorted(copied)


def test_a_cleanly_closed_database_on_a_read_only_share_is_read(tmp_path):
    source = tmp_path / "daemon" / "hpod.db"
    kill_a_writer_of(source)
    # What a daemon's clean stop does: the last connection to close copies the WAL into the
    # main file and deletes it.
    conn = sqlite3.connect(source)
    conn.execute("SELECT count(*) FROM trials").fetchall()
    conn.close()
    assert not source.with_name("hpod.db-wal").exists()
    with tmpfs(tmp_path / "share") as share:
        shutil.copy(source, share / "hpod.db")
        remount_read_only(share)
        assert trials_seen(share / "hpod.db") == TRIALS


# --- a folder the reader may not write --------------------------------------------------------

@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into any folder")
@pytest.mark.parametrize("copied", [("hpod.db", "hpod.db-wal"),
                                    ("hpod.db", "hpod.db-wal", "hpod.db-shm")])
def test_a_copy_in_a_folder_the_reader_may_not_write_shows_every_commit(tmp_path, copied):
    source = tmp_path / "daemon" / "hpod.db"
    kill_a_writer_of(source)
    share = tmp_path / "share"
    share.mkdir()
    for name in copied:
        shutil.copy(source.with_name(name), share / name)
        (share / name).chmod(0o444)
    share.chmod(0o555)
    try:
        assert trials_seen(share / "hpod.db") == TRIALS
    finally:
        share.chmod(0o755)  # so that pytest can remove it
