"""The `hpod` command: argument parsing, logging set-up (only here), and dispatch."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hpod import __version__
from hpod.config import (EXECUTORS, SPARES_MODES, DaemonConfig, default_db_path,
                         default_slots)
from hpod.errors import (DaemonError, HpodError, NotAStudyFile, StudyFileSyntaxError,
                         StudySpecError)
from hpod.simulate_cli import non_negative_int, positive_int
from hpod.store.errors import StoreError
from hpod.store.records import EventLevel, TrialState

logger = logging.getLogger("hpod")

DESCRIPTION = """\
hpod tunes hyperparameters overnight: drop study files into a folder, and a daemon runs each
study's trials as subprocesses, stops the losers early, and keeps everything in one SQLite file.
"""

EPILOG = """\
typical session:
  hpod serve ~/studies                 run the daemon (Ctrl-C stops it cleanly)
  cp digits.toml ~/studies/            the study starts within a second
  hpod status ~/studies                progress of every study (--json for scripts)
  hpod best ~/studies digits           the best trial's value and params
  hpod importance ~/studies digits     which parameters mattered, and where the best lie
  hpod trials ~/studies digits --format csv > digits.csv
  hpod run digits.toml                 one study in the foreground, exits when done
  hpod check digits.toml               validate a study file without running anything
  hpod simulate digits.toml            replay it on a virtual clock: what it reaches, and when

