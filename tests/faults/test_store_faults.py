"""The store under stress: readers during heavy writes, SIGKILL and a simulated power cut in
the middle of them, a full disk and a read-only file system.

The full disk and the read-only store are real: a small tmpfs mounted for the test (root only;
the tests are skipped where mounting is not allowed). test_a_full_database_refuses_a_batch_whole
simulates the same at the SQLite layer (PRAGMA max_page_count), so it runs everywhere.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from helpers import (DaemonProcess, hpod_cli, quadratic_study, study_status, wait_until,
                     write_study)
from hpod.store import (
    Direction,
    MetricPoint,
    StoreReader,
    StoreUnavailable,
    TrialState,
    open_store,
)
from robustness_support import FLOOD, alive, db_of, integrity, recorded_pids, trials_of

pytestmark = pytest.mark.slow

STEPS = 100_000


def flood_study(steps: int = STEPS, trials: int = 1) -> str:
    return f"""
command = ["python", "{FLOOD}"]
objective = {{ metric = "loss", direction = "minimize" }}
budget = {{ trials = {trials} }}
parallel = 1
[space]
x = {{ type = "float", low = 0.0, high = 1.0 }}
steps = {steps}
"""


def _stored_points(db: Path) -> int:
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    except sqlite3.Error:
        return 0
    try:
        return conn.execute("SELECT count(*) FROM metrics").fetchone()[0]
    except sqlite3.Error:
        return 0
    finally:
        conn.close()


# -- readers during heavy writes ---------------------------------------------------------------

_CLI_LOOP = """
n=0
while [ ! -e "$STOP" ]; do
  if ! "$PYTHON" -m hpod status "$FOLDER" --json > /dev/null 2>> "$ERR"; then
    echo "exit code $?" >> "$ERR"
  fi
  n=$((n + 1))
done
echo "$n" > "$COUNT"
"""

# What the TUI does: poll data_version, then read what changed, on one long-lived connection.
_TUI_LOOP = textwrap.dedent("""
    import os, sys
    from pathlib import Path
    from hpod.store import StoreReader
    folder, stop, err, count = map(Path, sys.argv[1:])
    reads = 0
    with StoreReader(folder / ".hpod" / "hpod.db") as reader:
        seen, since = None, {}
        while not stop.exists():
            try:
                version = reader.data_version()
                if version != seen:
                    seen = version
                    with reader.snapshot():
                        for study in reader.list_studies():
                            reader.count_trials(study.id)
                            for trial in reader.list_trials(study.id):
                                rows = reader.metrics(trial.id, since_id=since.get(trial.id, 0))
                                if rows:
                                    since[trial.id] = rows[-1][0]
                    reads += 1
            except Exception as error:
                with err.open("a") as f:
                    f.write(f"{type(error).__name__}: {error}\\n")
    count.write_text(str(reads))
