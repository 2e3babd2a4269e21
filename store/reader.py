"""A synchronous, read-only view of the database for the CLI and the TUI (other processes).

It opens the file with `mode=ro`; in WAL mode a reader never blocks the daemon's writes and
sees each committed transaction whole. `PRAGMA data_version` tells it cheaply whether anything
changed since it last looked. Where nothing can be created beside the file (a read-only
mount, a copy on a read-only share), read_access() picks how to still see every commit.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Literal, TypeVar

from . import queries as q
from . import schema
from .errors import StoreUnavailable
from .records import (
    CommandRecord,
    Direction,
    EventLevel,
    EventRecord,
    GpuSample,
    MetricPoint,
    StudyRecord,
    TrialCounts,
    TrialRecord,
    TrialState,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")


def connect_sync(path: str | Path, *, mode: Literal["ro", "rw"]) -> sqlite3.Connection:
    """Open an existing, up-to-date hpod database without ever creating or migrating one.

    Only the daemon creates and migrates the file, so a wrong path gives a clear error here
    instead of an empty database nobody serves.
    """
    path = Path(path)
    if not path.is_file():
        raise StoreUnavailable(_missing_message(path))
    uri = f"{path.resolve().as_uri()}?mode={mode}"
    access = "shared"
    if mode == "ro":
        access = read_access(
            can_create_files=_can_create_files_beside(path),
            read_only_fs=_on_read_only_file_system(path),
            has_wal=_sibling(path, "-wal").exists(),
            has_shm=_sibling(path, "-shm").exists(),
        )
        uri += _ACCESS_URI[access]
    try:
        conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as e:
        raise StoreUnavailable(f"cannot open the hpod database at {path}: {e}") from e
    try:
        with q.translate_errors(path):
            if access == "private-wal":
                # Before the first read: the WAL index is then built in this process's memory
                # from the -wal file, and no -shm file is ever needed.
                conn.execute("PRAGMA locking_mode = EXCLUSIVE")
            conn.execute(f"PRAGMA busy_timeout = {schema.BUSY_TIMEOUT_MS}")
            query = q.version_and_tables()
            version, tables = query.convert(conn.execute(query.sql).fetchall())
        _check_version(version, tables, path)
    except BaseException:
        conn.close()
        raise
    return conn


ReadAccess = Literal["shared", "private-wal", "immutable"]

_ACCESS_URI: dict[ReadAccess, str] = {
    "shared": "",
    # unix-none takes no file locks: allowed only where no writer can exist (see read_access).
    "private-wal": "&vfs=unix-none",
    "immutable": "&immutable=1",
}


def read_access(
    *, can_create_files: bool, read_only_fs: bool, has_wal: bool, has_shm: bool
) -> ReadAccess:
    """How a read-only connection can see the newest committed data.

    SQLite reads a WAL database through its -wal file and the -shm index beside it, creating
    the -shm file when it is missing. Where nothing can be created (a read-only mount, a folder
    the reader may not write):
    - with a -wal file, its commits are part of the database (after a kill -9 they may be all
      that is newer than the main file, which a checkpoint may also have left half-copied, so
      the main file alone can read as "malformed"). A -shm file that some writer may still be
      using is shared as usual; otherwise (a read-only mount, where nobody can write, or no
      -shm at all, which a running WAL writer always has) the WAL is read privately: no locks,
      the index in memory ("private-wal").
    - without one, the main file holds every commit and can be read as it is ("immutable").
    """
    if can_create_files and not read_only_fs:
        return "shared"
    if not has_wal:
        return "immutable"
    if has_shm and not read_only_fs:
        return "shared"
    return "private-wal"


def _sibling(path: Path, suffix: str) -> Path:
    return path.with_name(path.name + suffix)


def _can_create_files_beside(path: Path) -> bool:
    # access() also answers EROFS for a read-only mount, and is what SQLite itself asks.
    return os.access(path.parent, os.W_OK | os.X_OK)


def _on_read_only_file_system(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _check_version(version: int, tables: list[str], path: Path) -> None:
    schema.check_not_too_new(version, path=path)
    if version == 0 and tables:
        raise StoreUnavailable(schema.foreign_database_message(path, tables))
    if version == 0:
        raise StoreUnavailable(
            f"{path} is not an initialised hpod database yet (a daemon may be creating it); "
            "try again in a moment"
        )
    if version < schema.LATEST_VERSION:
        raise StoreUnavailable(
            f"the hpod database at {path} has the older schema version {version}; "
            f"start a daemon on it (`{q.serve_command(path)}`) once to upgrade it"
        )


def _missing_message(path: Path) -> str:
    # The default layout is FOLDER/.hpod/hpod.db, so the folder to serve can usually be named.
    folder = str(path.parent.parent) if path.parent.name == ".hpod" else "FOLDER"
    return (
        f"no hpod database at {path} — is a daemon serving this folder? "
        f"start one with `hpod serve {folder}`"
    )


class StoreReader:
    """Read-only access; use as a context manager or call close().

    One instance may be handed to a worker thread, but must not be used by two threads at once.
    """

    def __init__(self, path: str | Path) -> None:
        self._path = Path(path)
        self._conn: sqlite3.Connection | None = connect_sync(self._path, mode="ro")

    @property
    def path(self) -> Path:
        return self._path

    def __repr__(self) -> str:
        return f"<StoreReader {self._path} {'open' if self._conn is not None else 'closed'}>"

    def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            conn.close()

    def __enter__(self) -> StoreReader:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[None]:
        """Run several reads against one consistent state of the file (one read transaction).

        The writer keeps committing meanwhile (WAL); this reader just does not see it until the
        block ends. Nested use joins the outer snapshot.
        """
        conn = self._connection()
        if conn.in_transaction:
            yield
            return
        with q.translate_errors(self._path):
            conn.execute("BEGIN")
        try:
            yield
        except BaseException:
            # The block's own error says what went wrong; ending the read transaction of a
            # damaged file fails too, and must not replace it.
            with contextlib.suppress(sqlite3.Error):
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            raise
        with q.translate_errors(self._path):
            if conn.in_transaction:  # SQLite may already have ended it after an I/O error
                conn.execute("COMMIT")

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreUnavailable(f"the reader of {self._path} is closed")
        return self._conn

    def _run(self, query: q.Query[T]) -> T:
        with q.translate_errors(self._path):
            rows = self._connection().execute(query.sql, query.params).fetchall()
        return query.convert(rows)

    # --- the writer's read methods, synchronously ---------------------------------------------

    def find_study(self, name: str) -> StudyRecord | None:
        return self._run(q.find_study(name))

    def get_study(self, study_id: int) -> StudyRecord:
        return self._run(q.get_study(study_id))

    def list_studies(self) -> list[StudyRecord]:
        return self._run(q.list_studies())

    def get_trial(self, trial_id: int) -> TrialRecord:
        return self._run(q.get_trial(trial_id))

    def get_trial_by_number(self, study_id: int, number: int) -> TrialRecord:
        return self._run(q.get_trial_by_number(study_id, number))

    def list_trials(
        self, study_id: int, states: Iterable[TrialState] | None = None
    ) -> list[TrialRecord]:
        return self._run(q.list_trials(study_id, states))

    def count_trials(self, study_id: int) -> TrialCounts:
        return self._run(q.count_trials(study_id))

    def best_trial(self, study_id: int, direction: Direction) -> TrialRecord | None:
        return self._run(q.best_trial(study_id, direction))

    def list_events(
        self,
        *,
        since_id: int = 0,
        study_id: int | None = None,
        limit: int = 1000,
        newest: bool = False,
        levels: Sequence[EventLevel] | None = None,
    ) -> list[EventRecord]:
        """Oldest first; the oldest `limit` events after `since_id`, or the newest `limit`."""
        return self._run(
            q.list_events(since_id=since_id, study_id=study_id, limit=limit, newest=newest,
                          levels=levels)
        )

    def metrics(self, trial_id: int, *, since_id: int = 0) -> list[tuple[int, MetricPoint]]:
        return self._run(q.metrics(trial_id, since_id=since_id))

    def metric_values(
        self, trial_id: int, name: str, *, since_id: int = 0
    ) -> list[q.MetricValue]:
        """(row id, step, value) of one metric's rows after `since_id`, oldest first; lighter
        than metrics() for a reader that follows a running trial."""
        return self._run(q.metric_values(trial_id, name, since_id=since_id))

    def values_at_step(self, study_id: int, name: str, step: int) -> dict[int, float]:
        """{trial id: the latest value of metric `name` reported at `step`} over a study."""
        return self._run(q.values_at_step(study_id, name, step))

    def steps_reported(self, study_id: int, name: str, *, settled: bool = False,
                       ) -> dict[int, int]:
        """{step: how many of the study's trials reported metric `name` at it}; `settled`: only
        the trials no longer queued or running (ended, paused at a rung, interrupted)."""
        return self._run(q.steps_reported(study_id, name, settled=settled))

    def list_commands(self, *, since_id: int = 0) -> list[CommandRecord]:
        return self._run(q.list_commands(since_id=since_id))

    def pending_commands(self) -> list[CommandRecord]:
        return self._run(q.pending_commands())

    def get_command(self, command_id: int) -> CommandRecord:
        return self._run(q.get_command(command_id))

    def latest_gpu_samples(self) -> list[GpuSample]:
        """The newest sample of each GPU (one probe read: they share its time); [] if none."""
        return self._run(q.latest_gpu_samples())

    def recent_gpu_samples(self, window: float) -> dict[int, list[GpuSample]]:
        """Each GPU's samples of the `window` seconds up to the newest one, oldest first."""
        return self._run(q.recent_gpu_samples(window))

    def data_version(self) -> int:
        """Changes whenever another connection (the daemon, a CLI) has committed."""
        return self._run(q.data_version())
