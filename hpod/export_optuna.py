"""Export an hpod study into an Optuna storage, for optuna-dashboard and optuna.visualization.

The mapping (states, attributes, what is skipped) is documented in docs/optuna.md. Optuna is an
optional dependency: it is imported only when an export runs. Importing this module stays light
(no numpy, no store driver), because `hpod.cli` builds the `export` parser on every start.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import logging
import math
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpod.errors import HpodError, SpaceError

if TYPE_CHECKING:
    from hpod.space import Space
    from hpod.space_params import Param
    from hpod.store.records import MetricPoint, StudyRecord, TrialRecord

logger = logging.getLogger(__name__)

__all__ = ["ExportError", "ExportResult", "export", "export_study", "add_export_parser",
           "run_export"]

INSTALL_HINT = "pip install 'hpod[optuna]'"
# What each finished hpod state (a TrialState, a StrEnum) becomes; unfinished trials (queued,
# running, paused, interrupted) are skipped: an export is a snapshot of results.
_STATES = {"complete": "COMPLETE", "stopped": "PRUNED", "failed": "FAIL"}


class ExportError(HpodError):
    """The study cannot be exported: Optuna missing, no such study, a storage problem."""


@dataclass(frozen=True)
class ExportResult:
    name: str  # the Optuna study's name
    counts: dict[str, int] = field(default_factory=dict)  # Optuna state name -> trials written
    skipped: int = 0  # unfinished trials left out


@dataclass(frozen=True)
class _Snapshot:
    study: StudyRecord
    space: Space
    trials: list[TrialRecord]
    metrics: dict[int, list[MetricPoint]]  # trial id -> its reports, in arrival order


def export_study(db_path: str | Path, study_name: str, storage_url: str, *,
                 optuna_study_name: str | None = None, replace: bool = False) -> str:
    """Write hpod study `study_name` of the database at `db_path` into the Optuna storage at
    `storage_url` (e.g. "sqlite:///out.db"); returns the Optuna study's name."""
    return export(db_path, study_name, storage_url, optuna_study_name=optuna_study_name,
                  replace=replace).name


def export(db_path: str | Path, study_name: str, storage_url: str, *,
           optuna_study_name: str | None = None, replace: bool = False) -> ExportResult:
    """export_study, returning what was written. Raises ExportError (an HpodError)."""
    optuna = _import_optuna()
    _check_url_shape(storage_url)
    # Before anything opens the storage: opening it creates Optuna's tables in the file.
    _refuse_foreign_sqlite(storage_url, Path(db_path), study_name)
    snap = _read(Path(db_path), study_name)
    target = optuna_study_name or study_name
    frozen, skipped = _frozen_trials(optuna, snap)
    storage = _open_storage(optuna, storage_url)
    try:
        with _storage_errors(optuna, storage_url):
            study = _create_study(optuna, storage, storage_url, target, snap.study, replace)
            try:
                _set_study_attrs(optuna, study, snap)
                study.add_trials(frozen)
            except BaseException:
                # Leave no half-written study behind, even on Ctrl-C.
                _delete_quietly(optuna, storage, target)
                raise
    finally:
        storage.engine.dispose()  # release the file now, not when the GC gets to it
    counts: dict[str, int] = {}
    for trial in frozen:
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    logger.info("exported study %s: %d trials to %s as %r (%d unfinished skipped)",
                study_name, len(frozen), storage_url, target, skipped)
    return ExportResult(target, counts, skipped)


def _import_optuna() -> Any:
    try:
        import optuna
    except ImportError:
        raise ExportError(f"exporting to Optuna needs the optuna package, which is not "
                          f"installed. Fix: {INSTALL_HINT}") from None
    return optuna


# -- reading hpod ------------------------------------------------------------------------------


