"""`hpod export --optuna`: a study seeded through the real store, read back by a real Optuna."""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hpod.export_optuna import ExportError, add_export_parser, export, export_study, run_export
from hpod.spec import load_study_file
from hpod.store import MetricPoint, StoreReader, TrialState, open_store

optuna = pytest.importorskip("optuna")

STUDY_FILE = """\
name = "toy"
command = ["python", "train.py"]
objective = { metric = "loss", direction = "minimize" }
budget = { trials = 20 }

[space]
lr = { type = "float", low = 1e-4, high = 1e-1, log = true }
dropout = { type = "float", low = 0.0, high = 0.5, step = 0.1 }
units = { type = "int", low = 16, high = 256, step = 16 }
act = { type = "categorical", choices = ["relu", "tanh"] }
epochs = 30
"""

NAN = math.nan


@dataclass(frozen=True)
class Seeded:
    """What went into the hpod database; numbers are hpod trial numbers."""

    number: int
    hpod_state: TrialState
    optuna_state: str | None  # None: not exported
    value: float | None  # the Optuna trial's value
    intermediate: dict[int, float]


def params(k: int) -> dict[str, Any]:
    return {"lr": 10.0 ** -(1 + k % 4), "dropout": round(0.1 * (k % 6), 1),
            "units": 16 * (1 + k % 16), "act": ("relu", "tanh")[k % 2], "epochs": 30}


async def seed(db: Path, study_file: Path) -> list[Seeded]:
    spec = load_study_file(study_file)
    ticks = itertools.count(1_700_000_000)
    seeded: list[Seeded] = []
    async with open_store(db, clock=lambda: float(next(ticks))) as store:
        study = await store.create_study(
            spec.name, str(study_file), spec=spec.to_dict(), identity=spec.identity(),
            direction=spec.objective.direction, metric=spec.objective.metric)

        async def report(trial_id: int, losses: list[float], first: int = 0) -> None:
            points = [MetricPoint(trial_id, first + i, "loss", v, 0.0)
                      for i, v in enumerate(losses)]
            points += [MetricPoint(trial_id, first + i, "acc", 1 - v, 0.0)
                       for i, v in enumerate(losses)]
            await store.add_metrics(points, {trial_id: (first + len(losses) - 1, losses[-1])})

        async def run(number: int, losses: list[float], end: TrialState, *,
                      reason: str | None = None, expect: str | None, value: float | None) -> None:
            trial = await store.create_trial(study.id, params(number))
            assert trial.number == number
            if end is not TrialState.QUEUED:
                await store.transition(trial.id, TrialState.RUNNING, placement="cpu:0")
            if losses:
                await report(trial.id, losses)
            if end not in (TrialState.RUNNING, TrialState.QUEUED):
                await store.transition(trial.id, end, reason=reason)
            seeded.append(Seeded(number, end, expect, value,
                                 {i: v for i, v in enumerate(losses)} if expect else {}))

        await run(0, [0.9, 0.7, 0.5], TrialState.COMPLETE, expect="COMPLETE", value=0.5)
        await run(1, [0.8, 0.4, 0.2], TrialState.COMPLETE, expect="COMPLETE", value=0.2)
        await run(2, [0.95, 0.9], TrialState.STOPPED, reason="asha: below the rung",
                  expect="PRUNED", value=0.9)
        await run(3, [0.9, NAN], TrialState.FAILED, reason="the objective `loss` was nan",
                  expect="FAIL", value=None)
        await run(4, [0.6], TrialState.RUNNING, expect=None, value=None)
        await run(5, [], TrialState.QUEUED, expect=None, value=None)
        await run(6, [0.7, NAN, 0.3], TrialState.COMPLETE, expect="COMPLETE", value=0.3)
        # Stopped by the user before it ever started: no report, no start time.
        trial = await store.create_trial(study.id, params(7))
        await store.transition(trial.id, TrialState.STOPPED, reason="stopped by the user")
        seeded.append(Seeded(7, TrialState.STOPPED, "PRUNED", None, {}))
        # A crash, then a retry of the same trial that completes: the retry's steps win.
        trial = await store.create_trial(study.id, params(8))
        await store.transition(trial.id, TrialState.RUNNING, placement="cpu:1")
        await report(trial.id, [0.99, 0.98, 0.97])
        await store.transition(trial.id, TrialState.FAILED, reason="killed by SIGKILL",
                               exit_code=-9)
        await store.transition(trial.id, TrialState.QUEUED)
        await store.transition(trial.id, TrialState.RUNNING, placement="cpu:1")
        await report(trial.id, [0.6, 0.25])
        await store.transition(trial.id, TrialState.COMPLETE, exit_code=0)
        seeded.append(Seeded(8, TrialState.COMPLETE, "COMPLETE", 0.25,
                             {0: 0.6, 1: 0.25, 2: 0.97}))
    return seeded


