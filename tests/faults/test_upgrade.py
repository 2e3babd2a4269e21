"""A study left half-done by an older hpod (killed with SIGKILL) goes on under this one.

Each tests/store/fixtures/daemon/vN.sql is a real database of schema version N, written by
make_upgrade_fixture.py running the hpod release of that schema. The test restores it into a
fresh folder beside the same study file, starts this hpod's daemon, and checks that the file
was migrated, that the completed trials are untouched, that the interrupted ones resumed from
their checkpoints, and that the study ends with exactly its budget. Before the next schema
change, add the dump of the current version (see make_upgrade_fixture.py): the test picks it up
by its name.
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import sys
from pathlib import Path

import pytest

from helpers import REPO, hpod_cli, study_status, write_study
from hpod.store import LATEST_VERSION, TrialState
from robustness_support import STEADY, UPGRADE_STUDY, db_of, integrity, trials_of

pytestmark = pytest.mark.slow

DUMPS = sorted((REPO / "tests" / "store" / "fixtures" / "daemon").glob("v*.sql"))


def _version(dump: Path) -> int:
    return int(dump.stem[1:])


def restore(dump: Path, folder: Path) -> Path:
    """The dump as a database file at FOLDER/.hpod/hpod.db, with its study file and script."""
    shutil.copy(STEADY, folder / "steady.py")
    write_study(folder, "upgrade", UPGRADE_STUDY)
    db = db_of(folder)
    db.parent.mkdir(parents=True)
    text = dump.read_text().replace("@FOLDER@", str(folder)).replace("@PYTHON@", sys.executable)
    conn = sqlite3.connect(db)
    try:
        conn.executescript(text)
        conn.execute(f"PRAGMA user_version = {_version(dump)}")
        # steady.py's checkpoints hold the step they were written at.
        for (path,) in conn.execute("SELECT checkpoint FROM trials WHERE checkpoint IS NOT NULL"):
            checkpoint = Path(path)
            checkpoint.parent.mkdir(parents=True, exist_ok=True)
            checkpoint.write_text(re.fullmatch(r"ckpt-(\d+)", checkpoint.name).group(1))
    finally:
        conn.close()
    return db


def test_every_old_schema_has_a_mid_study_dump() -> None:
    versions = [_version(p) for p in DUMPS]
    assert set(range(1, LATEST_VERSION)) <= set(versions), (
        "add tests/store/fixtures/daemon/vN.sql for every schema version older than the "
        "latest (tests/faults/make_upgrade_fixture.py)")


@pytest.mark.parametrize("dump", DUMPS, ids=[p.stem for p in DUMPS])
def test_a_half_done_study_of_an_older_hpod_goes_on(tmp_path: Path, start_daemon,
                                                    dump: Path) -> None:
    db = restore(dump, tmp_path)
    before = _raw_trials(db)
    done = {n for n, t in before.items() if t[0] == "complete"}
    interrupted = {n for n, t in before.items() if t[0] == "running"}
    assert len(done) == 2 and len(interrupted) == 2  # what make_upgrade_fixture.py leaves

    if _version(dump) < LATEST_VERSION:
        # The CLI reads only an up-to-date file, and says how to get one.
        # (That it says so without a traceback is test_store_faults.py's business.)
        status = hpod_cli("status", tmp_path, check=False)
        assert status.returncode != 0
        assert f"older schema version {_version(dump)}" in status.stderr
        assert "hpod serve" in status.stderr

    daemon = start_daemon(tmp_path, "--exit-when-idle")
    assert daemon.wait() == 0, daemon.log()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == LATEST_VERSION
    assert integrity(db) == "ok"

    trials = {t.number: t for t in trials_of(tmp_path, "upgrade")}
    assert sorted(trials) == list(range(6))
    assert {t.state for t in trials.values()} == {TrialState.COMPLETE}
    assert study_status(tmp_path, "upgrade")["state"] == "complete"
    for number in done:  # untouched: same value, same finish, never run again
        state, params, value, finished_at, attempt = before[number]
        trial = trials[number]
        assert (trial.params, trial.value, trial.finished_at, trial.attempt) == \
            (params, value, finished_at, attempt)
        assert _runs(tmp_path, number) is None
    for number in interrupted:  # same params, resumed from the checkpoint the old hpod noted
        trial = trials[number]
        assert trial.params == before[number][1] and trial.attempt == 1
        ((attempt, first),) = _runs(tmp_path, number)
        assert attempt == 1 and first > 2


def _raw_trials(db: Path) -> dict[int, tuple]:
    """number -> (state, params, value, finished_at, attempt), read with plain SQL: the old
    layout may not fit this hpod's reader."""
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT number, state, params_json, value, finished_at, attempt FROM trials")
        return {r[0]: (r[1], json.loads(r[2]), r[3], r[4], r[5]) for r in rows}


def _runs(folder: Path, number: int) -> list[tuple[int, int]] | None:
    """The starts steady.py logged under this hpod (None: it never started here)."""
    path = folder / ".hpod" / "trials" / "upgrade" / f"{number:05d}" / "runs"
    if not path.exists():
        return None
    return [tuple(map(int, line.split())) for line in path.read_text().splitlines()]