def _read(db_path: Path, name: str) -> _Snapshot:
    from hpod.space import Space
    from hpod.store.errors import StoreError
    from hpod.store.reader import StoreReader

    try:
        with StoreReader(db_path) as reader, reader.snapshot():
            study = reader.find_study(name)
            if study is None:
                known = ", ".join(s.name for s in reader.list_studies()) or "none yet"
                raise ExportError(f"no study named {name!r} in {db_path} (studies: {known})")
            trials = reader.list_trials(study.id)
            metrics = {t.id: [p for _, p in reader.metrics(t.id)] for t in trials
                       if t.state in _STATES}
    except StoreError as e:
        raise ExportError(str(e)) from e
    if study.spec is None:
        raise ExportError(f"study {name!r} never had a valid study file, so it has no trials "
                          f"to export ({study.error})")
    return _Snapshot(study, Space.from_dict(study.spec["space"]), trials, metrics)


# -- hpod -> Optuna ----------------------------------------------------------------------------


def _frozen_trials(optuna: Any, snap: _Snapshot) -> tuple[list[Any], int]:
    dists = {p.name: _distribution(optuna, p) for p in snap.space.params}
    out, skipped = [], 0
    for trial in snap.trials:
        if trial.state not in _STATES:
            skipped += 1
            continue
        out.append(_frozen(optuna, snap, dists, trial))
    return out, skipped


def _distribution(optuna: Any, p: Param) -> Any:
    from hpod.space_params import CategoricalParam, FloatParam

    d = optuna.distributions
    if isinstance(p, CategoricalParam):
        if _json_choices(p):
            # Optuna finds a choice with list.index, where True == 1: say the choices as JSON.
            return d.CategoricalDistribution([_as_json(c) for c in p.choices])
        return d.CategoricalDistribution(list(p.choices))
    if isinstance(p, FloatParam):
        return d.FloatDistribution(p.low, p.high, log=p.log, step=p.step)
    return d.IntDistribution(p.low, p.high, log=p.log, step=p.step)


def _json_choices(p: Param) -> bool:
    """True for a categorical whose choices Optuna would confuse (both true and 1)."""
    choices: Sequence[Any] = getattr(p, "choices", ())
    numbers = [c for c in choices if isinstance(c, (int, float)) and not isinstance(c, bool)]
    return any(isinstance(c, bool) and c in numbers for c in choices)


def _as_json(choice: Any) -> str:
    # Not ASCII-escaped: the dashboard shows the choice as written, "ü" and not "\u00fc". Both
    # the distribution's choices and each trial's value are made here, so they match exactly.
    return json.dumps(choice, ensure_ascii=False)


def _frozen(optuna: Any, snap: _Snapshot, dists: Mapping[str, Any], trial: TrialRecord) -> Any:
    state = optuna.trial.TrialState[_STATES[trial.state]]
    value = trial.value if trial.value is not None and math.isfinite(trial.value) else None
    user_attrs: dict[str, Any] = {"hpod_trial": trial.number, "hpod_state": trial.state.value,
                                  "hpod_attempt": trial.attempt}
    for key, extra in (("hpod_reason", trial.reason), ("hpod_placement", trial.placement),
                       ("hpod_exit_code", trial.exit_code), ("hpod_last_step", trial.last_step)):
        if extra is not None:
            user_attrs[key] = extra
    if state == optuna.trial.TrialState.COMPLETE and value is None:
        state = optuna.trial.TrialState.FAIL  # Optuna refuses a complete trial without a value
        user_attrs["hpod_note"] = "complete in hpod, but without a finite objective value"
    if state == optuna.trial.TrialState.FAIL:
        value = None  # Optuna keeps no value for a failed trial
    params, distributions = {}, {}
    for p in snap.space.params:
        if p.name not in trial.params:
            continue
        try:
            v = p.normalise(trial.params[p.name])
        except SpaceError:
            logger.warning("trial %d: %s=%r is outside the space; exported as a user attribute",
                           trial.number, p.name, trial.params[p.name])
            user_attrs[f"param.{p.name}"] = trial.params[p.name]
            continue
        params[p.name] = _as_json(v) if _json_choices(p) else v
        distributions[p.name] = dists[p.name]
    for name, fixed in snap.space.fixed.items():
        user_attrs[f"fixed.{name}"] = fixed
    intermediate, last = _series(snap.metrics.get(trial.id, []), snap.study.metric)
    for name, metric_value in last.items():
        # JSON has no NaN or infinity: the dashboard would fail to read them back.
        user_attrs[f"metric.{name}"] = metric_value if math.isfinite(metric_value) \
            else str(metric_value)
    frozen = optuna.trial.create_trial(
        state=state, value=value, params=params, distributions=distributions,
        user_attrs=user_attrs, intermediate_values=intermediate)
    # A trial stopped before it ever ran has no start: it then starts and ends at once.
    end = trial.finished_at or trial.started_at or trial.created_at
    frozen.datetime_start = _datetime(trial.started_at or end)
    frozen.datetime_complete = _datetime(end)
    return frozen


