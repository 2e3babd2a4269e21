"""SQL and row conversion shared by the async writer (store.py) and the sync reader (reader.py).

Every read is a `Query`: its SQL, its parameters and the function that turns the fetched rows
into records. Each side only runs it, on its own connection, so the SQL and the conversions exist
once. Writes are plain statements plus small pure planners (`plan_transition`,
`plan_study_update`) that check the rules before anything touches the file.

NaN: SQLite stores a NaN bound to a REAL column as NULL. A metric value is never NULL otherwise,
so NULL reads back as NaN. A trial's `value` is None until the objective is first reported, so
there NULL reads back as None, and a NaN objective reads back as "no usable value" (None).
"""

from __future__ import annotations

import contextlib
import json
import math
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Generic, TypeVar

from .errors import Conflict, InvalidTransition, NotFound, StoreUnavailable
from .records import (
    ALLOWED_TRANSITIONS,
    CommandAction,
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

T = TypeVar("T")
Row = Sequence[Any]


class Unset(Enum):
    UNSET = "unset"


# Marks "leave this field as it is" where None is a meaningful new value (error=None clears it).
UNSET = Unset.UNSET

_STUDY_FINISHED = frozenset({StudyState.COMPLETE, StudyState.STOPPED, StudyState.FAILED})
INTERRUPTED_REASON = "the daemon stopped while it ran"


@dataclass(frozen=True, slots=True)
class Query(Generic[T]):
    sql: str
    params: Sequence[Any]
    convert: Callable[[list[Row]], T]


# --- values -----------------------------------------------------------------------------------


def dump_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=_json_default)


def _json_default(obj: Any) -> Any:
    # NOTE: suggesters produce numpy scalars (np.int64 is not an int); .item() gives the Python
    # value without the store importing numpy.
    item = getattr(obj, "item", None)
    if callable(item):
        return item()
    raise TypeError(f"cannot store {obj!r} of type {type(obj).__name__} as JSON")


def _load_json(text: str | None) -> Any:
    return None if text is None else json.loads(text)


# --- rows -> records --------------------------------------------------------------------------

STUDY_COLUMNS = (
    "id, name, path, state, spec_json, identity, direction, metric, error, "
    "created_at, updated_at, finished_at"
)
TRIAL_COLUMNS = (
    "id, study_id, number, params_json, state, attempt, value, last_step, reason, exit_code, "
    "checkpoint, placement, created_at, started_at, finished_at, origin, peak_gpu_memory_mb, "
    "repeat, repeat_of"
)
_EVENT_COLUMNS = "id, time, level, study_id, trial_id, message"
_COMMAND_COLUMNS = (
    "id, time, action, study, trial_number, state, applied_at, result, payload"
)


def study_from_row(r: Row) -> StudyRecord:
    return StudyRecord(
        r[0], r[1], r[2], StudyState(r[3]), _load_json(r[4]), r[5], Direction(r[6]),
        r[7], r[8], r[9], r[10], r[11],
    )  # fmt: skip


def trial_from_row(r: Row) -> TrialRecord:
    return TrialRecord(
        r[0], r[1], r[2], json.loads(r[3]), TrialState(r[4]), r[5], r[6], r[7], r[8], r[9],
        r[10], r[11], r[12], r[13], r[14], r[15], r[16], r[17], r[18],
    )  # fmt: skip


def _event_from_row(r: Row) -> EventRecord:
    return EventRecord(r[0], r[1], EventLevel(r[2]), r[3], r[4], r[5])


def _command_from_row(r: Row) -> CommandRecord:
    return CommandRecord(
        r[0], r[1], CommandAction(r[2]), r[3], r[4], CommandState(r[5]), r[6], r[7],
        _load_json(r[8]),
    )


def _metric_from_row(r: Row) -> tuple[int, MetricPoint]:
    return r[0], MetricPoint(r[1], r[2], r[3], math.nan if r[4] is None else r[4], r[5])


def _all(convert: Callable[[Row], T]) -> Callable[[list[Row]], list[T]]:
    return lambda rows: [convert(r) for r in rows]


def _optional(convert: Callable[[Row], T]) -> Callable[[list[Row]], T | None]:
    return lambda rows: convert(rows[0]) if rows else None


def _one(convert: Callable[[Row], T], missing: str) -> Callable[[list[Row]], T]:
    def one(rows: list[Row]) -> T:
        if not rows:
            raise NotFound(missing)
        return convert(rows[0])

    return one


