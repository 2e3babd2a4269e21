"""What the robustness tests share: reading the real store a daemon wrote, writing fault
studies, and checking processes and the SQLite file afterwards."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from hpod.store import StoreReader, TrialRecord

from helpers import alive  # noqa: F401 (the fault tests import it from here)

HERE = Path(__file__).resolve().parent
TRIALS = HERE / "trials"
FAULTY = TRIALS / "faulty.py"
STEADY = TRIALS / "steady.py"
FLOOD = TRIALS / "flood.py"
HOSTILE = HERE.parent / "fixtures" / "studies" / "hostile"


def db_of(folder: Path) -> Path:
    return folder / ".hpod" / "hpod.db"


def trials_of(folder: Path, study: str, db: Path | None = None) -> list[TrialRecord]:
    """Every trial of `study` as the store holds it (a read-only connection, like the CLI's)."""
    with StoreReader(db or db_of(folder)) as reader:
        record = reader.find_study(study)
        return [] if record is None else reader.list_trials(record.id)


def integrity(db: Path) -> str:
    """PRAGMA integrity_check on a separate connection: "ok" for an intact file."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return "; ".join(row[0] for row in conn.execute("PRAGMA integrity_check"))
    finally:
        conn.close()


def fault_study(mode: str, *, trials: int = 2, trial: str = "", extra: str = "") -> str:
    """A study whose every trial runs `faulty.py MODE`."""
    table = f"[trial]\n{trial}\n" if trial else ""
    return f"""
command = ["python", "{FAULTY}", "{mode}"]
objective = {{ metric = "loss", direction = "minimize" }}
budget = {{ trials = {trials} }}
parallel = 1
max_failures = 100
seed = 1
{extra}
{table}
[space]
x = {{ type = "float", low = 0.0, high = 1.0 }}
"""


def recorded_pids(state_dir: Path) -> list[int]:
    """Pids the fixture trials wrote into their trial folders (`pid`, `child_pid`)."""
    found = []
    for name in ("pid", "child_pid"):
        for path in state_dir.rglob(name):
            text = path.read_text().strip()
            if text:
                found.append(int(text))
    return found


# The study of the mid-study fixture databases (tests/store/fixtures/daemon/vN.sql): its file
# and its trial script sit side by side, so nothing in it depends on where it was written.
UPGRADE_STUDY = """\
command = ["python", "steady.py"]
objective = { metric = "loss", direction = "minimize" }
budget = { trials = 6 }
parallel = 2
seed = 11

[space]
x = { type = "float", low = 0.0, high = 1.0 }
steps = 10
sleep = 0.05
"""