docs: docs/study-file.md (study files), docs/trial-protocol.md (writing a trial)
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hpod",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"hpod {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    serve = sub.add_parser(
        "serve",
        help="run the daemon on a folder of study files",
        description="Watch FOLDER for study files (.toml, .yaml, .yml, .json) and run their trials. "
        "Runs in the foreground (systemd-friendly); SIGTERM or Ctrl-C stop it cleanly, "
        "a second Ctrl-C stops without waiting for trials to exit.",
    )
    serve.add_argument("folder", type=Path, help="the folder to watch")
    _add_db(serve)
    _add_run_options(serve)
    serve.add_argument(
        "--exit-when-idle",
        action="store_true",
        help="exit once every study present at start is finished (for scripts and tests); "
        "the exit code is 0 when every study in the folder completed, 1 when one failed, was "
        "stopped or paused, ended with no trial complete, or its file is invalid (each is "
        "named on stderr)",
    )
    serve.add_argument(
        "--spares",
        choices=SPARES_MODES,
        default="auto",
        help="warm starts for studies with [trial] preload: auto (default) starts a spare "
        "process only on a core nothing else wants; ignore-load also when other programs "
        "keep the cores busy; off starts every trial cold",
    )
    serve.add_argument(
        "--executor", choices=EXECUTORS, default="local",
        help="where trials run unless a study's [executor] says otherwise: local (default) "
        "or ray (a Ray cluster; needs pip install 'hpod[ray]'; see docs/cluster.md)")
    serve.add_argument(
        "--ray-address", metavar="ADDRESS", default=None,
        help="the Ray cluster to use (what `ray start --head` prints, e.g. 10.0.0.1:6379); "
        "default: a study's [executor] address, else a local Ray instance")

    run = sub.add_parser(
        "run",
        help="run one study in the foreground until it is done",
        description="Run the study in FILE in the foreground (the live UI on a terminal, else a "
                    "progress line) and exit when it is done "
        "(exit code 0 when it completed). Results go to the same database as `hpod serve` "
        "on the file's folder would use.",
    )
    run.add_argument("file", type=Path, help="the study file")
    _add_db(run, default_help="FILE's folder/.hpod/hpod.db")
    _add_run_options(run)
    run.add_argument("--plain", action="store_true",
                     help="a progress line instead of the live UI (the default when not on a "
                     "terminal)")

    check = sub.add_parser(
        "check",
        help="validate study files without running anything",
        description="Validate each FILE and print what the daemon would record: the study "
        "it defines, or the error naming the file, the field and the fix.",
    )
    check.add_argument("files", type=Path, nargs="+", metavar="FILE",
                       help="a study file, or a folder: the study files in it")
    check.add_argument("--json", action="store_true",
                       help="print the normalised study (a list for several files or a folder)")

    status = sub.add_parser("status", help="progress of every study",
                            description="Show every study of FOLDER's database.")
    _add_folder(status)
    status.add_argument("--json", action="store_true", help="machine-readable output")

    best = sub.add_parser("best", help="the best trial of a study",
                          description="Print the best complete trial of STUDY: its value, "
                          "its params and its number, its folder (logs, files) and last "
                          "checkpoint, and the shell line that runs it again by hand with the "
                          "same params, seed and environment (outside hpod, reporting nowhere).")
    _add_folder(best, optional=False)
    best.add_argument("study", help="the study's name")
    best.add_argument("--json", action="store_true", help="machine-readable output")

    importance = sub.add_parser(
        "importance", help="which parameters mattered, as shares of the results' variation",
        description="Fit a Gaussian process to STUDY's results and split the variation of the "
        "fitted surface among the parameters (Sobol indices): `alone` is the share a "
        "parameter explains by itself, `with interactions` adds every interaction it is in. "
        "The results are the complete trials' final values, or with --step the value every "
        "trial reported at that step (under a scheduler, where few trials complete).")
    _add_folder(importance, optional=False)
    importance.add_argument("study", help="the study's name")
    importance.add_argument("--step", type=non_negative_int, metavar="N",
                            help="compare the values reported at step N (a rung level, say) "
                            "instead of the complete trials' final values")
    importance.add_argument("--json", action="store_true", help="machine-readable output")

    trials = sub.add_parser("trials", help="list a study's trials (table, CSV or JSON)",
                            description="List STUDY's trials: state, value, last step, "
                            "duration, params and reason, one trial a row.")
    _add_folder(trials, optional=False)
    trials.add_argument("study", help="the study's name")
    trials.add_argument("--format", choices=("table", "csv", "json"), default="table",
                        help="table (default; a crash's reason in one line), csv, or json "
                        "(every field, reasons whole)")
    trials.add_argument("--state", action="append", metavar="STATE",
                        choices=[state.value for state in TrialState],
                        help="only trials in STATE (repeatable): "
                        + ", ".join(state.value for state in TrialState))

    events = sub.add_parser("events", help="what happened, newest last: study files, stopped and "
                            "failed trials, warnings, errors",
                            description="What a user needs to know afterwards: study files "
                            "added, refused or invalid, trials stopped early or failed and "
                            "why, retries, interrupted trials, studies that ended, warnings.")
    _add_folder(events)
    events.add_argument("--study", help="only this study's events")
    events.add_argument("--level", choices=["info", "warning", "error"], default="info",
                        help="only events of this level and above: `warning` leaves out the "
                        "routine info events (studies added or complete, trials stopped by a "
                        "scheduler or by you, retries, clean interruptions) (default: info, "
                        "every event)")
    events.add_argument("--limit", type=positive_int, default=50, metavar="N",
                        help="the newest N events (default 50)")

    enqueue = sub.add_parser(
        "enqueue",
        help="run a configuration of yours next in a running study",
        description="Ask the daemon to run this (full or partial) configuration before new "
        "suggestions; missing parameters are filled in by the suggester. Values are typed by "
        "the study's space: `hpod enqueue ~/studies digits lr=0.01 act=relu`.",
    )
    _add_folder(enqueue, optional=False)
    enqueue.add_argument("study", help="the study's name")
    enqueue.add_argument("assignments", nargs="+", metavar="NAME=VALUE",
                         help="a parameter of the study's space and its value; parameters left "
                         "out are chosen by the suggester. NAME:=JSON gives the value's type "
                         "exactly (c:=1 is the number 1 where a choice \"1\" exists too)")
    enqueue.add_argument("--no-wait", action="store_true",
                         help="do not wait for the daemon to apply it")

    tui = sub.add_parser(
        "tui",
        help="watch every study live in the terminal",
        description="Open the terminal UI on FOLDER's database (read-only; it never slows the "
        "daemon). Press ? inside for the keys.",
    )
    _add_folder(tui)

    gpus = sub.add_parser(
        "gpus",
        help="the GPUs hpod finds and what each is doing",
        description="List the GPUs (through NVML, else nvidia-smi), which of them trials may "
        "use, and why the others are left alone.",
    )
    _add_gpu_options(gpus)

    from hpod.export_optuna import add_export_parser

    add_export_parser(sub)

    from hpod.simulate_cli import add_simulate_parser

    add_simulate_parser(sub)

    for name, what in (("stop", "stop a study, or one trial with --trial"),
                       ("pause", "pause a study: running trials finish, none start"),
                       ("resume", "resume a paused, stopped or failed study")):
        command = sub.add_parser(name, help=what, description=what[0].upper() + what[1:] +
                                 ". The running daemon applies it within a second.")
        _add_folder(command, optional=False)
        command.add_argument("study", help="the study's name")
        if name == "stop":
            command.add_argument("--trial", type=int, metavar="N", help="only trial number N")
        command.add_argument("--no-wait", action="store_true",
                             help="do not wait for the daemon to apply it")
    return parser


def _memory_size(text: str) -> int:
    from hpod.gpus import parse_memory_mb

    try:
        return parse_memory_mb(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _add_gpu_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gpus", default="all", metavar="LIST",
                        help="GPUs trials may use: all (default: those visible), none, or "
                        "indices/UUIDs like 0,2")
    parser.add_argument("--min-free-memory", type=_memory_size, default=1024, metavar="SIZE",
                        help="leave a GPU alone when it has less free memory than this "
                        "(e.g. 4GiB; default 1GiB; 0 turns it off); a study's "
                        "[resources] min_free_memory overrides it")


def _add_db(parser: argparse.ArgumentParser, default_help: str = "FOLDER/.hpod/hpod.db") -> None:
    parser.add_argument("--db", type=Path, metavar="PATH",
                        help=f"the SQLite database (default: {default_help})")


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--slots", type=positive_int, default=None, metavar="N",
                        help=f"trials that may run at once on this machine "
                        f"(default: one per core, {default_slots()} here)")
    parser.add_argument("--log-level", default="info",
                        choices=("debug", "info", "warning", "error"),
                        help="how much the daemon logs to stderr (default info)")
    _add_gpu_options(parser)