# --- reads ------------------------------------------------------------------------------------


def find_study(name: str) -> Query[StudyRecord | None]:
    sql = f"SELECT {STUDY_COLUMNS} FROM studies WHERE name = ?"
    return Query(sql, (name,), _optional(study_from_row))


def get_study(study_id: int) -> Query[StudyRecord]:
    sql = f"SELECT {STUDY_COLUMNS} FROM studies WHERE id = ?"
    return Query(sql, (study_id,), _one(study_from_row, f"no study with id {study_id}"))


def suggester_state(study_id: int) -> Query[Any]:
    sql = "SELECT suggester_state FROM studies WHERE id = ?"
    return Query(sql, (study_id,), _one(lambda r: _load_json(r[0]), f"no study with id {study_id}"))


def list_studies() -> Query[list[StudyRecord]]:
    return Query(f"SELECT {STUDY_COLUMNS} FROM studies ORDER BY id", (), _all(study_from_row))


def get_trial(trial_id: int) -> Query[TrialRecord]:
    sql = f"SELECT {TRIAL_COLUMNS} FROM trials WHERE id = ?"
    return Query(sql, (trial_id,), _one(trial_from_row, f"no trial with id {trial_id}"))


def get_trial_by_number(study_id: int, number: int) -> Query[TrialRecord]:
    sql = f"SELECT {TRIAL_COLUMNS} FROM trials WHERE study_id = ? AND number = ?"
    missing = f"study {study_id} has no trial number {number}"
    return Query(sql, (study_id, number), _one(trial_from_row, missing))


def list_trials(
    study_id: int, states: Iterable[TrialState] | None = None
) -> Query[list[TrialRecord]]:
    sql = f"SELECT {TRIAL_COLUMNS} FROM trials WHERE study_id = ?"
    params: list[Any] = [study_id]
    if states is not None:
        wanted = sorted({TrialState(s).value for s in states})
        sql += f" AND state IN ({', '.join('?' * len(wanted))})"
        params += wanted
    return Query(sql + " ORDER BY number", params, _all(trial_from_row))


def count_trials(study_id: int) -> Query[TrialCounts]:
    sql = "SELECT state, COUNT(*) FROM trials WHERE study_id = ? GROUP BY state"
    # TrialCounts' field names are the TrialState values.
    return Query(sql, (study_id,), lambda rows: TrialCounts(**{s: n for s, n in rows}))


_BEST_ORDER = {Direction.MINIMIZE: "value ASC", Direction.MAXIMIZE: "value DESC"}


def best_trial(study_id: int, direction: Direction) -> Query[TrialRecord | None]:
    # NaN is stored as NULL, so `value > -inf AND value < inf` keeps exactly the finite values.
    sql = (
        f"SELECT {TRIAL_COLUMNS} FROM trials WHERE study_id = ? AND state = ? "
        f"AND value > ? AND value < ? ORDER BY {_BEST_ORDER[Direction(direction)]}, number LIMIT 1"
    )
    params = (study_id, TrialState.COMPLETE.value, -math.inf, math.inf)
    return Query(sql, params, _optional(trial_from_row))


def last_trial_starts() -> Query[dict[str, float]]:
    """Study name -> when its latest trial run started: when it was last given a place to run.
    A trial's started_at is that of its latest run (a resumed or retried trial's too), so the
    newest one is exact."""
    sql = (
        "SELECT s.name, MAX(t.started_at) FROM trials AS t JOIN studies AS s "
        "ON s.id = t.study_id WHERE t.started_at IS NOT NULL GROUP BY s.name"
    )
    return Query(sql, (), lambda rows: {r[0]: float(r[1]) for r in rows})


def list_events(
    *, since_id: int = 0, study_id: int | None = None, limit: int = 1000, newest: bool = False,
    levels: Sequence[EventLevel] | None = None,
) -> Query[list[EventRecord]]:
    """Events after `since_id` (of one study, of some levels, when given), oldest first: the
    oldest `limit` of them, or with `newest` the newest `limit` of them."""
    sql = f"SELECT {_EVENT_COLUMNS} FROM events WHERE id > ?"
    params: list[Any] = [since_id]
    if study_id is not None:
        sql += " AND study_id = ?"
        params.append(study_id)
    if levels is not None:
        sql += f" AND level IN ({', '.join('?' * len(levels))})"
        params.extend(EventLevel(level).value for level in levels)
    params.append(limit)
    if newest:
        # The newest `limit` rows through the primary key backwards, then back in id order:
        # `hpod events -n 20` on a long-running daemon must not read every event there is.
        sql = f"SELECT * FROM ({sql} ORDER BY id DESC LIMIT ?) ORDER BY id"
        return Query(sql, params, _all(_event_from_row))
    return Query(sql + " ORDER BY id LIMIT ?", params, _all(_event_from_row))


