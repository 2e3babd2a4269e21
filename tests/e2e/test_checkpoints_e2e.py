"""`[trial] keep_checkpoints`: the checkpoints of trials that will never run again are deleted,
except the best complete ones', and nothing outside a trial's own folder is touched."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpod.store import StoreReader
from hpod.store.records import TrialState

from helpers import hpod_cli, write_study

pytestmark = pytest.mark.slow

# loss = x; x = 0.3 crashes after saving; x = 0.5 saves outside its trial folder.
_TRIAL = """
import sys
from pathlib import Path
import hpod.trial as trial

x = trial.params()["x"]
folder = Path(sys.argv[1]) if x == 0.5 else trial.trial_dir()
if x == 0.4:  # a checkpoint that is a folder
    path = folder / "ckpt"
    path.mkdir()
    (path / "weights.bin").write_bytes(b"w" * 1000)
else:
    path = folder / f"ckpt-{trial.trial_number()}.bin"
    path.write_bytes(b"w" * 1000)
(trial.trial_dir() / "notes.txt").write_text("not a checkpoint")
trial.checkpoint(path)
if x == 0.3:
    sys.exit(3)
trial.report(1, loss=x)
"""


def _trials(folder: Path, study: str):
    with StoreReader(folder / ".hpod" / "hpod.db") as reader:
        return {t.params["x"]: t for t in reader.list_trials(reader.find_study(study).id)}


def test_only_the_best_complete_trials_keep_their_checkpoints(tmp_path: Path,
                                                             start_daemon) -> None:
    script, outside = tmp_path / "saver.py", tmp_path / "models"
    script.write_text(_TRIAL)
    outside.mkdir()
    write_study(tmp_path, "ck", f"""
command = ["python", "{script}", "{outside}"]
objective = {{ metric = "loss", direction = "minimize" }}
suggester = "grid"
parallel = 1
max_failures = 10
[trial]
keep_checkpoints = 2
[space]
x = {{ type = "categorical", choices = [0.4, 0.5, 0.3, 0.2, 0.1] }}
""")
    start_daemon(tmp_path, "--exit-when-idle").wait()
    trials = _trials(tmp_path, "ck")
    states = {x: t.state for x, t in trials.items()}
    assert states == {0.1: TrialState.COMPLETE, 0.2: TrialState.COMPLETE,
                      0.3: TrialState.FAILED, 0.4: TrialState.COMPLETE,
                      0.5: TrialState.COMPLETE}
    folder = {x: tmp_path / ".hpod" / "trials" / "ck" / f"{t.number:05d}"
              for x, t in trials.items()}
    # The two best keep theirs; the failed one and the beaten ones lost theirs (a folder
    # checkpoint too), and the store says so.
    for x in (0.1, 0.2):
        assert trials[x].checkpoint and Path(trials[x].checkpoint).is_file()
    for x in (0.3, 0.4):
        assert trials[x].checkpoint is None
        assert sorted(p.name for p in folder[x].iterdir()) == ["notes.txt", "stderr.log",
                                                               "stdout.log"]
    # Outside its trial folder: kept, and said once.
    assert trials[0.5].checkpoint and Path(trials[0.5].checkpoint).parent == outside
    assert [p.name for p in outside.iterdir()] == [f"ckpt-{trials[0.5].number}.bin"]
    events = hpod_cli("events", tmp_path).stdout
    assert events.count("keep_checkpoints keeps it") == 1, events