@dataclass(frozen=True)
class Exported:
    folder: Path  # the watched folder: its .hpod/hpod.db is the database
    db: Path
    seeded: list[Seeded]
    url: str  # an Optuna storage that holds the export as study "toy"


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    """Seeded and exported once: creating an Optuna storage file takes a second."""
    folder = tmp_path_factory.mktemp("export")
    study_file = folder / "toy.toml"
    study_file.write_text(STUDY_FILE)
    db = folder / ".hpod" / "hpod.db"
    seeded = asyncio.run(seed(db, study_file))
    target = url(folder)
    assert export_study(db, "toy", target) == "toy"
    return Exported(folder, db, seeded, target)


def url(folder: Path, name: str = "optuna.db") -> str:
    return f"sqlite:///{folder / name}"


def by_hpod_number(study: Any) -> dict[int, Any]:
    return {t.user_attrs["hpod_trial"]: t for t in study.trials}


def same(a: dict[int, float], b: dict[int, float]) -> bool:
    return a.keys() == b.keys() and all(
        (math.isnan(a[k]) and math.isnan(b[k])) or a[k] == b[k] for k in a)


def test_the_exported_study_loads_in_optuna_with_the_same_results(exported: Exported) -> None:
    db, seeded = exported.db, exported.seeded
    study = optuna.load_study(study_name="toy", storage=exported.url)

    exported = [s for s in seeded if s.optuna_state is not None]
    assert len(study.trials) == len(exported) == 7
    assert study.direction == optuna.study.StudyDirection.MINIMIZE
    trials = by_hpod_number(study)
    for s in exported:
        t = trials[s.number]
        assert t.state.name == s.optuna_state, s
        assert t.value == s.value, s
        assert same(t.intermediate_values, s.intermediate), s
        assert t.user_attrs["hpod_state"] == s.hpod_state.value
        assert t.params == {k: v for k, v in params(s.number).items() if k != "epochs"}
        assert "epochs" not in t.params and t.user_attrs["fixed.epochs"] == 30
        assert t.datetime_start <= t.datetime_complete
    assert 4 not in trials and 5 not in trials  # running and queued: not in a snapshot of results

    with StoreReader(db) as reader:
        hpod_study = reader.find_study("toy")
        best = reader.best_trial(hpod_study.id, hpod_study.direction)
    assert study.best_value == best.value == 0.2
    assert study.best_trial.user_attrs["hpod_trial"] == best.number
    assert study.best_params == {k: v for k, v in best.params.items() if k != "epochs"}


def test_distributions_attributes_and_study_metadata(exported: Exported) -> None:
    study = optuna.load_study(study_name="toy", storage=exported.url)
    d = optuna.distributions
    trials = by_hpod_number(study)
    assert trials[0].distributions == {
        "lr": d.FloatDistribution(1e-4, 1e-1, log=True),
        "dropout": d.FloatDistribution(0.0, 0.5, step=0.1),
        "units": d.IntDistribution(16, 256, step=16),
        "act": d.CategoricalDistribution(["relu", "tanh"]),
    }
    assert trials[2].user_attrs["hpod_reason"] == "asha: below the rung"
    assert trials[2].user_attrs["hpod_placement"] == "cpu:0"
    assert trials[2].user_attrs["metric.acc"] == pytest.approx(0.1)
    assert trials[3].user_attrs["metric.acc"] == "nan"  # JSON-safe
    assert trials[8].user_attrs["hpod_attempt"] == 1
    assert trials[8].user_attrs["hpod_exit_code"] == 0
    assert "hpod_reason" not in trials[0].user_attrs
    # never started: it starts and ends at its stop, and has no params' history to show
    assert trials[7].datetime_start == trials[7].datetime_complete
    assert study.user_attrs["hpod_study"] == "toy"
    assert study.user_attrs["hpod_metric"] == "loss"
    assert study.user_attrs["hpod_fixed"] == {"epochs": 30}
    assert study.metric_names == ["loss"]


def test_optuna_can_continue_the_exported_study(exported: Exported) -> None:
    """The distributions are what Optuna's own suggest_* calls produce: a sampler accepts them."""
    export_study(exported.db, "toy", exported.url, optuna_study_name="toy-continued")
    study = optuna.load_study(study_name="toy-continued", storage=exported.url,
                              sampler=optuna.samplers.TPESampler(seed=0, n_startup_trials=2))

    def objective(trial: Any) -> float:
        lr = trial.suggest_float("lr", 1e-4, 1e-1, log=True)
        trial.suggest_float("dropout", 0.0, 0.5, step=0.1)
        trial.suggest_int("units", 16, 256, step=16)
        trial.suggest_categorical("act", ["relu", "tanh"])
        return lr

    study.optimize(objective, n_trials=2)
    assert len(study.trials) == 9


