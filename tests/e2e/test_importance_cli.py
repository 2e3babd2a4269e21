"""`hpod importance` on studies run by the real daemon: which parameter mattered, from the store."""

from __future__ import annotations

import json
from pathlib import Path

from hpod.store import Direction, MetricPoint, TrialState, open_store
from tests.helpers import hpod_cli, write_study

# x decides the score; y barely; z not at all.
TRAINER = """
import hpod.trial as trial
p = trial.params()
trial.report(1, score=-4 * (p["x"] - 0.3) ** 2 - 0.05 * p["y"])  # z: no part in it
"""


def test_importance_names_the_parameter_that_decided_a_maximised_score(tmp_path: Path) -> None:
    (tmp_path / "train.py").write_text(TRAINER)
    path = write_study(tmp_path, "which", f"""
command = ["python", "{tmp_path / 'train.py'}"]
objective = {{ metric = "score", direction = "maximize" }}
budget = {{ trials = 14 }}
parallel = 2
seed = 3
[suggester]
kind = "random"
[space]
x = {{ type = "float", low = 0.0, high = 1.0 }}
y = {{ type = "float", low = 0.0, high = 1.0 }}
z = {{ type = "categorical", choices = ["a", "b", "c"] }}
""")
    hpod_cli("run", path, "--plain")
    doc = json.loads(hpod_cli("importance", tmp_path, "which", "--json").stdout)
    assert doc["study"] == "which" and doc["metric"] == "score" and doc["results"] == 14
    ranked = [p["name"] for p in doc["params"]]
    assert ranked[0] == "x", doc
    x = doc["params"][0]
    assert x["alone"] > 0.8 and x["with_interactions"] >= x["alone"]
    region = doc["best_region"]  # the 3 highest scores of 14
    assert (region["results"], region["of"]) == (3, 14)
    trials = json.loads(hpod_cli("trials", tmp_path, "which", "--format", "json").stdout)
    best = sorted(trials, key=lambda t: -t["value"])[:3]
    xs = [t["params"]["x"] for t in best]
    assert region["params"]["x"] == {"low": min(xs), "high": max(xs)}
    assert set(region["params"]["z"]["choices"]) == {t["params"]["z"] for t in best}
    text = hpod_cli("importance", tmp_path, "which").stdout
    assert text.splitlines()[0] == "study which: what its 14 complete trials say about score"
    assert text.splitlines()[2].startswith("x ")
    assert "where the best 3 of 14 results lie" in text


def run_grid(tmp_path: Path, name: str) -> None:
    """Run study `name`: train.py (written by the test) over the 10 points of an (x, y) grid,
    to its end; most trials fail, by design."""
    path = write_study(tmp_path, name, f"""
command = ["python", "{tmp_path / 'train.py'}"]
objective = {{ metric = "loss", direction = "minimize" }}
max_failures = 100
[suggester]
kind = "grid"
[space]
x = {{ type = "float", low = 0.0, high = 1.0, step = 0.25 }}
y = {{ type = "categorical", choices = ["p", "q"] }}
""")
    hpod_cli("run", path, "--plain", check=False)


def test_with_few_complete_trials_it_points_at_the_step_where_more_can_be_compared(
        tmp_path: Path) -> None:
    # All 10 points of the grid report step 1, the 4 with x <= 0.25 step 2, and the 2 with
    # x = 0 complete at step 3. Step 2 has enough results too, but fewer than step 1.
    (tmp_path / "train.py").write_text("""
import sys
import hpod.trial as trial
p = trial.params()
trial.report(1, loss=(p["x"] - 0.3) ** 2 + (0.01 if p["y"] == "q" else 0.0))
if p["x"] <= 0.25:
    trial.report(2, loss=(p["x"] - 0.3) ** 2)
if p["x"] > 0:
    sys.exit(1)
trial.report(3, loss=0.0)
""")
    run_grid(tmp_path, "few")
    refused = hpod_cli("importance", tmp_path, "few", check=False)
    assert refused.returncode == 1
    assert "study few has 2 complete trials, and 2 parameters need at least 4 results" \
        in refused.stderr
    assert "Fix: compare the trials at the step most of them reported: --step 1 (10 trials " \
        "reported loss there)" in refused.stderr
    doc = json.loads(hpod_cli("importance", tmp_path, "few", "--step", "1", "--json").stdout)
    assert doc["step"] == 1 and doc["results"] == 10
    assert doc["params"][0]["name"] == "x", doc


def test_a_rough_reading_says_where_more_trials_can_be_compared(tmp_path: Path) -> None:
    # All 10 points of the grid report step 1; the 4 with x <= 0.25 complete at step 2, enough
    # for a reading of 2 parameters but a rough one (fewer than 5 results per parameter).
    (tmp_path / "train.py").write_text("""
import sys
import hpod.trial as trial
p = trial.params()
trial.report(1, loss=(p["x"] - 0.3) ** 2 + (0.01 if p["y"] == "q" else 0.0))
if p["x"] > 0.25:
    sys.exit(1)
trial.report(2, loss=(p["x"] - 0.3) ** 2)
""")
    run_grid(tmp_path, "rough")
    text = hpod_cli("importance", tmp_path, "rough").stdout
    assert "rough: 4 results for 2 parameters" in text
    assert "10 trials reported loss at step 1: --step 1 compares them there" in text
    doc = json.loads(hpod_cli("importance", tmp_path, "rough", "--json").stdout)
    assert doc["results"] == 4 and doc["busier_step"] == {"step": 1, "trials": 10}
    doc = json.loads(hpod_cli("importance", tmp_path, "rough", "--step", "1", "--json").stdout)
    assert doc["results"] == 10 and doc["busier_step"] is None


async def test_the_step_it_names_counts_what_step_compares_running_trials_included(
        tmp_path: Path) -> None:
    # A maximised score: 4 trials complete (a rough reading of 2 parameters), 2 stopped at
    # step 1, and 8 still running past step 1. The step is chosen over the settled trials; its
    # count is what --step 1 compares, the running trials' values too.
    spec = {"name": "s", "objective": {"metric": "score", "direction": "maximize"},
            "budget": {"trials": 40, "hours": None}, "parallel": 8,
            "space": {"x": {"type": "float", "low": 0.0, "high": 1.0},
                      "y": {"type": "categorical", "choices": ["p", "q"]}},
            "suggester": {"kind": "random"}}
    async with open_store(tmp_path / ".hpod" / "hpod.db") as store:
        study = await store.create_study("s", str(tmp_path / "s.toml"), spec=spec,
                                         identity="x", direction=Direction.MAXIMIZE,
                                         metric="score")
        for i in range(14):
            params = {"x": i / 14, "y": "pq"[i % 2]}
            score = -(params["x"] - 0.3) ** 2
            trial = await store.create_trial(study.id, params)
            await store.transition(trial.id, TrialState.RUNNING)
            steps = (1, 2) if i < 4 else (1,)
            await store.add_metrics([MetricPoint(trial.id, step, "score", score, 0.0)
                                     for step in steps], {trial.id: (steps[-1], score)})
            if i < 6:
                await store.transition(trial.id, TrialState.COMPLETE if i < 4
                                       else TrialState.STOPPED, exit_code=0)
    text = hpod_cli("importance", tmp_path, "s").stdout
    assert "14 trials reported score at step 1: --step 1 compares them there" in text
    doc = json.loads(hpod_cli("importance", tmp_path, "s", "--step", "1", "--json").stdout)
    assert doc["results"] == 14
