"""The one writer: an async Store over aiosqlite, opened with `open_store(path)`.

aiosqlite runs every call on one thread, but a transaction spans several awaits, so an
asyncio.Lock keeps two coroutines from interleaving statements inside each other's transaction;
reads take it too, so they never see another coroutine's uncommitted rows.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from . import queries as q
from . import schema
from .errors import Conflict, NotFound, StoreUnavailable
from .queries import UNSET, Unset
from .records import (
    CommandRecord,
    CommandState,
    Direction,
    EventLevel,
    EventRecord,
    GpuSample,
    MetricPoint,
    StudyRecord,
    StudyState,
    TrialCounts,
    TrialRecord,
    TrialState,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")


@asynccontextmanager
async def open_store(
    path: str | Path, *, clock: Callable[[], float] = time.time
) -> AsyncIterator[Store]:
    """Open (creating and migrating as needed) the database at `path` for writing.

    `clock` stamps every time column; tests and seeded fixtures pass a fixed one.
    """
    store = await Store.open(path, clock=clock)
    try:
        yield store
    finally:
        await store.close()


class Store:
    """Async access for the daemon, the only writer. Create it with `open_store`."""

    def __init__(self, conn: aiosqlite.Connection, path: Path, clock: Callable[[], float]):
        self._conn: aiosqlite.Connection | None = conn
        self._path = path
        self._clock = clock
        self._lock = asyncio.Lock()

    @classmethod
    async def open(cls, path: str | Path, *, clock: Callable[[], float] = time.time) -> Store:
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            conn = await aiosqlite.connect(path, isolation_level=None)
        except (OSError, sqlite3.Error) as e:
            raise StoreUnavailable(f"cannot open the hpod database at {path}: {e}") from e
        try:
            # Refuse a newer file, or another program's, before _configure touches it
            # (journal_mode is stored in the file: switching it to WAL would change theirs).
            version, tables = await _fetch(conn, q.version_and_tables())
            schema.check_not_too_new(version, path=path)
            if version == 0 and tables:
                raise StoreUnavailable(schema.foreign_database_message(path, tables))
            await _configure(conn, path)
            await _migrate(conn, path)
        except BaseException as e:
            await conn.close()
            if isinstance(e, sqlite3.Error):
                message = (q.damaged_message(path, e) if q.is_damaged(e)
                           else f"cannot open the hpod database at {path}: {e}")
                raise StoreUnavailable(message) from e
            raise
        return cls(conn, path, clock)

    @property
    def path(self) -> Path:
        return self._path

    def __repr__(self) -> str:
        return f"<Store {self._path} {'open' if self._conn is not None else 'closed'}>"

    async def close(self) -> None:
        async with self._lock:
            if self._conn is not None:
                conn, self._conn = self._conn, None
                await conn.close()

    # --- plumbing -----------------------------------------------------------------------------

    def _connection(self) -> aiosqlite.Connection:
        if self._conn is None:
            raise StoreUnavailable(f"the hpod database at {self._path} is closed")
        return self._conn

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """One write transaction: commit on success, roll back on any error or cancellation.

        BEGIN IMMEDIATE takes the write lock up front, so a transaction that reads then writes
        never fails half-way with SQLITE_BUSY because a CLI inserted a command meanwhile.
        """
        async with self._lock:
            conn = self._connection()
            with q.translate_errors(self._path):
                try:
                    # Inside the try: if cancelled while BEGIN is queued on aiosqlite's thread,
                    # BEGIN still runs there, and the ROLLBACK queued behind it undoes it.
                    await conn.execute("BEGIN IMMEDIATE")
                    yield conn
                    await conn.commit()
                except BaseException:
                    await self._rollback(conn)
                    raise

    async def _rollback(self, conn: aiosqlite.Connection) -> None:
        try:
            await conn.rollback()
        except sqlite3.Error:
            # The original error is the one worth raising; this one is only logged.
            logger.exception("rolling back a transaction on %s failed", self._path)

    async def _run(self, query: q.Query[T]) -> T:
        async with self._lock:
            with q.translate_errors(self._path):
                return await _fetch(self._connection(), query)

    # --- studies ------------------------------------------------------------------------------

    async def create_study(
        self,
        name: str,
        path: str,
        *,
        spec: dict[str, Any] | None,
        identity: str,
        direction: Direction,
        metric: str,
        state: StudyState = StudyState.RUNNING,
        error: str | None = None,
    ) -> StudyRecord:
        now = self._clock()
        async with self._transaction() as conn:
            existing = await _fetch(conn, q.find_study(name))
            if existing is not None:
                raise Conflict(f"a study named {name!r} already exists (id {existing.id})")
            spec_json = None if spec is None else q.dump_json(spec)
            params = (name, str(path), StudyState(state).value, spec_json, identity,
                      Direction(direction).value, metric, error, now, now)  # fmt: skip
            study_id, _ = await _execute(conn, q.INSERT_STUDY, params)
            return await _fetch(conn, q.get_study(study_id))

    async def find_study(self, name: str) -> StudyRecord | None:
        return await self._run(q.find_study(name))

    async def get_study(self, study_id: int) -> StudyRecord:
        return await self._run(q.get_study(study_id))

    async def list_studies(self) -> list[StudyRecord]:
        return await self._run(q.list_studies())

    async def suggester_state(self, study_id: int) -> Any:
        """The state the study's suggester was saved with (create_trial), None if never."""
        return await self._run(q.suggester_state(study_id))

    async def set_suggester_state(self, study_id: int, state: Mapping[str, Any] | None) -> None:
        """Replace (None: clear) the study's saved suggester state outside a trial's creation."""
        text = None if state is None else q.dump_json(state)
        async with self._transaction() as conn:
            _, rowcount = await _execute(conn, q.SET_SUGGESTER_STATE, (text, study_id))
            if rowcount == 0:
                raise NotFound(f"no study with id {study_id}")

    async def update_study(
        self,
        study_id: int,
        *,
        state: StudyState | Unset = UNSET,
        spec: dict[str, Any] | Unset | None = UNSET,
        identity: str | Unset = UNSET,
        path: str | Unset = UNSET,
        error: str | Unset | None = UNSET,
        direction: Direction | Unset = UNSET,
        metric: str | Unset = UNSET,
    ) -> StudyRecord:
        changes = {"state": state, "spec": spec, "identity": identity, "path": path,
                   "error": error, "direction": direction, "metric": metric}  # fmt: skip
        sql, params = q.plan_study_update(study_id, self._clock(), changes)
        async with self._transaction() as conn:
            _, rowcount = await _execute(conn, sql, params)
            if rowcount == 0:
                raise NotFound(f"no study with id {study_id}")
            return await _fetch(conn, q.get_study(study_id))

    async def forget_study(self, study_id: int) -> bool:
        """Delete a study that never had a valid definition (a file recorded as a broken study
        that turned out to hold none). Its events stay, no longer tied to it. False, deleting
        nothing, for a study that ever had a definition or a trial: their data is never lost."""
        async with self._transaction() as conn:
            _, rowcount = await _execute(conn, q.FORGET_STUDY, (study_id,))
            return rowcount == 1

    # --- trials -------------------------------------------------------------------------------

    async def create_trial(
        self,
        study_id: int,
        params: dict[str, Any],
        *,
        state: TrialState = TrialState.QUEUED,
        origin: str | None = None,
        suggester_state: Mapping[str, Any] | None = None,
    ) -> TrialRecord:
        """`origin` says where the point came from: None for the suggester, "file:..." for one of
        the study file's enqueued points, "user:..." for `hpod enqueue`. `suggester_state`, when
        given, replaces the study's saved one in the same transaction: the state that proposed
        a trial is never lost while the trial is kept, nor kept without it."""
        row = q.trial_insert_params(study_id, params, state, self._clock(), origin)
        async with self._transaction() as conn:
            await _fetch(conn, q.get_study(study_id))  # NotFound rather than a foreign-key Conflict
            trial_id, _ = await _execute(conn, q.INSERT_TRIAL, row)
            await _save_suggester_state(conn, study_id, suggester_state)
            return await _fetch(conn, q.get_trial(trial_id))

    async def create_runs(
        self,
        study_id: int,
        params: dict[str, Any],
        repeats: int,
        *,
        origin: str | None = None,
        suggester_state: Mapping[str, Any] | None = None,
    ) -> list[TrialRecord]:
        """A configuration's `repeats` queued runs (`[trial] repeats`), in one transaction: a
        crash never leaves a configuration with fewer runs than its study asks for. The first
        run is the configuration's number; the others name it in `repeat_of`.
        `suggester_state` as for create_trial."""
        if repeats < 1:
            raise ValueError(f"a configuration needs at least 1 run, got {repeats}")
        now = self._clock()
        async with self._transaction() as conn:
            await _fetch(conn, q.get_study(study_id))
            first_id, _ = await _execute(
                conn, q.INSERT_TRIAL, q.trial_insert_params(study_id, params, TrialState.QUEUED,
                                                            now, origin))
            first = await _fetch(conn, q.get_trial(first_id))
            runs = [first]
            for repeat in range(1, repeats):
                trial_id, _ = await _execute(
                    conn, q.INSERT_TRIAL,
                    q.trial_insert_params(study_id, params, TrialState.QUEUED, now, origin,
                                          repeat, first.number))
                runs.append(await _fetch(conn, q.get_trial(trial_id)))
            await _save_suggester_state(conn, study_id, suggester_state)
            return runs

    async def transition(
        self,
        trial_id: int,
        to: TrialState,
        *,
        reason: str | Unset | None = UNSET,
        exit_code: int | Unset | None = UNSET,
        value: float | Unset | None = UNSET,
        placement: str | Unset | None = UNSET,
        checkpoint: str | Unset | None = UNSET,
    ) -> TrialRecord:
        changes = {"reason": reason, "exit_code": exit_code, "value": value,
                   "placement": placement, "checkpoint": checkpoint}  # fmt: skip
        async with self._transaction() as conn:
            return await self._transition(conn, trial_id, to, changes)

    async def _transition(
        self, conn: aiosqlite.Connection, trial_id: int, to: TrialState, changes: Mapping[str, Any]
    ) -> TrialRecord:
        trial = await _fetch(conn, q.get_trial(trial_id))
        sql, params = q.plan_transition(trial, to, self._clock(), changes)
        _, rowcount = await _execute(conn, sql, params)
        assert rowcount == 1, "the state guard cannot miss while the lock is held"
        return await _fetch(conn, q.get_trial(trial_id))

    async def set_checkpoint(self, trial_id: int, path: str | None) -> None:
        """The trial's latest checkpoint; None once it has been deleted."""
        async with self._transaction() as conn:
            _, rowcount = await _execute(conn, q.SET_CHECKPOINT,
                                         (None if path is None else str(path), trial_id))
            if rowcount == 0:
                raise NotFound(f"no trial with id {trial_id}")

    async def add_metrics(
        self,
        points: Sequence[MetricPoint],
        progress: Mapping[int, tuple[int, float | None]],
    ) -> None:
        """Store a batch of reports and each trial's (last_step, value) in one transaction.

        A None value leaves the trial's value alone; NaN is a value (stored as "none usable").
        """
        if not points and not progress:
            return
        steps, values = q.progress_rows(progress)
        async with self._transaction() as conn:
            await conn.executemany(q.INSERT_METRIC, q.metric_rows(points))
            if steps:
                await conn.executemany(q.SET_LAST_STEP, steps)
            if values:
                await conn.executemany(q.SET_LAST_STEP_AND_VALUE, values)
        logger.debug("stored %d metric points for %d trials", len(points), len(progress))

    async def get_trial(self, trial_id: int) -> TrialRecord:
        return await self._run(q.get_trial(trial_id))

    async def get_trial_by_number(self, study_id: int, number: int) -> TrialRecord:
        return await self._run(q.get_trial_by_number(study_id, number))

    async def list_trials(
        self, study_id: int, states: Iterable[TrialState] | None = None
    ) -> list[TrialRecord]:
        return await self._run(q.list_trials(study_id, states))

    async def count_trials(self, study_id: int) -> TrialCounts:
        return await self._run(q.count_trials(study_id))

    async def best_trial(self, study_id: int, direction: Direction) -> TrialRecord | None:
        return await self._run(q.best_trial(study_id, direction))

    async def last_trial_starts(self) -> dict[str, float]:
        """Study name -> the start of its latest trial run (queries.last_trial_starts)."""
        return await self._run(q.last_trial_starts())

    async def interrupt_running(self) -> list[TrialRecord]:
        """Startup reconciliation: trials left RUNNING by a dead daemon become INTERRUPTED."""
        changes = {"reason": q.INTERRUPTED_REASON}
        async with self._transaction() as conn:
            running = await conn.execute_fetchall(q.SELECT_RUNNING_IDS)
            return [await self._transition(conn, r[0], TrialState.INTERRUPTED, changes)
                    for r in running]  # fmt: skip

    async def metrics(self, trial_id: int, *, since_id: int = 0,
                      names: Sequence[str] | None = None) -> list[tuple[int, MetricPoint]]:
        """A trial's metric rows after `since_id` in report order, only `names` when given."""
        return await self._run(q.metrics(trial_id, since_id=since_id, names=names))

    # --- GPU utilisation ----------------------------------------------------------------------

    async def add_gpu_samples(
        self, samples: Sequence[GpuSample], peaks: Mapping[int, float] | None = None
    ) -> None:
        """Store one round of GPU samples and raise trials' peak GPU memory (MiB, by trial id)
        in one transaction: one commit per sampling round, whatever the number of GPUs."""
        peak_rows = q.peak_rows(peaks or {})
        if not samples and not peak_rows:
            return
        async with self._transaction() as conn:
            if samples:
                await conn.executemany(q.INSERT_GPU_SAMPLE, samples)
            if peak_rows:
                await conn.executemany(q.RAISE_PEAK_GPU_MEMORY, peak_rows)

    async def prune_gpu_samples(self, before: float) -> int:
        """Delete the samples older than `before` (a unix time); how many went."""
        async with self._transaction() as conn:
            _, rowcount = await _execute(conn, q.PRUNE_GPU_SAMPLES, (before,))
            return rowcount

    async def latest_gpu_samples(self) -> list[GpuSample]:
        return await self._run(q.latest_gpu_samples())

    async def recent_gpu_samples(self, window: float) -> dict[int, list[GpuSample]]:
        return await self._run(q.recent_gpu_samples(window))

    # --- events and commands ------------------------------------------------------------------

    async def record_event(
        self,
        level: EventLevel,
        message: str,
        *,
        study_id: int | None = None,
        trial_id: int | None = None,
    ) -> int:
        params = (self._clock(), EventLevel(level).value, study_id, trial_id, message)
        async with self._transaction() as conn:
            event_id, _ = await _execute(conn, q.INSERT_EVENT, params)
            return event_id

    async def list_events(
        self,
        *,
        since_id: int = 0,
        study_id: int | None = None,
        limit: int = 1000,
        newest: bool = False,
        levels: Sequence[EventLevel] | None = None,
    ) -> list[EventRecord]:
        """Oldest first; the oldest `limit` events after `since_id`, or the newest `limit`."""
        return await self._run(
            q.list_events(since_id=since_id, study_id=study_id, limit=limit, newest=newest,
                          levels=levels)
        )

    async def pending_commands(self) -> list[CommandRecord]:
        return await self._run(q.pending_commands())

    async def list_commands(self, *, since_id: int = 0) -> list[CommandRecord]:
        return await self._run(q.list_commands(since_id=since_id))

    async def finish_command(self, command_id: int, state: CommandState, result: str) -> None:
        """Record what became of a pending command; it can be finished only once."""
        state = CommandState(state)
        if state is CommandState.PENDING:
            raise ValueError("finish_command() needs a final state (applied or rejected)")
        async with self._transaction() as conn:
            command = await _fetch(conn, q.get_command(command_id))
            if command.state is not CommandState.PENDING:
                raise Conflict(f"command {command_id} is already {command.state.value}")
            await _execute(conn, q.FINISH_COMMAND, (state.value, self._clock(), result, command_id))

    async def checkpoint_wal(self) -> tuple[int, int]:
        """Copy what no reader still needs from the write-ahead log into the database, without
        waiting for anyone: (bytes in the log, bytes of it now in the database)."""
        async with self._lock:
            with q.translate_errors(self._path):
                conn = self._connection()
                page = await _fetch(conn, q.page_size())
                log, done = await _fetch(conn, q.wal_checkpoint())
        return max(log, 0) * page, max(done, 0) * page

    async def data_version(self) -> int:
        """Changes whenever ANOTHER connection commits: a cheap "anything new?" check."""
        return await self._run(q.data_version())


