"""`hpod simulate --curves STORE_DB`: a study replayed on the curves a real run recorded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hpod.store import StoreReader

from helpers import FIXTURE_TRIALS, hpod_cli

pytestmark = pytest.mark.slow


def _study(scheduler: str) -> str:
    return f"""
name = "replayed"
command = ["python", "{FIXTURE_TRIALS / 'quadratic.py'}"]
objective = {{ metric = "loss", direction = "minimize" }}
budget = {{ trials = 8 }}
parallel = 2
seed = 5
[scheduler]
{scheduler}
[space]
x = {{ type = "float", low = 0.0, high = 1.0 }}
steps = 9
"""


def test_simulate_replays_the_nearest_recorded_curve(tmp_path: Path) -> None:
    study = tmp_path / "replayed.toml"
    study.write_text(_study('kind = "fifo"'))
    hpod_cli("run", study, "--plain", "--slots", "2", timeout=300)
    db = tmp_path / ".hpod" / "hpod.db"
    with StoreReader(db) as reader:
        record = reader.find_study("replayed")
        recorded = {trial.value: trial.params["x"] for trial in reader.list_trials(record.id)}
    assert len(recorded) == 8
    # The same study under ASHA, simulated on what the fifo run recorded.
    study.write_text(_study('kind = "asha"\nmax_resource = 9'))
    out = hpod_cli("simulate", study, "--curves", db, "--workers", "4", "--trials", "30",
                   "--json").stdout
    doc = json.loads(out)
    assert doc["curves"] == str(db.resolve()) and doc["trials"] == 30
    assert doc["states"].get("stopped") and doc["states"].get("complete")
    # The rungs are measured on every recorded curve once, not on the ones replayed.
    assert [row["curves"] for row in doc["rank_agreement"]] == [8, 8]
    best = doc["best"]
    # Its value is a recorded trial's final value, the one whose x is nearest to its own.
    assert best["value"] in recorded
    nearest = min(recorded.values(), key=lambda x: abs(x - best["params"]["x"]))
    assert recorded[best["value"]] == nearest
    assert out == hpod_cli("simulate", study, "--curves", db, "--workers", "4", "--trials",
                           "30", "--json").stdout
    other = tmp_path / "other.toml"
    other.write_text(_study('kind = "fifo"').replace('"replayed"', '"other"'))
    failed = hpod_cli("simulate", other, "--curves", db, check=False)
    assert failed.returncode == 2
    assert "no study named 'other'" in failed.stderr and "Fix:" in failed.stderr


def test_bad_simulate_arguments_are_usage_errors_with_a_fix(tmp_path: Path) -> None:
    study = tmp_path / "s.toml"
    study.write_text(_study('kind = "fifo"'))
    seed = hpod_cli("simulate", study, "--seed", "-1", check=False)
    assert seed.returncode == 2 and "argument --seed" in seed.stderr
    assert "Traceback" not in seed.stderr
    not_a_db = hpod_cli("simulate", study, "--curves", study, check=False)
    assert not_a_db.returncode == 2, not_a_db.stderr
    assert "--curves" in not_a_db.stderr and "Fix: give FOLDER/.hpod/hpod.db" in not_a_db.stderr


def test_recorded_curves_need_no_trial_length(tmp_path: Path) -> None:
    """A fifo study without `epochs` or max_resource: synthetic curves cannot know how long a
    trial trains, but a recorded curve is as long as its trial ran."""
    study = tmp_path / "replayed.toml"
    study.write_text(_study('kind = "fifo"').replace("trials = 8", "trials = 4"))
    hpod_cli("run", study, "--plain", "--slots", "2", timeout=300)
    db = tmp_path / ".hpod" / "hpod.db"
    doc = json.loads(hpod_cli("simulate", study, "--curves", db, "--trials", "6",
                              "--json").stdout)
    assert doc["trials"] == 6 and doc["states"] == {"complete": 6}
    with StoreReader(db) as reader:
        record = reader.find_study("replayed")
        recorded = {t.value for t in reader.list_trials(record.id)}
    assert doc["best"]["value"] in recorded
    synthetic = hpod_cli("simulate", study, check=False)
    assert synthetic.returncode == 2 and "Traceback" not in synthetic.stderr
    assert "scheduler.max_resource" in synthetic.stderr and "Fix:" in synthetic.stderr