def _series(points: Sequence[MetricPoint], objective: str) -> tuple[dict[int, float],
                                                                      dict[str, float]]:
    """(objective by step, last value of every other metric). A step reported twice (a retried
    attempt) keeps its latest value; NaN stays NaN, which Optuna stores."""
    intermediate: dict[int, float] = {}
    last: dict[str, float] = {}
    for point in points:
        if point.name == objective:
            intermediate[point.step] = point.value
        else:
            last[point.name] = point.value
    return intermediate, last


def _datetime(timestamp: float) -> datetime.datetime:
    # Optuna stores naive local times (datetime.now()); hpod stores epoch seconds.
    return datetime.datetime.fromtimestamp(timestamp)


# -- the Optuna side ---------------------------------------------------------------------------


def _check_url_shape(url: str) -> None:
    if "://" not in url:
        raise ExportError(f"{url!r} is not a storage URL. Fix: give a database URL such as "
                          f"sqlite:///{url if url.endswith('.db') else 'optuna.db'}")


def _sqlite_file(url: str) -> Path | None:
    """The file a SQLite storage URL names, as SQLite will open it; None for another database,
    an in-memory one, or a URL SQLAlchemy cannot parse (opening it reports that)."""
    from urllib.parse import urlsplit

    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return None
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    database = parsed.database
    if str(parsed.query.get("uri", "")).lower() in ("true", "1") and database.startswith("file:"):
        database = urlsplit(database).path  # sqlite:///file:out.db?mode=rwc&uri=true
        if not database or database == ":memory:":
            return None
    # SQLite opens a relative name from the current folder; resolve() follows symlinks too.
    return Path(database).resolve()


def _refuse_foreign_sqlite(url: str, db_path: Path, study: str) -> None:
    """Refuse a SQLite storage that is the hpod database, or any other non-Optuna database:
    Optuna would add its 12 tables to it, then fail on the first write when a table of the same
    name (`studies`) is not its own."""
    target = _sqlite_file(url)
    if target is None:
        return
    fix = (f"Fix: write to a file of its own, e.g. --optuna sqlite:///{study}-optuna.db "
           f"(a new file is created)")
    hpod_db = db_path.resolve()
    if target == hpod_db or (target.exists() and hpod_db.exists()
                             and target.samefile(hpod_db)):  # a hard link, a case-folding disk
        raise ExportError(f"{url} is the hpod database ({hpod_db}): the export never writes "
                          f"to it. {fix}")
    tables = _sqlite_tables(target)
    if tables and "version_info" not in tables:  # every Optuna storage has it
        kind = "an hpod database" if {"studies", "trials", "metrics"} <= tables else \
            "another application's database"
        raise ExportError(f"{url} is not an Optuna storage: {target} is {kind} (tables "
                          f"{', '.join(sorted(tables)[:5])}{', ...' if len(tables) > 5 else ''})"
                          f", and the export would add Optuna's tables to it. {fix}")