async def _fetch(conn: aiosqlite.Connection, query: q.Query[T]) -> T:
    rows = await conn.execute_fetchall(query.sql, query.params)
    return query.convert(list(rows))


async def _save_suggester_state(conn: aiosqlite.Connection, study_id: int,
                                state: Mapping[str, Any] | None) -> None:
    if state is not None:
        await _execute(conn, q.SET_SUGGESTER_STATE, (q.dump_json(state), study_id))


async def _execute(conn: aiosqlite.Connection, sql: str, params: Sequence[Any]) -> tuple[int, int]:
    """Run one statement; returns (lastrowid, rowcount)."""
    async with conn.execute(sql, params) as cursor:
        return cursor.lastrowid or 0, cursor.rowcount


async def _configure(conn: aiosqlite.Connection, path: Path) -> None:
    # busy_timeout first, so switching to WAL waits for a concurrent opener instead of failing.
    await conn.execute(f"PRAGMA busy_timeout = {schema.BUSY_TIMEOUT_MS}")
    mode = await _enter_wal(conn)
    if str(mode).lower() != "wal":
        # e.g. some network filesystems: it still works, but readers can then block the writer.
        logger.warning("the hpod database at %s could not use WAL (journal mode %s)", path, mode)
    # FULL: a commit is on disk when it returns, so a power cut loses no recorded outcome (with
    # NORMAL the tail of the WAL may go, and with it trials that had completed). It costs one
    # fsync per transaction, which the batched metric writes keep to a few per second.
    await conn.execute("PRAGMA synchronous = FULL")
    await conn.execute("PRAGMA foreign_keys = ON")
    await conn.execute(f"PRAGMA journal_size_limit = {schema.WAL_SIZE_LIMIT}")