def _add_folder(parser: argparse.ArgumentParser, *, optional: bool = True) -> None:
    if optional:
        parser.add_argument("folder", type=Path, nargs="?", default=Path("."),
                            help="the watched folder (default: the current folder)")
    else:
        parser.add_argument("folder", type=Path, help="the watched folder")
    _add_db(parser)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handlers = {
        "serve": _serve,
        "run": _run,
        "check": _check,
        "status": _status,
        "best": _best,
        "importance": _importance,
        "trials": _trials,
        "events": _events,
        "stop": _command,
        "pause": _command,
        "resume": _command,
        "enqueue": _enqueue,
        "tui": _tui,
        "gpus": _gpus,
        "export": _export,
        "simulate": _simulate,
    }
    try:
        return handlers[args.command](args)
    except (HpodError, StoreError) as error:
        print(f"hpod: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `hpod trials ... | head`
        return 0


def _configure_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(asctime)s %(levelname)-7s %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
    )
    # Libraries' own chatter ("3 changes detected" per save, every SQL call at debug) is not
    # the daemon's log, whatever its level; their warnings still are.
    for chatty in ("watchfiles", "aiosqlite"):
        logging.getLogger(chatty).setLevel(logging.WARNING)


def _db_for(args: argparse.Namespace) -> Path:
    if args.db is not None:
        return args.db.resolve()
    return default_db_path(args.folder.resolve())