def metrics(trial_id: int, *, since_id: int = 0,
            names: Sequence[str] | None = None) -> Query[list[tuple[int, MetricPoint]]]:
    """A trial's metric rows after `since_id`, in report order; only the metrics `names` when
    given (a restart's replay needs the objective and the resource, not every metric a trial
    reports, and a long trial reports hundreds of thousands of rows)."""
    only = "" if names is None else f" AND name IN ({', '.join('?' * len(names))})"
    sql = (
        "SELECT id, trial_id, step, name, value, time FROM metrics "
        f"WHERE trial_id = ? AND id > ?{only} ORDER BY id"
    )
    return Query(sql, (trial_id, since_id, *(names or ())), _all(_metric_from_row))


MetricValue = tuple[int, int, float]  # (row id, step, value)


def metric_values(trial_id: int, name: str, *, since_id: int = 0) -> Query[list[MetricValue]]:
    """One metric's rows after `since_id`, in report order, as plain (row id, step, value).

    For a reader that follows a running trial at thousands of reports a second (the TUI): no
    record per row, no trial id, name or time, and no rows of the other metrics.
    """
    sql = (
        "SELECT id, step, value FROM metrics WHERE trial_id = ? AND id > ? AND name = ? "
        "ORDER BY id"
    )
    return Query(sql, (trial_id, since_id, name), _metric_values)


def values_at_step(study_id: int, name: str, step: int) -> Query[dict[int, float]]:
    """{trial id: value} of one metric at one step, for every trial of a study that reported it
    there; a step reported twice (a retried trial) keeps its latest report. NaN stays NaN."""
    sql = (
        "SELECT m.trial_id, m.value FROM metrics m JOIN trials t ON t.id = m.trial_id "
        "WHERE t.study_id = ? AND m.name = ? AND m.step = ? ORDER BY m.id"
    )
    return Query(sql, (study_id, name, step), _latest_per_trial)


def steps_reported(study_id: int, name: str, *, settled: bool = False) -> Query[dict[int, int]]:
    """{step: how many of the study's trials reported metric `name` at it}; `settled`: only
    the trials no longer queued or running (ended, paused at a rung, interrupted)."""
    sql = (
        "SELECT m.step, COUNT(DISTINCT m.trial_id) FROM metrics m JOIN trials t "
        "ON t.id = m.trial_id WHERE t.study_id = ? AND m.name = ?"
    )
    params: list[object] = [study_id, name]
    if settled:
        sql += " AND t.state NOT IN (?, ?)"
        params += [TrialState.QUEUED.value, TrialState.RUNNING.value]
    sql += " GROUP BY m.step ORDER BY m.step"
    return Query(sql, tuple(params), lambda rows: {r[0]: r[1] for r in rows})


def _latest_per_trial(rows: list[Row]) -> dict[int, float]:
    return {r[0]: math.nan if r[1] is None else r[1] for r in rows}


def _metric_values(rows: list[Row]) -> list[MetricValue]:
    # NULL is a NaN report (see the module docstring); the other rows are returned as they are.
    return [r if r[2] is not None else (r[0], r[1], math.nan) for r in rows]  # type: ignore[misc]


def list_commands(*, since_id: int = 0) -> Query[list[CommandRecord]]:
    sql = f"SELECT {_COMMAND_COLUMNS} FROM commands WHERE id > ? ORDER BY id"
    return Query(sql, (since_id,), _all(_command_from_row))


def pending_commands() -> Query[list[CommandRecord]]:
    sql = f"SELECT {_COMMAND_COLUMNS} FROM commands WHERE state = ? ORDER BY id"
    return Query(sql, (CommandState.PENDING.value,), _all(_command_from_row))


def get_command(command_id: int) -> Query[CommandRecord]:
    sql = f"SELECT {_COMMAND_COLUMNS} FROM commands WHERE id = ?"
    return Query(sql, (command_id,), _one(_command_from_row, f"no command with id {command_id}"))