def test_optuna_visualization_builds(exported: Exported) -> None:
    pytest.importorskip("plotly")
    study = optuna.load_study(study_name="toy", storage=exported.url)
    optuna.visualization.plot_intermediate_values(study)
    optuna.visualization.plot_optimization_history(study)


def test_names_replace_and_refusals(tmp_path: Path, exported: Exported) -> None:
    db, target = exported.db, exported.url
    assert export_study(db, "toy", target, optuna_study_name="toy-v1") == "toy-v1"
    with pytest.raises(ExportError, match=r"already has a study named 'toy-v1'.*--replace"):
        export_study(db, "toy", target, optuna_study_name="toy-v1")
    result = export(db, "toy", target, optuna_study_name="toy-v1", replace=True)
    assert result.counts == {"COMPLETE": 4, "PRUNED": 2, "FAIL": 1} and result.skipped == 2
    assert len(optuna.load_study(study_name="toy-v1", storage=target).trials) == 7
    names = optuna.study.get_all_study_names(target)
    assert names.count("toy-v1") == 1

    with pytest.raises(ExportError, match=r"no study named 'nope' .*\(studies: toy\)"):
        export_study(db, "nope", target)
    with pytest.raises(ExportError, match="no hpod database"):
        export_study(tmp_path / "missing.db", "toy", target)
    with pytest.raises(ExportError, match=r"not a storage URL.*sqlite:///out\.db"):
        export_study(db, "toy", "out.db")
    with pytest.raises(ExportError, match="cannot open the Optuna storage"):
        export_study(db, "toy", "nosuchdialect://x")
    assert optuna.study.get_all_study_names(target) == names  # nothing half-written


async def test_an_invalid_study_has_nothing_to_export(tmp_path: Path) -> None:
    db = tmp_path / "hpod.db"
    async with open_store(db) as store:
        await store.create_study("bad", str(tmp_path / "bad.toml"), spec=None, identity="",
                                 direction="minimize", metric="", error="field `x`: broken")
    with pytest.raises(ExportError, match="never had a valid study file.*broken"):
        export_study(db, "bad", url(tmp_path))


async def test_choices_optuna_would_confuse_travel_as_json(tmp_path: Path,
                                                          exported: Exported) -> None:
    """Optuna looks choices up with list.index, where True == 1."""
    path = tmp_path / "mixed.toml"
    path.write_text(STUDY_FILE.replace('["relu", "tanh"]', '[true, 1, "1"]'))
    spec = load_study_file(path)
    db = tmp_path / "hpod.db"
    async with open_store(db) as store:
        study = await store.create_study(
            "mixed", str(path), spec=spec.to_dict(), identity=spec.identity(),
            direction="minimize", metric="loss")
        for k, choice in enumerate([True, 1, "1"]):
            trial = await store.create_trial(study.id, {**params(k), "act": choice})
            await store.transition(trial.id, TrialState.RUNNING)
            await store.transition(trial.id, TrialState.COMPLETE, value=float(k))
    export_study(db, "mixed", exported.url)
    trials = optuna.load_study(study_name="mixed", storage=exported.url).trials
    assert [json.loads(t.params["act"]) for t in trials] == [True, 1, "1"]
    assert [type(json.loads(t.params["act"])) for t in trials] == [bool, int, str]


def test_the_command(exported: Exported, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="hpod")
    add_export_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["export", str(exported.folder), "toy", "--optuna", exported.url,
                              "--name", "from-cli"])
    assert run_export(args) == 0  # FOLDER/.hpod/hpod.db is the default database
    out = capsys.readouterr().out
    assert f"exported study toy to {exported.url} as 'from-cli': 7 trials " \
           "(4 complete, 1 fail, 2 pruned), 2 unfinished skipped" in out
    assert f"optuna-dashboard {exported.url}" in out
    assert len(optuna.load_study(study_name="from-cli", storage=exported.url).trials) == 7
    missing = exported.folder / "other.db"
    args = parser.parse_args(["export", str(exported.folder), "toy", "--optuna", exported.url,
                              "--db", str(missing), "--name", "from-cli", "--replace"])
    with pytest.raises(ExportError, match=f"no hpod database at {missing}"):
        run_export(args)


def test_without_optuna_the_error_says_what_to_install(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "optuna", None)  # what `import optuna` sees when absent
    with pytest.raises(ExportError, match=r"pip install 'hpod\[optuna\]'"):
        export_study(tmp_path / "hpod.db", "toy", url(tmp_path))