""")


def test_no_reader_ever_sees_database_is_locked_during_heavy_writes(tmp_path: Path,
                                                                      start_daemon) -> None:
    folder = tmp_path / "studies"
    folder.mkdir()
    daemon = start_daemon(folder)
    wait_until(lambda: "watching" in daemon.log(), what="the daemon to start")
    stop = tmp_path / "stop"
    env = {**os.environ, "PYTHON": sys.executable, "FOLDER": str(folder), "STOP": str(stop)}
    readers = [
        subprocess.Popen(["sh", "-c", _CLI_LOOP],
                         env={**env, "ERR": str(tmp_path / f"cli{i}.err"),
                              "COUNT": str(tmp_path / f"cli{i}.count")})
        for i in range(2)
    ]
    readers.append(subprocess.Popen(
        [sys.executable, "-c", _TUI_LOOP, folder, stop, tmp_path / "tui.err",
         tmp_path / "tui.count"]))
    try:
        write_study(folder, "flood", flood_study())
        wait_until(lambda: (study_status(folder, "flood") or {}).get("state") == "complete",
                   timeout=240, what="100 000 reports to be written")
    finally:
        stop.touch()
        for reader in readers:
            reader.wait(timeout=60)
    assert daemon.terminate() == 0, daemon.log()

    for name in ("cli0", "cli1", "tui"):
        errors = (tmp_path / f"{name}.err").read_text() if (tmp_path / f"{name}.err").exists() \
            else ""
        assert errors == "", f"{name}: {errors}"
        assert int((tmp_path / f"{name}.count").read_text()) >= 1
    (trial,) = trials_of(folder, "flood")
    assert (trial.state, trial.last_step) == (TrialState.COMPLETE, STEPS - 1)
    assert _stored_points(db_of(folder)) == 2 * STEPS  # loss and acc, every step, once
    assert integrity(db_of(folder)) == "ok"


# -- kill -9 and a power cut during heavy writes ----------------------------------------------

def test_kill_9_during_heavy_writes_leaves_the_file_intact(tmp_path: Path,
                                                           start_daemon) -> None:
    write_study(tmp_path, "flood", flood_study(trials=2))
    daemon = start_daemon(tmp_path)
    wait_until(lambda: _stored_points(db_of(tmp_path)) >= 20_000, timeout=120,
               what="the trial to be well into its reports")
    daemon.process.kill()
    daemon.wait()
    db = db_of(tmp_path)
    assert integrity(db) == "ok"
    wait_until(lambda: not any(alive(p) for p in recorded_pids(tmp_path / ".hpod" / "trials")),
               what="the trial to die with the daemon")

    # A power cut loses what the OS had not written yet: the tail of the WAL (with synchronous
    # = FULL, only the transaction being written; the cuts below go further back, to be sure).
    # Every cut must open as a consistent, earlier database, without a trial half-done, and a
    # daemon must be able to start on it. Not further back than the frames a checkpoint began
    # to copy into the main file: SQLite syncs those before it writes a page of them there, so
    # no power cut loses them, and without them a half-copied main file is not a database.
    wal = db.with_name(db.name + "-wal")
    assert wal.exists() and wal.stat().st_size > 0
    size = wal.stat().st_size
    floor = _checkpointed_bytes(db)
    assert floor <= size
    for cut in sorted({floor, *(c for c in (0, 32, size // 3, size // 2 + 17, size - 1000, size)
                                if c >= floor)}):
        copy = tmp_path / f"cut-{cut}"
        copy.mkdir()
        shutil.copy(db, copy / "hpod.db")
        with open(wal, "rb") as src, open(copy / "hpod.db-wal", "wb") as dst:
            dst.write(src.read(max(0, cut)))
        assert integrity(copy / "hpod.db") == "ok", cut
        _assert_consistent(copy / "hpod.db")
        assert asyncio.run(_open_and_list(copy / "hpod.db")) in ([], ["flood"]), cut

    restarted = start_daemon(tmp_path, "--exit-when-idle")
    assert restarted.wait() == 0, restarted.log()
    trials = trials_of(tmp_path, "flood")
    assert [(t.state, t.last_step) for t in trials] == [(TrialState.COMPLETE, STEPS - 1)] * 2
    assert integrity(db) == "ok"


def _checkpointed_bytes(db: Path) -> int:
    """Bytes at the head of the WAL that a checkpoint has started copying into the main file,
    read from the WAL index (the -shm file: two 48-byte headers, each with the page size at
    offset 14 and then the checkpoint info, with nBackfillAttempted at offset 128; the
    machine's byte order). 0 when there is no index or no checkpoint has begun."""
    shm = db.with_name(db.name + "-shm")
    if not shm.exists():
        return 0
    head = shm.read_bytes()[:136]
    if len(head) < 136:
        return 0
    page_size = int.from_bytes(head[14:16], sys.byteorder)
    page_size = 65536 if page_size == 1 else page_size  # how the index writes 64 KiB pages
    frames = int.from_bytes(head[128:132], sys.byteorder)
    return 32 + frames * (24 + page_size) if frames else 0


def _assert_consistent(db: Path) -> None:
    """Each trial row says one coherent thing: a finished trial has its end, a complete one its
    value; nothing is half-way between two states."""
    conn = sqlite3.connect(db)
    try:
        tables = conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'trials'")
        if tables.fetchone()[0] == 0:
            return  # cut before the schema reached the main file: the empty database of before
        rows = conn.execute("SELECT state, value, finished_at, started_at FROM trials").fetchall()
    finally:
        conn.close()
    for state, value, finished_at, started_at in rows:
        if state in ("complete", "stopped", "failed"):
            assert finished_at is not None
        if state == "complete":
            assert value is not None
        if state == "running":
            assert started_at is not None and finished_at is None


async def _open_and_list(db: Path) -> list[str]:
    async with open_store(db) as store:
        return [study.name for study in await store.list_studies()]


async def test_the_writer_commits_durably(tmp_path: Path) -> None:
    """synchronous = FULL: a commit survives a power cut, not only a crash of the daemon."""
    async with open_store(tmp_path / "hpod.db") as store:
        rows = await store._connection().execute_fetchall("PRAGMA synchronous")
        assert list(rows)[0][0] == 2  # FULL


# -- a full disk and a read-only store (a real tmpfs) -----------------------------------------

@contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                             capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()}); "
                    "test_a_full_database_refuses_a_batch_whole covers the store's side")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def remount(path: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(path)], check=True)


def _serve_on(start_daemon, folder: Path, state: Path, *extra: str) -> DaemonProcess:
    return start_daemon(folder, "--db", str(state / "hpod.db"), *extra)


def _trials_in(state: Path) -> list:
    with StoreReader(state / "hpod.db") as reader:
        (study,) = reader.list_studies()
        return reader.list_trials(study.id)


