"""Which daemon serves a database, asked without taking its lock."""

from __future__ import annotations

import os
from pathlib import Path

from hpod.lock import DaemonLock, serving_pid


def test_the_daemon_holding_the_lock_is_found_and_none_once_it_lets_go(tmp_path: Path) -> None:
    db = tmp_path / ".hpod" / "hpod.db"
    assert serving_pid(db) is None  # no lock file yet
    with DaemonLock(db):
        assert serving_pid(db) == os.getpid()
        assert serving_pid(db) == os.getpid()  # asking took nothing
    assert serving_pid(db) is None  # the file stays, with a pid no lock backs
    with DaemonLock(db):  # so a daemon can still take it
        assert serving_pid(db) == os.getpid()