def test_importing_the_module_stays_light() -> None:
    """hpod.cli builds the `export` parser on every start: no optuna, numpy or store driver."""
    import subprocess

    code = ("import sys, hpod.export_optuna\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & "
            "{'optuna', 'numpy', 'aiosqlite', 'sqlalchemy'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True).stdout
    assert out.strip() == "[]"


def tables(path: Path) -> set[str]:
    import sqlite3

    with sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True) as db:
        return {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """A watched folder of its own: these tests check that its database is left alone."""
    (tmp_path / "toy.toml").write_text(STUDY_FILE)
    asyncio.run(seed(tmp_path / ".hpod" / "hpod.db", tmp_path / "toy.toml"))
    return tmp_path


def test_the_hpod_database_itself_is_never_an_optuna_storage(
        folder: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from hpod.cli import main

    db = folder / ".hpod" / "hpod.db"
    before = tables(db)
    (folder / "link.db").symlink_to(db)
    monkeypatch.chdir(folder)  # SQLite opens sqlite:///NAME from the current folder
    for same in (f"sqlite:///{db}",                      # four slashes: an absolute path
                 "sqlite:///.hpod/hpod.db",              # three: relative to the current folder
                 f"sqlite:///{folder}/.hpod/../.hpod/hpod.db",
                 "sqlite:///link.db",                    # a symlink to it
                 "sqlite+pysqlite:///.hpod/hpod.db",
                 "sqlite:///file:.hpod/hpod.db?uri=true"):
        with pytest.raises(ExportError, match=r"is the hpod database .*never writes to it\. "
                                              r"Fix: .*--optuna sqlite:///toy-optuna\.db"):
            export_study(db, "toy", same)
    assert main(["export", str(folder), "toy", "--optuna", "sqlite:///.hpod/hpod.db"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hpod: sqlite:///.hpod/hpod.db is the hpod database")
    assert err.count("\n") == 1 and "Traceback" not in err
    assert tables(db) == before and not any(t.startswith("trial_") for t in tables(db))


def test_another_applications_database_is_refused_before_optuna_writes_to_it(
        folder: Path) -> None:
    db = folder / ".hpod" / "hpod.db"
    copy = folder / "copy.db"
    copy.write_bytes(db.read_bytes())  # another folder's hpod database, say
    before = tables(copy)
    with pytest.raises(ExportError, match=r"is not an Optuna storage: .*copy\.db is an hpod "
                                          r"database .* Fix: write to a file of its own"):
        export_study(db, "toy", f"sqlite:///{copy}")
    assert tables(copy) == before


def test_a_storage_that_fails_a_write_is_one_line_naming_the_url(folder: Path) -> None:
    db = folder / ".hpod" / "hpod.db"
    storage = folder / "optuna.db"
    export_study(db, "toy", f"sqlite:///{storage}")  # an Optuna storage that exists
    # Read-only: Optuna opens it, and its first write fails (root ignores file permissions).
    read_only = f"sqlite:///file:{storage}?mode=ro&uri=true"
    with pytest.raises(ExportError) as error:
        export_study(db, "toy", read_only, optuna_study_name="again")
    message = str(error.value)
    assert message == (f"cannot write to the Optuna storage {read_only}: attempt to write a "
                       f"readonly database. Fix: give a new file or an existing Optuna storage "
                       f"that this user can write to")
    assert optuna.study.get_all_study_names(f"sqlite:///{storage}") == ["toy"]


async def test_json_choices_keep_their_letters_and_round_trip(tmp_path: Path) -> None:
    """Choices that travel as JSON (both true and 1) are written as they read, not as
    \\u escapes, and decode to the same values."""
    path = tmp_path / "letters.toml"
    choices = [True, 1, "ü", "日本", 'a "quote"']
    path.write_text(STUDY_FILE.replace('["relu", "tanh"]', json.dumps(choices,
                                                                      ensure_ascii=False)))
    spec = load_study_file(path)
    db = tmp_path / "hpod.db"
    async with open_store(db) as store:
        study = await store.create_study(
            "letters", str(path), spec=spec.to_dict(), identity=spec.identity(),
            direction="minimize", metric="loss")
        for k, choice in enumerate(choices):
            trial = await store.create_trial(study.id, {**params(k), "act": choice})
            await store.transition(trial.id, TrialState.RUNNING)
            await store.transition(trial.id, TrialState.COMPLETE, value=float(k))
    target = url(tmp_path)
    export_study(db, "letters", target)
    trials = optuna.load_study(study_name="letters", storage=target).trials
    assert [t.params["act"] for t in trials] == ["true", "1", '"ü"', '"日本"', '"a \\"quote\\""']
    assert [json.loads(t.params["act"]) for t in trials] == choices
    assert trials[0].distributions["act"].choices == (
        "true", "1", '"ü"', '"日本"', '"a \\"quote\\""')