def test_a_full_disk_stops_the_daemon_and_nothing_is_half_written(tmp_path: Path,
                                                                  start_daemon) -> None:
    folder = tmp_path / "studies"
    folder.mkdir()
    write_study(folder, "flood", flood_study())
    with tmpfs(tmp_path / "state", "2M") as state:
        daemon = _serve_on(start_daemon, folder, state)
        assert daemon.wait(timeout=120) == 2, daemon.log()
        # One line naming the file and the cause, no traceback.
        log = daemon.log()
        assert "Traceback" not in log and "ExceptionGroup" not in log, log
        last = log.strip().splitlines()[-1]
        assert last == (f"hpod: the hpod database at {state / 'hpod.db'} is unavailable: "
                        "database or disk is full"), last
        assert integrity(state / "hpod.db") == "ok"
        (trial,) = _trials_in(state)
        # It could not be recorded as finished: it stays running, to be requeued at the start.
        assert trial.state is TrialState.RUNNING and trial.finished_at is None
        assert not any(alive(p) for p in recorded_pids(state / "trials"))

        # Room again: the next start requeues the trial and the study completes.
        remount(state, "size=64M")
        restarted = _serve_on(start_daemon, folder, state, "--exit-when-idle")
        assert restarted.wait() == 0, restarted.log()
        (trial,) = _trials_in(state)
        assert (trial.state, trial.attempt, trial.last_step) == (TrialState.COMPLETE, 1,
                                                                 STEPS - 1)
        assert integrity(state / "hpod.db") == "ok"


def test_a_read_only_store_at_start_is_refused_and_left_alone(tmp_path: Path,
                                                              start_daemon) -> None:
    """A tmpfs cannot be made read-only while a writer has files open ("busy"), so the read-only
    case is tested at start; a write failing under a running daemon is the full-disk test."""
    folder = tmp_path / "studies"
    folder.mkdir()
    write_study(folder, "flood", flood_study(steps=10))
    with tmpfs(tmp_path / "state", "8M") as state:
        first = _serve_on(start_daemon, folder, state, "--exit-when-idle")
        assert first.wait() == 0, first.log()
        before = (state / "hpod.db").read_bytes()
        remount(state, "ro")
        daemon = _serve_on(start_daemon, folder, state)
        assert daemon.wait(timeout=60) == 2, daemon.log()
        log = daemon.log()
        assert "Traceback" not in log, log
        last = log.strip().splitlines()[-1]
        assert last.startswith(f"hpod: the state folder {state} is read-only "
                               "(Read-only file system)"), last
        assert (state / "hpod.db").read_bytes() == before
        # The CLI still reads it (results on a read-only share stay readable).
        status = hpod_cli("status", "--db", state / "hpod.db", "--json")
        assert "flood" in status.stdout
        with StoreReader(state / "hpod.db") as reader:
            assert [s.name for s in reader.list_studies()] == ["flood"]


def test_the_cli_reports_store_errors_in_one_line(tmp_path: Path) -> None:
    result = hpod_cli("status", tmp_path, check=False)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"hpod: no hpod database at {tmp_path / '.hpod' / 'hpod.db'} — is a daemon serving "
        f"this folder? start one with `hpod serve {tmp_path}`")


# -- the store's side, at the SQLite layer (runs everywhere) ----------------------------------

async def test_a_full_database_refuses_a_batch_whole(tmp_path: Path) -> None:
    """SQLITE_FULL from a page limit (what a full disk gives): the batch of reports is refused
    whole, as StoreUnavailable naming the file, and the store stays usable for smaller work."""
    db = tmp_path / "hpod.db"
    async with open_store(db) as store:
        study = await store.create_study("s", "s.toml", spec={}, identity="i",
                                         direction=Direction.MINIMIZE, metric="loss")
        trial = await store.create_trial(study.id, {"x": 1})
        trial = await store.transition(trial.id, TrialState.RUNNING)
        pages = (await store._connection().execute_fetchall("PRAGMA page_count"))[0][0]
        # NOTE: the private connection is the only way to set this per-connection limit.
        await store._connection().execute(f"PRAGMA max_page_count = {pages + 2}")
        points = [MetricPoint(trial.id, step, "loss", 1.0, 1.0) for step in range(20_000)]
        with pytest.raises(StoreUnavailable, match=f"{db}.*full"):
            await store.add_metrics(points, {trial.id: (19_999, 1.0)})
        assert await store.metrics(trial.id) == []  # nothing of the batch
        assert (await store.get_trial(trial.id)).last_step is None
        await store.add_metrics(points[:2], {trial.id: (1, 1.0)})
        done = await store.transition(trial.id, TrialState.COMPLETE, value=1.0)
        assert done.state is TrialState.COMPLETE and len(await store.metrics(trial.id)) == 2
    assert integrity(db) == "ok"


def test_a_database_deleted_under_the_daemon_stops_it_with_the_reason(tmp_path: Path,
                                                                       start_daemon) -> None:
    # The daemon wrote on into the deleted file for hours, and everything was lost when it
    # stopped; `hpod status` meanwhile said no database was there.
    write_study(tmp_path, "slow", quadratic_study(
        trials=4, parallel=2, extra_space="steps = 1000\nsleep = 0.05"))
    daemon = start_daemon(tmp_path)
    wait_until(lambda: (study_status(tmp_path, "slow") or {}).get("trials", {})
               .get("running") == 2, what="two running trials")
    (tmp_path / ".hpod" / "hpod.db").unlink()
    assert daemon.wait(timeout=120) == 2, daemon.log()
    assert "was deleted or replaced while the daemon ran" in daemon.log()
