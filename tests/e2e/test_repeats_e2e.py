"""`[trial] repeats`: each configuration runs N times with its own seed, the suggester and
`hpod best` see the mean, and a configuration stopped by the scheduler stops all its runs."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from hpod.store import StoreReader
from hpod.store.records import TrialState

from helpers import FIXTURE_TRIALS, hpod_cli, write_study

pytestmark = pytest.mark.slow


def _study(*, trials: int, repeats: int, parallel: int = 2, extra: str = "") -> str:
    return f"""
command = ["python", "{FIXTURE_TRIALS / 'noisy.py'}"]
objective = {{ metric = "loss", direction = "minimize" }}
budget = {{ trials = {trials} }}
parallel = {parallel}
seed = 7
{extra}
[trial]
repeats = {repeats}

[space]
x = {{ type = "float", low = 0.0, high = 1.0 }}
"""


def _trials(folder: Path, study: str):
    with StoreReader(folder / ".hpod" / "hpod.db") as reader:
        return reader.list_trials(reader.find_study(study).id)


def test_each_configuration_runs_n_times_and_counts_as_its_mean(tmp_path: Path,
                                                                start_daemon) -> None:
    write_study(tmp_path, "rep", _study(trials=3, repeats=3))
    assert start_daemon(tmp_path, "--exit-when-idle").wait() == 0
    runs = _trials(tmp_path, "rep")
    assert len(runs) == 9 and all(run.state is TrialState.COMPLETE for run in runs)
    configs: dict[int, list] = {}
    for run in runs:
        configs.setdefault(run.config_number, []).append(run)
    assert len(configs) == 3
    for number, group in configs.items():
        assert sorted(run.repeat for run in group) == [0, 1, 2]
        assert len({json.dumps(run.params, sort_keys=True) for run in group}) == 1
        seen = [json.loads((tmp_path / ".hpod" / "trials" / "rep" / f"{run.number:05d}"
                            / "seen.json").read_text()) for run in group]
        assert sorted(s["repeat"] for s in seen) == [0, 1, 2]
        assert len({s["seed"] for s in seen}) == 3  # every run its own seed

    best = json.loads(hpod_cli("best", tmp_path, "rep", "--json").stdout)
    means = {n: statistics.fmean(run.value for run in group) for n, group in configs.items()}
    best_number = min(means, key=means.get)
    assert best["trial"] == best_number and best["runs"] == 3
    assert best["value"] == pytest.approx(means[best_number])
    assert best["std"] == pytest.approx(statistics.stdev(run.value for run in configs[best_number]))
    text = hpod_cli("best", tmp_path, "rep").stdout
    assert "mean of 3 of 3 runs" in text and "±" in text
    # Its files and the line to run it again are its best run's, with that run's seed.
    best_run = min(configs[best_number], key=lambda run: run.value)
    assert best["folder"].endswith(f"{best_run.number:05d}")
    seen_best = json.loads((Path(best["folder"]) / "seen.json").read_text())
    assert seen_best["repeat"] == best_run.repeat
    assert f"HPOD_REPEAT={best_run.repeat} " in best["rerun"]
    assert f"HPOD_SEED={seen_best['seed']} " in best["rerun"]

    # The budget counts configurations: one more, across a restart, is three more runs, and the
    # same run keeps its seed.
    write_study(tmp_path, "rep", _study(trials=4, repeats=3))
    assert start_daemon(tmp_path, "--exit-when-idle").wait() == 0
    after = _trials(tmp_path, "rep")
    assert len(after) == 12 and [run.repeat for run in after[9:]] == [0, 1, 2]


def test_a_configuration_stopped_at_a_rung_stops_its_queued_runs(tmp_path: Path,
                                                                 start_daemon) -> None:
    # Two enqueued configurations, one slot: the good one runs twice in full, then the bad one
    # loses at the first rung and its second run never starts.
    extra = """
[scheduler]
kind = "asha"
max_resource = 4
reduction_factor = 2

[[enqueue]]
x = 0.3

[[enqueue]]
x = 0.95
"""
    body = _study(trials=2, repeats=2, parallel=1, extra=extra).replace(
        'x = { type = "float", low = 0.0, high = 1.0 }',
        'x = { type = "float", low = 0.0, high = 1.0 }\nsteps = 4')
    write_study(tmp_path, "cut", body)
    assert start_daemon(tmp_path, "--exit-when-idle").wait() == 0
    runs = _trials(tmp_path, "cut")
    assert [(run.number, run.repeat, run.config_number) for run in runs] == [
        (0, 0, 0), (1, 1, 0), (2, 0, 2), (3, 1, 2)]
    assert [run.state for run in runs[:2]] == [TrialState.COMPLETE] * 2
    assert runs[2].state is TrialState.STOPPED and runs[2].last_step == 1
    assert runs[3].state is TrialState.STOPPED and runs[3].started_at is None
    assert "was stopped by the asha scheduler" in runs[3].reason


def test_hpod_run_ends_with_the_best_configuration_not_the_best_single_run(
        tmp_path: Path) -> None:
    path = write_study(tmp_path, "rep", _study(trials=3, repeats=3))
    result = hpod_cli("run", path, "--slots", "2")
    best = json.loads(hpod_cli("best", tmp_path, "rep", "--json").stdout)
    last = [line for line in result.stderr.splitlines() if "best loss" in line][-1]
    assert "] 9/9 ·" in result.stderr and "/3 ·" not in result.stderr  # the bar counts runs
    assert f"best loss = {best['value']:.6g} (configuration #{best['trial']}, mean of 3 runs)" \
        in last, last


def test_hpod_best_never_points_at_a_run_that_diverged(tmp_path: Path) -> None:
    # The configuration's mean leaves its diverged run out; the run `hpod best` points at (its
    # folder, its rerun line) must be one that counted, not the -inf one that min() prefers.
    (tmp_path / "train.py").write_text(
        "import os\nimport hpod.trial as trial\n"
        "repeat = int(os.environ['HPOD_REPEAT'])\n"
        "trial.report(1, loss=float('-inf') if repeat == 1 else 0.5 + repeat)\n")
    path = write_study(tmp_path, "rep", _study(trials=1, repeats=3, parallel=1).replace(
        str(FIXTURE_TRIALS / "noisy.py"), str(tmp_path / "train.py")))
    hpod_cli("run", path, "--plain")
    best = json.loads(hpod_cli("best", tmp_path, "rep", "--json").stdout)
    assert "HPOD_REPEAT=0 " in best["rerun"], best