def _sqlite_tables(path: Path) -> set[str]:
    """The tables of the SQLite file at `path`, read-only; empty for a new or empty file, or a
    file SQLite cannot read (opening it as a storage then says why)."""
    import sqlite3

    if not path.is_file() or path.stat().st_size == 0:
        return set()
    try:
        with contextlib.closing(sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)) as db:
            return {row[0] for row in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.Error:
        return set()


@contextlib.contextmanager
def _storage_errors(optuna: Any, url: str) -> Iterator[None]:
    """Optuna's and SQLAlchemy's storage failures as one ExportError line naming the URL."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        yield
    except (optuna.exceptions.StorageInternalError, SQLAlchemyError) as e:
        # StorageInternalError says only "an exception is raised during the commit": the
        # database's own words are on the SQLAlchemy error beneath it.
        cause = e.__cause__ if isinstance(e.__cause__, SQLAlchemyError) else e
        words = str(getattr(cause, "orig", None) or cause).strip().splitlines()
        raise ExportError(f"cannot write to the Optuna storage {url}: "
                          f"{words[0] if words else type(cause).__name__}. Fix: give a new "
                          f"file or an existing Optuna storage that this user can write "
                          f"to") from e


def _delete_quietly(optuna: Any, storage: Any, name: str) -> None:
    try:
        optuna.delete_study(study_name=name, storage=storage)
    except Exception:  # the storage that just failed may fail again: keep the first error
        logger.warning("could not delete the half-written Optuna study %r", name,
                       exc_info=True)


def _open_storage(optuna: Any, url: str) -> Any:
    _check_url_shape(url)
    try:
        return optuna.storages.RDBStorage(url)
    except Exception as e:  # SQLAlchemy's errors, a missing driver: all mean "cannot open"
        raise ExportError(f"cannot open the Optuna storage {url}: {e}") from e


def _create_study(optuna: Any, storage: Any, url: str, name: str, hpod: StudyRecord,
                  replace: bool) -> Any:
    direction = hpod.direction.value
    try:
        return optuna.create_study(storage=storage, study_name=name, direction=direction)
    except optuna.exceptions.DuplicatedStudyError:
        if not replace:
            raise ExportError(f"{url} already has a study named {name!r}. Fix: pass --replace "
                              f"to overwrite it, or --name to choose another name") from None
    logger.info("replacing the Optuna study %r in %s", name, url)
    optuna.delete_study(study_name=name, storage=storage)
    return optuna.create_study(storage=storage, study_name=name, direction=direction)


def _set_study_attrs(optuna: Any, study: Any, snap: _Snapshot) -> None:
    hpod = snap.study
    study.set_user_attr("hpod_study", hpod.name)
    study.set_user_attr("hpod_state", hpod.state.value)
    study.set_user_attr("hpod_path", hpod.path)
    study.set_user_attr("hpod_metric", hpod.metric)
    study.set_user_attr("hpod_fixed", dict(snap.space.fixed))
    with warnings.catch_warnings():
        # Experimental in Optuna, but it is what labels the objective axis in the dashboard.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names([hpod.metric])


# -- the `hpod export` command -----------------------------------------------------------------


def add_export_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add `hpod export FOLDER STUDY --optuna URL [--db PATH] [--name NAME] [--replace]`."""
    parser = subparsers.add_parser(
        "export",
        help="write a study into an Optuna storage (optuna-dashboard, optuna.visualization)",
        description="Write STUDY's finished trials, with their params, values and intermediate "
        "values, into an Optuna storage, so optuna-dashboard and optuna.visualization work on "
        f"it. Needs Optuna ({INSTALL_HINT}). See docs/optuna.md.")
    parser.add_argument("folder", type=Path, help="the watched folder")
    parser.add_argument("study", help="the study's name")
    parser.add_argument("--optuna", required=True, metavar="URL",
                        help="the Optuna storage URL, e.g. sqlite:///out.db")
    parser.add_argument("--db", type=Path, metavar="PATH",
                        help="the SQLite database (default: FOLDER/.hpod/hpod.db)")
    parser.add_argument("--name", help="the Optuna study's name (default: STUDY)")
    parser.add_argument("--replace", action="store_true",
                        help="overwrite an Optuna study of that name")
    return parser


def run_export(args: argparse.Namespace) -> int:
    from hpod.config import default_db_path

    db = args.db.resolve() if args.db is not None else default_db_path(args.folder.resolve())
    optuna = _import_optuna()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # this command prints its own summary
    result = export(db, args.study, args.optuna, optuna_study_name=args.name,
                    replace=args.replace)
    written = ", ".join(f"{n} {state.lower()}" for state, n in sorted(result.counts.items()))
    print(f"exported study {args.study} to {args.optuna} as {result.name!r}: "
          f"{sum(result.counts.values())} trials ({written or 'none'})"
          + (f", {result.skipped} unfinished skipped" if result.skipped else ""))
    print(f"view it with: optuna-dashboard {args.optuna}")
    return 0
