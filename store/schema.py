"""The database layout and its migrations, keyed by ``PRAGMA user_version``.

A file at version N has had ``MIGRATIONS[0:N]`` applied. To change the layout, append a new
migration (never edit a released one) and add a fixture database at the old version to
tests/store so the upgrade path stays tested.
"""

from __future__ import annotations

from .errors import SchemaTooNew

# Each migration is a tuple of single SQL statements (not a script): the writer runs them one by
# one inside the same BEGIN IMMEDIATE transaction that bumps user_version, so a migration is
# all-or-nothing and two processes opening the same new file cannot both apply it.
_V1: tuple[str, ...] = (
    """
    CREATE TABLE studies (
        id INTEGER PRIMARY KEY,
        name TEXT UNIQUE NOT NULL,
        path TEXT NOT NULL,
        state TEXT NOT NULL,
        spec_json TEXT NULL,
        identity TEXT NOT NULL,
        direction TEXT NOT NULL,
        metric TEXT NOT NULL,
        error TEXT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        finished_at REAL NULL
    )
    """,
    """
    CREATE TABLE trials (
        id INTEGER PRIMARY KEY,
        study_id INTEGER NOT NULL REFERENCES studies(id) ON DELETE CASCADE,
        number INTEGER NOT NULL,
        params_json TEXT NOT NULL,
        state TEXT NOT NULL,
        attempt INTEGER NOT NULL DEFAULT 0,
        value REAL NULL,
        last_step INTEGER NULL,
        reason TEXT NULL,
        exit_code INTEGER NULL,
        checkpoint TEXT NULL,
        placement TEXT NULL,
        created_at REAL NOT NULL,
        started_at REAL NULL,
        finished_at REAL NULL,
        UNIQUE (study_id, number)
    )
    """,
    "CREATE INDEX trials_by_study_state ON trials (study_id, state)",
    # NOTE: metrics.value is NULL for a NaN report (SQLite cannot store NaN); see queries.py.
    """
    CREATE TABLE metrics (
        id INTEGER PRIMARY KEY,
        trial_id INTEGER NOT NULL REFERENCES trials(id) ON DELETE CASCADE,
        step INTEGER NOT NULL,
        name TEXT NOT NULL,
        value REAL NULL,
        time REAL NOT NULL
    )
    """,
    "CREATE INDEX metrics_by_trial ON metrics (trial_id, id)",
    """
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        time REAL NOT NULL,
        level TEXT NOT NULL,
        study_id INTEGER NULL REFERENCES studies(id) ON DELETE SET NULL,
        trial_id INTEGER NULL REFERENCES trials(id) ON DELETE SET NULL,
        message TEXT NOT NULL
    )
    """,
    "CREATE INDEX events_by_study ON events (study_id, id)",
    # `study` is the study's name, not its id: the CLI and TUI address studies by name and a
    # command for a study that is gone must still be recordable (and then rejected).
    """
    CREATE TABLE commands (
        id INTEGER PRIMARY KEY,
        time REAL NOT NULL,
        action TEXT NOT NULL,
        study TEXT NOT NULL,
        trial_number INTEGER NULL,
        state TEXT NOT NULL,
        applied_at REAL NULL,
        result TEXT NULL
    )
    """,
)

# v2: where a trial came from (enqueued points must run exactly once, also across restarts),
# and a JSON payload for commands that carry data (`hpod enqueue`'s params).
_V2: tuple[str, ...] = (
    "ALTER TABLE trials ADD COLUMN origin TEXT NULL",
    "ALTER TABLE commands ADD COLUMN payload TEXT NULL",
)

# v3: GPU utilisation over time and each trial's peak GPU memory (issue 6); repeated runs of
# one configuration (`[trial] repeats`): `repeat` counts from 0 and `repeat_of` is the number of
# the configuration's first run (NULL for that run itself and for unrepeated trials).
_V3: tuple[str, ...] = (
    """
    CREATE TABLE gpu_samples (
        id INTEGER PRIMARY KEY,
        time REAL NOT NULL,
        gpu INTEGER NOT NULL,
        utilization REAL NULL,
        memory_used_mb REAL NULL,
        memory_total_mb REAL NULL
    )
    """,
    "CREATE INDEX gpu_samples_by_time ON gpu_samples (time)",
    "ALTER TABLE trials ADD COLUMN peak_gpu_memory_mb REAL NULL",
    "ALTER TABLE trials ADD COLUMN repeat INTEGER NOT NULL DEFAULT 0",
    "ALTER TABLE trials ADD COLUMN repeat_of INTEGER NULL",
)

# v4: what a study's suggester knows beyond its trials (a kernel's warm start, a portfolio's
# gains), saved with each trial it proposes so a restarted daemon goes on where it stopped.
# JSON; NULL for suggesters with nothing to save. Not in StudyRecord: only the daemon reads it.
_V4: tuple[str, ...] = (
    "ALTER TABLE studies ADD COLUMN suggester_state TEXT NULL",
)

MIGRATIONS: tuple[tuple[str, ...], ...] = (_V1, _V2, _V3, _V4)
LATEST_VERSION = len(MIGRATIONS)

# Session settings every connection applies (they are not stored in the file, except
# journal_mode, which the writer sets once). 5 s covers a checkpoint or a concurrent
# short command insert without surfacing "database is locked".
BUSY_TIMEOUT_MS = 5000
# The write-ahead log is cut back to this size when it restarts: a log that a long-held reader
# let grow (hpod.wal_watch) would otherwise keep its largest size on disk for good.
WAL_SIZE_LIMIT = 16 * 1024 * 1024


def pending_migrations(current: int, *, path: object) -> list[tuple[int, tuple[str, ...]]]:
    """The (target_version, statements) steps that bring a file at `current` up to date.

    Raises SchemaTooNew when the file was written by a newer hpod than this one.
    """
    check_not_too_new(current, path=path)
    return [
        (version, MIGRATIONS[version - 1]) for version in range(current + 1, LATEST_VERSION + 1)
    ]


def check_not_too_new(current: int, *, path: object) -> None:
    if current > LATEST_VERSION:
        raise SchemaTooNew(
            f"the hpod database at {path} has schema version {current}, but this hpod only "
            f"knows versions up to {LATEST_VERSION}; upgrade hpod to use it"
        )


def foreign_database_message(path: object, tables: list[str]) -> str:
    """For a file with tables but no hpod schema version: another program's database."""
    shown = ", ".join(tables[:5]) + (f" and {len(tables) - 5} more" if len(tables) > 5 else "")
    return (
        f"{path} is an SQLite database, but not hpod's (it has tables {shown} and no hpod "
        "schema version); hpod left it unchanged. Fix: give --db a new file or an hpod database"
    )