def data_version() -> Query[int]:
    return Query("PRAGMA data_version", (), lambda rows: int(rows[0][0]))


def wal_checkpoint() -> Query[tuple[int, int]]:
    """A PASSIVE checkpoint (it never waits for readers): (pages in the log, pages of it now in
    the database); (-1, -1) when the database is not in WAL mode."""
    return Query("PRAGMA wal_checkpoint(PASSIVE)", (), lambda rows: (int(rows[0][1]),
                                                                     int(rows[0][2])))


def page_size() -> Query[int]:
    return Query("PRAGMA page_size", (), lambda rows: int(rows[0][0]))


def user_version() -> Query[int]:
    return Query("PRAGMA user_version", (), lambda rows: int(rows[0][0]))


def version_and_tables() -> Query[tuple[int, list[str]]]:
    """The schema version and the names of the file's own tables, read in one statement: a
    daemon migrating the file meanwhile commits both at once, so a new hpod file is never
    mistaken for another program's (version 0 with tables)."""
    sql = (
        "SELECT v.user_version, t.name FROM pragma_user_version AS v LEFT JOIN "
        "(SELECT name FROM sqlite_master WHERE type = 'table' "
        "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\') AS t ORDER BY t.name"
    )
    return Query(sql, (), _version_and_tables)


def _version_and_tables(rows: list[Row]) -> tuple[int, list[str]]:
    return int(rows[0][0]), [r[1] for r in rows if r[1] is not None]


# --- writes -----------------------------------------------------------------------------------