def _serve(args: argparse.Namespace) -> int:
    folder = args.folder.resolve()
    if not folder.is_dir():
        raise DaemonError(f"{folder} is not a folder; create it, or name the folder to watch")
    _configure_logging(args.log_level)
    config = DaemonConfig(
        db_path=_db_for(args),
        folder=folder,
        slots=default_slots() if args.slots is None else args.slots,
        exit_when_idle=args.exit_when_idle,
        gpus=args.gpus,
        min_free_memory_mb=args.min_free_memory,
        spares=args.spares,
        executor=args.executor,
        ray_address=args.ray_address,
    )
    from hpod.executor.fd_slots import ChildFdSlots

    # Before asyncio opens its descriptors: trials' pipes are spawned from 3 and 4.
    fd_slots = ChildFdSlots.claim()
    daemon = _daemon(config, fd_slots=fd_slots)
    try:
        asyncio.run(_serve_daemon(daemon))
    finally:
        if fd_slots is not None:
            fd_slots.close()
    if not daemon.ended_idle:
        return 0
    from hpod.run_once import report_unfinished

    return 1 if report_unfinished(config.db_path, folder) else 0


async def _serve_daemon(daemon: Any) -> None:
    from hpod.executor.child_watcher import pidfd_child_watcher

    async with pidfd_child_watcher():  # this process runs one event loop
        await daemon.run()


def _daemon(config: DaemonConfig, **kwargs: Any):  # -> Daemon
    from hpod.daemon import Daemon

    try:
        return Daemon(config, **kwargs)
    except ValueError as error:  # a --gpus selection naming a GPU that is not there
        hint = "" if "hpod gpus" in str(error) else "; see `hpod gpus` for what is there"
        raise DaemonError(f"{error}{hint}") from None


def _run(args: argparse.Namespace) -> int:
    from hpod.run_once import run_study_file

    file = _resolved(args.file)
    if not args.plain and sys.stdin.isatty() and sys.stdout.isatty():
        from hpod.run_once import run_with_tui

        return run_with_tui(file, _run_argv(args))
    _configure_logging(args.log_level)
    return run_study_file(file, db=args.db, slots=args.slots, gpus=args.gpus,
                          min_free_memory_mb=args.min_free_memory)


def _resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except RuntimeError:  # Python 3.11 raises on a loop of symbolic links
        raise StudySpecError("is a symbolic link that cannot be followed (a loop of links)",
                             path=str(path), fix="point the link at a study file, or remove "
                             "it") from None


def _run_argv(args: argparse.Namespace) -> list[str]:
    """The same `hpod run`, plain, for the daemon child of the live UI."""
    argv = ["run", str(_resolved(args.file)), "--plain", "--log-level", args.log_level,
            "--gpus", args.gpus, "--min-free-memory", str(args.min_free_memory)]
    if args.db is not None:
        argv += ["--db", str(args.db.resolve())]
    if args.slots is not None:
        argv += ["--slots", str(args.slots)]
    return argv


def _check(args: argparse.Namespace) -> int:
    from hpod.spec import load_study_file
    from hpod.watcher import scan

    failures = skipped = 0
    specs = []
    # The daemon of a folder keeps one study per name: the first file to take a name keeps it.
    owners: dict[tuple[str, str], Path] = {}
    # A folder stands for what the daemon would read in it: every entry named like a study
    # file, so a broken link or a folder named x.toml gets the error the daemon records.
    paths = [found for path in args.files
             for found in (scan(path) if path.is_dir() else [path])]
    # Once each, in the order a daemon reads them (sorted by path, as watcher.scan lists them,
    # so a link sorts by its own name, not its target's): the first to take a name keeps it.
    # abspath, not Path.resolve: a loop of links is an error to print, not to raise.
    paths = sorted({os.path.abspath(path): path for path in paths}.values(),
                   key=os.path.abspath)
    for path in paths:
        try:
            spec = load_study_file(path)
        except NotAStudyFile as error:
            if path in args.files:  # named on purpose: it was meant to be a study
                print(f"error: {error}", file=sys.stderr if args.json else sys.stdout)
                failures += 1
            else:  # found in a folder: the daemon leaves it alone too
                print(f"skipped: {error.path}: not a study file",
                      file=sys.stderr if args.json else sys.stdout)
                skipped += 1
            continue
        except StudySpecError as error:
            print(f"error: {error}", file=sys.stderr if args.json else sys.stdout)
            failures += 1
            if not isinstance(error, StudyFileSyntaxError):
                # Read, but invalid: the daemon records it under its stem, which it then holds.
                owners.setdefault((os.path.realpath(path.parent), path.stem), path)
            continue
        owner = owners.setdefault((os.path.realpath(path.parent), spec.name), path)
        if owner != path:
            print(f"error: {path}: field `name`: the study name `{spec.name}` is already used by "
                  f"{owner.name}. Fix: give this study another `name`.",
                  file=sys.stderr if args.json else sys.stdout)
            failures += 1
            continue
        if args.json:
            specs.append(spec.to_dict())
        else:
            print(f"ok: {path}: study {spec.name}: {spec.space.dim} searched parameter(s), "
                  f"suggester {spec.suggester.kind}, scheduler {spec.scheduler.kind}, "
                  f"objective {spec.objective.direction.value} {spec.objective.metric}")
    if args.json and specs:
        # One file: its study; several: a list of them (errors go to stderr, not into it).
        print(json.dumps(specs[0] if len(args.files) == 1 and not args.files[0].is_dir()
                         else specs, indent=2))
    if len(paths) == skipped:  # nothing there is a study: a checked folder is likely wrong
        print(f"error: no study files (*.toml, *.yaml, *.yml, *.json holding a study) in "
              f"{', '.join(map(str, args.files))}", file=sys.stderr)
        return 1
    return 1 if failures else 0