async def _enter_wal(conn: aiosqlite.Connection) -> str:
    """Switch to WAL. NOTE: SQLite answers SQLITE_BUSY at once, without calling the busy
    handler, when another connection opens the same new file at that moment; the switch is
    retried for as long as the busy timeout would have waited."""
    deadline = time.monotonic() + schema.BUSY_TIMEOUT_MS / 1000
    delay = 0.005
    while True:
        try:
            rows = await conn.execute_fetchall("PRAGMA journal_mode = WAL")
            return str(next(iter(rows))[0])
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            await asyncio.sleep(delay)  # another process holds the lock: nothing to await
            delay = min(delay * 2, 0.1)


async def _migrate(conn: aiosqlite.Connection, path: Path) -> None:
    """Apply the missing migrations in one transaction (user_version is transactional)."""
    try:
        await conn.execute("BEGIN IMMEDIATE")
        current = await _fetch(conn, q.user_version())
        for version, statements in schema.pending_migrations(current, path=path):
            for statement in statements:
                await conn.execute(statement)
            await conn.execute(f"PRAGMA user_version = {version}")
            logger.info("migrated the hpod database at %s to schema version %d", path, version)
        await conn.commit()
    except BaseException:
        await conn.rollback()
        raise


__all__ = ["Store", "open_store"]