INSERT_STUDY = (
    "INSERT INTO studies (name, path, state, spec_json, identity, direction, metric, error, "
    "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
# The number is computed in the same statement as the insert, so it is atomic per study.
INSERT_TRIAL = (
    "INSERT INTO trials (study_id, number, params_json, state, created_at, started_at, "
    "finished_at, origin, repeat, repeat_of) SELECT ?, COALESCE(MAX(number) + 1, 0), ?, ?, ?, "
    "?, ?, ?, ?, ? FROM trials WHERE study_id = ?"
)
SET_SUGGESTER_STATE = "UPDATE studies SET suggester_state = ? WHERE id = ?"
# Only a study that never had a definition, hence never a trial (Store.forget_study).
FORGET_STUDY = (
    "DELETE FROM studies WHERE id = ? AND spec_json IS NULL"
    " AND NOT EXISTS (SELECT 1 FROM trials WHERE trials.study_id = studies.id)"
)
INSERT_METRIC = "INSERT INTO metrics (trial_id, step, name, value, time) VALUES (?, ?, ?, ?, ?)"
SET_LAST_STEP = "UPDATE trials SET last_step = ? WHERE id = ?"
SET_LAST_STEP_AND_VALUE = "UPDATE trials SET last_step = ?, value = ? WHERE id = ?"
SET_CHECKPOINT = "UPDATE trials SET checkpoint = ? WHERE id = ?"
SELECT_RUNNING_IDS = "SELECT id FROM trials WHERE state = 'running' ORDER BY id"
INSERT_EVENT = (
    "INSERT INTO events (time, level, study_id, trial_id, message) VALUES (?, ?, ?, ?, ?)"
)
INSERT_COMMAND = (
    "INSERT INTO commands (time, action, study, trial_number, state, payload) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)
FINISH_COMMAND = "UPDATE commands SET state = ?, applied_at = ?, result = ? WHERE id = ?"


def trial_insert_params(
    study_id: int, params: Mapping[str, Any], state: TrialState, now: float,
    origin: str | None = None, repeat: int = 0, repeat_of: int | None = None,
) -> tuple[Any, ...]:
    state = TrialState(state)
    started = now if state is TrialState.RUNNING else None
    finished = now if state.is_finished() else None
    return (study_id, dump_json(params), state.value, now, started, finished, origin, repeat,
            repeat_of, study_id)


def metric_rows(points: Sequence[MetricPoint]) -> Sequence[tuple[int, int, str, float, float]]:
    # MetricPoint is a tuple in the column order: executemany takes the batch as it is.
    return points


def progress_rows(
    progress: Mapping[int, tuple[int, float | None]],
) -> tuple[list[tuple[int, int]], list[tuple[int, float, int]]]:
    """Split into (step only) and (step and value) updates; a NaN value is a value, None is not."""
    steps = [(step, tid) for tid, (step, value) in progress.items() if value is None]
    values = [(step, value, tid) for tid, (step, value) in progress.items() if value is not None]
    return steps, values


def plan_study_update(
    study_id: int, now: float, changes: Mapping[str, Any]
) -> tuple[str, list[Any]]:
    """The UPDATE for the given (not UNSET) fields of a study, plus updated_at/finished_at."""
    columns: dict[str, Any] = {"updated_at": now}
    # Column -> its SQL expression where not a plain parameter (the expression's parameters).
    expressions: dict[str, tuple[str, list[Any]]] = {}
    for field, value in changes.items():
        if value is UNSET:
            continue
        if field == "spec":
            columns["spec_json"] = None if value is None else dump_json(value)
        elif field == "state":
            state = StudyState(value)
            columns["state"] = state.value
            if state in _STUDY_FINISHED:
                # When it became so: a study set to the state it is already in (a restarted
                # daemon finding a complete study) keeps its end. SET sees the row before.
                columns["finished_at"] = now
                expressions["finished_at"] = (
                    "CASE WHEN state = ? AND finished_at IS NOT NULL THEN finished_at ELSE ? END",
                    [state.value, now])
            elif state is StudyState.RUNNING:
                columns["finished_at"] = None
        elif field == "direction":
            columns["direction"] = Direction(value).value
        elif field in ("identity", "path", "error", "metric"):
            columns[field] = value
        else:
            raise ValueError(f"update_study() got an unknown field {field!r}")
    assignments, params = [], []
    for column, value in columns.items():
        sql, values = expressions.get(column, ("?", [value]))
        assignments.append(f"{column} = {sql}")
        params.extend(values)
    return f"UPDATE studies SET {', '.join(assignments)} WHERE id = ?", [*params, study_id]


def plan_transition(
    trial: TrialRecord, to: TrialState, now: float, changes: Mapping[str, Any]
) -> tuple[str, list[Any]]:
    """The UPDATE that moves `trial` to `to`; raises InvalidTransition for an illegal move.

    `changes` holds reason/exit_code/value/placement/checkpoint; UNSET ones are left alone.
    """
    to = TrialState(to)
    if to not in ALLOWED_TRANSITIONS[trial.state]:
        allowed = ", ".join(sorted(s.value for s in ALLOWED_TRANSITIONS[trial.state])) or "none"
        raise InvalidTransition(
            f"trial {trial.number} (id {trial.id}) of study {trial.study_id} cannot move from "
            f"{trial.state.value} to {to.value}; allowed from {trial.state.value}: {allowed}"
        )
    columns: dict[str, Any] = {"state": to.value}
    if to is TrialState.RUNNING:
        columns["started_at"] = now
        # Why its last run ended (interrupted, paused) says nothing about the run starting now.
        columns["reason"] = None
        columns["exit_code"] = None
    # finished_at describes the current state: set when it becomes final, cleared by a retry.
    columns["finished_at"] = now if to.is_finished() else None
    if to is TrialState.QUEUED and trial.state in (TrialState.FAILED, TrialState.INTERRUPTED):
        columns["attempt"] = trial.attempt + 1
    for field in ("reason", "exit_code", "value", "placement", "checkpoint"):
        value = changes.get(field, UNSET)
        if value is not UNSET:
            columns[field] = value
    assignments = ", ".join(f"{column} = ?" for column in columns)
    # The state guard makes the update a compare-and-set even if a caller bypassed the lock.
    sql = f"UPDATE trials SET {assignments} WHERE id = ? AND state = ?"
    return sql, [*columns.values(), trial.id, trial.state.value]


# --- GPU utilisation ----------------------------------------------------------------------------

# Every GPU of one sample shares its time (one probe read), so "the latest sample per GPU" is
# the rows at the newest time, and both reads below go through the index on time: the CLI and
# the TUI never scan a week of samples.
_GPU_SAMPLE_COLUMNS = "time, gpu, utilization, memory_used_mb, memory_total_mb"
INSERT_GPU_SAMPLE = (
    f"INSERT INTO gpu_samples ({_GPU_SAMPLE_COLUMNS}) VALUES (?, ?, ?, ?, ?)"
)
# MAX keeps the highest reading ever seen; NULL (none seen yet) loses to any reading.
RAISE_PEAK_GPU_MEMORY = (
    "UPDATE trials SET peak_gpu_memory_mb = MAX(COALESCE(peak_gpu_memory_mb, 0), ?) WHERE id = ?"
)
PRUNE_GPU_SAMPLES = "DELETE FROM gpu_samples WHERE time < ?"


def _gpu_sample_from_row(r: Row) -> GpuSample:
    return GpuSample(r[0], r[1], r[2], r[3], r[4])


def latest_gpu_samples() -> Query[list[GpuSample]]:
    sql = (
        f"SELECT {_GPU_SAMPLE_COLUMNS} FROM gpu_samples "
        "WHERE time = (SELECT MAX(time) FROM gpu_samples) ORDER BY gpu"
    )
    return Query(sql, (), _all(_gpu_sample_from_row))


def recent_gpu_samples(window: float) -> Query[dict[int, list[GpuSample]]]:
    """Each GPU's samples of the last `window` seconds before the newest one, oldest first.

    Relative to the newest sample, not to now: after the daemon stopped, the TUI still shows
    how the GPUs were doing at the end.
    """
    if not window >= 0:
        raise ValueError(f"the window must be >= 0 seconds, got {window}")
    sql = (
        f"SELECT {_GPU_SAMPLE_COLUMNS} FROM gpu_samples "
        "WHERE time >= (SELECT MAX(time) FROM gpu_samples) - ? ORDER BY time, gpu"
    )
    return Query(sql, (window,), _by_gpu)


def _by_gpu(rows: list[Row]) -> dict[int, list[GpuSample]]:
    by_gpu: dict[int, list[GpuSample]] = {}
    for r in rows:
        by_gpu.setdefault(r[1], []).append(_gpu_sample_from_row(r))
    return dict(sorted(by_gpu.items()))


def peak_rows(peaks: Mapping[int, float]) -> list[tuple[float, int]]:
    return [(mb, trial_id) for trial_id, mb in peaks.items()]


# --- errors -----------------------------------------------------------------------------------

# Primary SQLite result codes that mean "the file cannot be used right now", as opposed to a bug
# in our SQL (which must propagate as it is).
_UNAVAILABLE_CODES = frozenset(
    {
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_FULL,
        sqlite3.SQLITE_READONLY,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_CORRUPT,
        sqlite3.SQLITE_NOTADB,
        sqlite3.SQLITE_PERM,
        sqlite3.SQLITE_PROTOCOL,
    }
)


# The file itself is damaged: waiting or retrying cannot help, only a backup or a salvage.
_DAMAGED_CODES = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})