def _reader(args: argparse.Namespace):  # -> StoreReader
    from hpod.store.reader import StoreReader

    return StoreReader(_db_for(args))


def _status(args: argparse.Namespace) -> int:
    from hpod import report
    from hpod.lock import serving_pid

    with _reader(args) as reader:
        doc = report.status(reader, serving_pid(_db_for(args)))
    print(json.dumps(doc, indent=2) if args.json else report.format_status(doc))
    return 0


def _find_study(reader, name: str):  # -> StudyRecord
    study = reader.find_study(name)
    if study is None:
        known = ", ".join(s.name for s in reader.list_studies()) or "none yet"
        raise DaemonError(f"no study named {name!r} in {reader.path} (studies: {known})")
    return study


def _best(args: argparse.Namespace) -> int:
    from hpod import report

    with _reader(args) as reader:
        study = _find_study(reader, args.study)
        best = report.best_of_study(reader, study)
        where = report.where_best_ran(reader, study, best) if best is not None else None
    if best is None or where is None:
        print(f"study {args.study} has no complete trial yet", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({**best, **where}))
    else:
        print(report.format_best(args.study, best) + "\n" + report.format_where(where))
    return 0


def _importance(args: argparse.Namespace) -> int:
    from hpod.best_region import best_region, format_best_region
    from hpod.importance import (
        NotEnoughResults,
        format_importance,
        step_to_compare,
        study_importance,
    )

    with _reader(args) as reader:
        study = _find_study(reader, args.study)
        try:
            imp, results = study_importance(reader, study, args.step)
        except NotEnoughResults as e:  # like `hpod best` before a trial completes: 1, not 2
            print(f"hpod: {e}", file=sys.stderr)
            return 1
        # A rough reading of a few complete trials, where a step holds more results (under a
        # scheduler most trials stop early): say where, as the TUI's chart goes there itself.
        step = step_to_compare(reader, study) if imp.rough and args.step is None else None
        # What --step compares there: every trial's value, the running ones' too.
        busier = None if step is None else (
            step, len(reader.values_at_step(study.id, study.metric, step)))
        if busier is not None and busier[1] <= imp.results:
            busier = None
    region = best_region(results.space, results.points, results.values)
    if args.json:
        print(json.dumps({"study": study.name, "metric": study.metric, "step": args.step,
                          "left_out": results.left_out, **imp.as_dict(),
                          "busier_step": None if busier is None else
                          {"step": busier[0], "trials": busier[1]},
                          "best_region": None if region is None else region.as_dict()}))
    else:
        print(format_importance(study.name, study.metric, imp, source=results.source))
        if busier is not None:
            print(f"{busier[1]} trials reported {study.metric} at step {busier[0]}: "
                  f"--step {busier[0]} compares them there")
        if region is not None:
            print("\n" + format_best_region(region, [p.name for p in imp.params]))
        if results.left_out:
            print(f"left out: {results.left_out} results whose params do not fit the space "
                  f"as it is now")
    return 0


