"""Write a mid-study database of an older hpod, for tests/faults/test_upgrade.py.

    git archive vN | tar -x -C /tmp/hpod-vN          # the release whose schema is N
    ln -s ../store /tmp/hpod-vN/hpod/store           # what the editable install maps
    python tests/faults/make_upgrade_fixture.py /tmp/hpod-vN \\
        tests/store/fixtures/daemon/vN.sql

Do it before bumping the schema to N+1 (the file name must be the schema version it holds).
It runs that hpod's daemon on UPGRADE_STUDY, kills it with SIGKILL once two trials are complete
and two run with a checkpoint, and dumps the file as SQL with the folder and the interpreter
replaced by @FOLDER@ and @PYTHON@ (the test puts its own back).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from robustness_support import STEADY, UPGRADE_STUDY


def _trials(db: Path) -> list[tuple[str, str | None, int | None]]:
    if not db.exists():
        return []
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            return conn.execute("SELECT state, checkpoint, last_step FROM trials").fetchall()
        finally:
            conn.close()
    except sqlite3.Error:
        return []  # not created yet


def _ready(rows: list[tuple[str, str | None, int | None]]) -> bool:
    complete = sum(state == "complete" for state, _, _ in rows)
    resumable = sum(state == "running" and ckpt is not None and (step or 0) >= 2
                    for state, ckpt, step in rows)
    return complete >= 2 and resumable == 2


def make(source: Path, out: Path) -> None:
    folder = Path(tempfile.mkdtemp(prefix="hpod-upgrade-"))
    try:
        shutil.copy(STEADY, folder / "steady.py")
        (folder / "upgrade.toml").write_text(UPGRADE_STUDY)
        db = folder / ".hpod" / "hpod.db"
        env = {**os.environ, "PYTHONPATH": str(source)}
        log = (folder / "daemon.log").open("w")
        daemon = subprocess.Popen([sys.executable, "-m", "hpod", "serve", str(folder),
                                   "--slots", "2"], env=env, cwd=folder.parent,
                                  stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while not _ready(_trials(db)):
            if time.monotonic() > deadline or daemon.poll() is not None:
                daemon.kill()
                raise SystemExit("the daemon never reached the state to dump:\n"
                                 + (folder / "daemon.log").read_text())
            time.sleep(0.02)
        daemon.send_signal(signal.SIGKILL)
        daemon.wait()
        conn = sqlite3.connect(db)
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        dump = "\n".join(conn.iterdump())
        conn.close()
        if out.stem != f"v{version}":
            raise SystemExit(f"{source} writes schema version {version}; name the file "
                             f"v{version}.sql")
        python = os.path.normpath(os.path.abspath(sys.executable))
        dump = dump.replace(str(folder), "@FOLDER@").replace(python, "@PYTHON@")
        header = (f"-- A database of hpod schema version {version}, left by `kill -9` of its "
                  "daemon in the middle of\n-- UPGRADE_STUDY (tests/faults/"
                  "robustness_support.py): two trials complete, two running\n-- with a "
                  "checkpoint. Written by tests/faults/make_upgrade_fixture.py; never edit "
                  "it.\n")
        out.write_text(header + dump + "\n")
        print(f"wrote {out} (schema version {version})")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="an unpacked hpod release")
    parser.add_argument("out", type=Path, help="tests/store/fixtures/daemon/vN.sql")
    args = parser.parse_args()
    make(args.source.resolve(), args.out)


if __name__ == "__main__":
    main()