def is_unavailable(error: sqlite3.Error) -> bool:
    code = getattr(error, "sqlite_errorcode", None)
    return code is not None and (code & 0xFF) in _UNAVAILABLE_CODES


def is_damaged(error: sqlite3.Error) -> bool:
    code = getattr(error, "sqlite_errorcode", None)
    return code is not None and (code & 0xFF) in _DAMAGED_CODES


def damaged_message(path: object, error: sqlite3.Error) -> str:
    """What to do about a damaged file. `.recover` copies every row it can still read, and the
    schema version with them, into a new file that a daemon then serves as it is."""
    salvaged = f"{path}.recovered"
    return (
        f"the hpod database at {path} is damaged ({error}). Fix: stop the daemon, then restore "
        f"the file from a backup, or salvage what is left with "
        f"`sqlite3 {path} .recover | sqlite3 {salvaged}` (an sqlite3 with .recover: 3.29 or "
        f"newer, built with the dbpage table) and serve that: `{serve_command(salvaged)}`"
    )


def serve_command(path: object) -> str:
    """The `hpod serve` command that opens the database at `path`."""
    db = Path(str(path))
    # The default layout is FOLDER/.hpod/hpod.db: serving FOLDER opens exactly that file.
    if db.parent.name == ".hpod":
        folder = db.parent.parent
        return f"hpod serve {folder}" if db.name == "hpod.db" else f"hpod serve {folder} --db {db}"
    return f"hpod serve FOLDER --db {db}"


def unavailable_message(path: object, error: sqlite3.Error) -> str:
    if is_damaged(error):
        return damaged_message(path, error)
    return f"the hpod database at {path} is unavailable: {error}"


@contextlib.contextmanager
def translate_errors(path: object) -> Iterator[None]:
    """Map driver errors: IntegrityError -> Conflict, I/O-ish ones -> StoreUnavailable."""
    try:
        yield
    except sqlite3.IntegrityError as e:
        raise Conflict(f"{e} (in the hpod database at {path})") from e
    except sqlite3.Error as e:
        if is_unavailable(e):
            raise StoreUnavailable(unavailable_message(path, e)) from e
        raise