def _trials(args: argparse.Namespace) -> int:
    from hpod import report

    states = [TrialState(s) for s in args.state] if args.state else None  # choices= checked
    with _reader(args) as reader:
        study = _find_study(reader, args.study)
        rows = report.trial_rows(reader.list_trials(study.id, states))
    print(report.format_trials(rows, args.format))
    return 0


def _events(args: argparse.Namespace) -> int:
    from hpod import report

    with _reader(args) as reader:
        names = {s.id: s.name for s in reader.list_studies()}
        study_id = _find_study(reader, args.study).id if args.study else None
        ordered = list(EventLevel)  # info, warning, error: least to most severe
        levels = ordered[ordered.index(EventLevel(args.level)):]
        events = reader.list_events(study_id=study_id, limit=args.limit, newest=True,
                                    levels=levels)
    print(report.format_events(events, names))
    return 0


def _command(args: argparse.Namespace) -> int:
    from hpod.store.records import CommandAction

    action = {
        "pause": CommandAction.PAUSE_STUDY,
        "resume": CommandAction.RESUME_STUDY,
        "stop": CommandAction.STOP_TRIAL if getattr(args, "trial", None) is not None
        else CommandAction.STOP_STUDY,
    }[args.command]
    with _reader(args) as reader:
        _find_study(reader, args.study)
    return _send(args, action, trial_number=getattr(args, "trial", None),
                 what=f"{args.command} {args.study}")


def _send(args: argparse.Namespace, action: Any, *, trial_number: int | None = None,
          payload: dict[str, Any] | None = None, what: str) -> int:
    """Queue a command for the daemon and, unless --no-wait, print what became of it."""
    from hpod.store.commands import submit_command, wait_command
    from hpod.store.records import CommandState

    db = _db_for(args)
    command_id = submit_command(db, action, args.study, trial_number, payload=payload)
    if args.no_wait:
        print(f"asked the daemon to {what} (command {command_id})")
        return 0
    from hpod.lock import serving_pid

    if serving_pid(db) is None:
        print(f"hpod: no daemon is serving {db}; the command is queued and applied when one "
              "starts (hpod serve FOLDER)", file=sys.stderr)
        return 1
    try:
        done = wait_command(db, command_id, timeout=10.0)
    except TimeoutError:
        print(f"hpod: the daemon has not applied the command within 10 s; is a daemon serving "
              f"{db}? (it stays queued and is applied when one starts)", file=sys.stderr)
        return 1
    print(done.result)
    return 0 if done.state is CommandState.APPLIED else 1


def _enqueue(args: argparse.Namespace) -> int:
    from hpod.enqueue import parse_assignments
    from hpod.space import Space
    from hpod.store.records import CommandAction

    with _reader(args) as reader:
        study = _find_study(reader, args.study)
    if study.spec is None:
        raise DaemonError(f"study {args.study} has no valid study file: {study.error}")
    point = parse_assignments(Space.from_dict(study.spec["space"]), args.assignments)
    return _send(args, CommandAction.ENQUEUE, payload={"params": point},
                 what=f"enqueue {point} in {args.study}")


def _tui(args: argparse.Namespace) -> int:
    from hpod.tui.entry import run_tui

    return run_tui(_db_for(args))


def _gpus(args: argparse.Namespace) -> int:
    from hpod.gpus import describe_gpus, discover_gpus

    try:
        inventory = discover_gpus(args.gpus)
    except ValueError as error:
        raise DaemonError(str(error)) from None
    try:
        print(describe_gpus(inventory, min_free_mb=args.min_free_memory))
    finally:
        inventory.close()
    return 0


def _export(args: argparse.Namespace) -> int:
    from hpod.export_optuna import run_export

    return run_export(args)


def _simulate(args: argparse.Namespace) -> int:
    from hpod.simulate_cli import run_simulate

    return run_simulate(args)
