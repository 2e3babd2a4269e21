"""The tables of a study file other than `[space]`: their frozen records and their parsers.

Each parser takes the raw value (None when the key is absent or null), checks it with a Fields
and returns the record; hpod.spec puts them together into a StudySpec.
"""

from __future__ import annotations

import difflib
import importlib.util
import json
import keyword
import math
import os
import re
import shlex
import shutil
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpod.gpus import MEMORY_FORMS, parse_memory_mb
from hpod.schedule import SCHEDULER_OPTIONS
from hpod.spec_fields import Fields, describe, join
from hpod.store.records import Direction

SUGGESTER_KINDS = ("random", "grid", "gp", "gp-grid", "tpe")
FINITE_SUGGESTERS = ("grid", "gp-grid")  # need a finite space; run until it is exhausted
SCHEDULER_KINDS = ("fifo", "sh", "hyperband", "asha", "async-hyperband", "median")
RUNG_SCHEDULERS = ("sh", "hyperband", "asha", "async-hyperband")  # need max_resource
EXECUTOR_KINDS = ("local", "ray")
_PYTHON_WORDS = ("python", "python3")
_METRIC_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_./\-]{0,99}")
_RESERVED_METRICS = ("step", "checkpoint", "resumable")  # keys with a meaning of their own on the report pipe
_ENV_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MAX_SECONDS = 1e7  # about 115 days
_MAX_RESOURCE = 1e12
_MAX_PRELOAD = 100


@dataclass(frozen=True)
class Objective:
    metric: str
    direction: Direction


@dataclass(frozen=True)
class Budget:
    trials: int | None = None
    hours: float | None = None


@dataclass(frozen=True)
class SuggesterSpec:
    kind: str = "random"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SchedulerSpec:
    kind: str = "fifo"
    resource: str | None = None  # the reported metric that counts progress; None: the step
    min_resource: float | None = None
    max_resource: float | None = None
    reduction_factor: float = 3.0
    brackets: int | None = None  # async-hyperband; None: all the brackets the rungs allow
    grace: float | None = None
    mode: str = "stop"  # "stop" | "pause": what a losing trial is told
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Resources:
    gpus_per_trial: float = 0.0
    min_free_memory_mb: int | None = None  # None: the daemon's --min-free-memory
    gpu_memory_limit_mb: int | None = None  # a cap hpod.keras applies in the trial; None: none


@dataclass(frozen=True)
class TrialOptions:
    timeout: float | None = None  # seconds of wall time before the trial is stopped
    retries: int = 0  # how many times a failed trial is run again with the same params
    retry_delay: float = 5.0  # seconds before the first retry; doubles with each further one
    stall_timeout: float | None = None  # seconds without a report before the trial is stopped
    grace: float = 10.0  # seconds between SIGTERM and SIGKILL
    # Modules a spare process imports before it is handed a trial (docs/warm-start.md); only
    # for `python script.py` commands. Empty: every trial starts cold.
    preload: tuple[str, ...] = ()
    # Runs per configuration, each with its own HPOD_SEED; the configuration's value is their
    # mean (KerasTuner's executions_per_trial): for noisy trainings.
    repeats: int = 1
    # The most a trial's stdout.log or stderr.log may hold (MiB) before its oldest output is
    # cut (hpod.log_cap); 0: no limit.
    max_log_mb: float = 64.0
    # How many of the best complete trials keep their checkpoint once the trial has ended for
    # good (hpod.checkpoint_keep); None: every checkpoint is kept.
    keep_checkpoints: int | None = None


@dataclass(frozen=True)
class ExecutorSpec:
    """Where the study's trials run (docs/cluster.md). `kind` None: the daemon's choice
    (`hpod serve --executor`); `address` None: the daemon's `--ray-address`, else a local Ray."""

    kind: str | None = None
    address: str | None = None
    cpus_per_trial: float = 1.0  # what each trial asks Ray for; local trials take a CPU slot


def _table(f: Fields, raw: Any, name: str, allowed: tuple[str, ...]) -> Mapping[str, Any]:
    table = f.table({} if raw is None else raw, name)
    f.known_keys(table, name, allowed)
    return {k: v for k, v in table.items() if v is not None}  # null means "the default"


def parse_command(f: Fields, raw: Any, folder: Path, env: Mapping[str, str], *,
                  name: str = "command") -> tuple[str, ...]:
    """argv with argv[0] resolved to an executable and file arguments made absolute.

    `name` is the field it came from: `command`, or a hook (`on_finish`, `on_failure`)."""
    if raw is None:
        f.fail(name, "is required but missing", f'add {name} = ["python", "train.py"]')
    if isinstance(raw, str):
        try:
            hint = json.dumps(shlex.split(raw))
        except ValueError:
            hint = '["python", "train.py"]'
        f.fail(name, "must be a list of arguments, not a string (hpod never uses a shell)",
               f"write it as a list: {name} = {hint}")
    if not isinstance(raw, list):
        f.fail(name, f"must be a list of arguments, got {describe(raw)}",
               f'write it as a list: {name} = ["python", "train.py"]')
    if not raw:
        f.fail(name, "must not be empty", f'write {name} = ["python", "train.py"]')
    if len(raw) > 10_000:
        f.fail(name, f"has {len(raw)} arguments (at most 10000)", "pass fewer arguments")
    args: list[str] = []
    for i, arg in enumerate(raw):
        if isinstance(arg, (int, float)) and not isinstance(arg, bool):
            arg = str(arg)
        args.append(f.string(arg, join(name, i), max_len=100_000, nonempty=(i == 0)))
    return (_executable(f, args[0], folder, env, name),
            *(_argument(a, folder) for a in args[1:]))


def _executable(f: Fields, word: str, folder: Path, env: Mapping[str, str],
                name: str = "command") -> str:
    if word in _PYTHON_WORDS and sys.executable:
        return sys.executable  # the interpreter running hpod: a virtualenv just works
    if "/" in word:
        exe = Path(os.path.normpath(folder / os.path.expanduser(word)))
        try:
            exists, runnable = exe.exists(), exe.is_file() and os.access(exe, os.X_OK)
        except (OSError, ValueError):  # a name too long for the file system, and the like
            exists = runnable = False
        if not exists:
            f.fail(f"{name}[0]", f"command {word!r} was not found (looked for {exe})",
                   "check the path; relative paths start from the study file's folder")
        if not runnable:
            f.fail(f"{name}[0]", f"command {word!r} is not an executable file ({exe})",
                   f"chmod +x {exe}, or run it through its interpreter: [\"bash\", \"{word}\"]")
        return str(exe)
    found = shutil.which(word, path=env.get("PATH"))
    if found is None:
        f.fail(f"{name}[0]", f"command {word!r} was not found on PATH",
               "install it, check the spelling, or give its path")
    return found


def _argument(arg: str, folder: Path) -> str:
    """A file next to the study file becomes absolute, so it works from any workdir."""
    if not arg or arg.startswith("-") or os.path.isabs(arg) or "\x00" in arg:
        return arg
    try:
        candidate = folder / arg
        if candidate.is_file():
            return os.path.normpath(candidate)
    except (OSError, ValueError):  # a name too long for the file system is just an argument
        pass
    return arg


def parse_workdir(f: Fields, raw: Any, folder: Path) -> Path:
    if raw is None:
        return folder
    text = f.string(raw, "workdir", max_len=4096)
    path = Path(os.path.normpath(folder / os.path.expanduser(text)))
    try:
        is_dir = path.is_dir()
    except (OSError, ValueError):
        is_dir = False
    if not is_dir:
        f.fail("workdir", f"folder {text!r} does not exist ({path})",
               "create it, or fix the path (relative paths start from the study file's folder)")
    return path


def parse_env(f: Fields, raw: Any) -> dict[str, str]:
    table = f.table({} if raw is None else raw, "env")
    if len(table) > 1000:
        f.fail("env", f"has {len(table)} variables (at most 1000)", "set fewer variables")
    out: dict[str, str] = {}
    for key, value in table.items():
        name = join("env", key)
        if not _ENV_RE.fullmatch(key):
            f.fail(name, f"invalid variable name {key!r}", "use letters, digits and '_'")
        if key.startswith("HPOD_"):
            f.fail(name, f"{key!r} is reserved: hpod sets the HPOD_* variables itself",
                   "use another name")
        if isinstance(value, bool):
            f.fail(name, f"is {str(value).lower()}, but an environment variable is text",
                   f'quote it: {key} = "{int(value)}" (or "{str(value).lower()}", as the '
                   "program reading it expects)")
        if isinstance(value, (int, float)):
            value = str(f.number(value, name)) if isinstance(value, float) else str(value)
        out[key] = f.string(value, name, max_len=100_000, nonempty=False)
    return out


def parse_metric(f: Fields, raw: Any, field_name: str) -> str:
    text = f.string(raw, field_name, max_len=100)
    if not _METRIC_RE.fullmatch(text):
        f.fail(field_name, f"invalid metric name {text!r}",
               "use letters, digits, '_', '.', '/', '-' (starting with a letter or '_')")
    if text in _RESERVED_METRICS:
        fix = ("remove `resource`: without it, the report's step is what counts"
               if field_name == "scheduler.resource" and text == "step" else
               "report the metric under another name")
        f.fail(field_name, f"{text!r} is reserved by the report protocol", fix)
    return text


def parse_objective(f: Fields, raw: Any) -> Objective:
    if raw is None:
        f.fail("objective", "is required but missing",
               'add objective = { metric = "val_loss", direction = "minimize" }')
    table = _table(f, raw, "objective", ("metric", "direction"))
    metric = parse_metric(f, f.required(table, "metric", "objective", 'add metric = "val_loss"'),
                          "objective.metric")
    word = f.required(table, "direction", "objective", 'add direction = "minimize" or "maximize"')
    direction = f.choice(word, "objective.direction", ("minimize", "maximize"),
                         aliases={"min": "minimize", "max": "maximize"})
    return Objective(metric, Direction(direction))


def parse_budget(f: Fields, raw: Any, suggester: str) -> Budget:
    table = _table(f, raw, "budget", ("trials", "hours"))
    trials = f.integer(table["trials"], "budget.trials", low=1, high=10**9) if "trials" in table else None
    hours = f.number(table["hours"], "budget.hours", positive=True, high=1e5) if "hours" in table else None
    if trials is None and hours is None and suggester not in FINITE_SUGGESTERS:
        f.fail("budget", "is required: give a number of trials, hours, or both",
               "add budget = { trials = 50 } (only a grid search may run without a budget)")
    return Budget(trials, hours)


def parse_suggester(f: Fields, raw: Any, known_options: Any) -> SuggesterSpec:
    """`known_options(kind)` -> the option names a kind takes, or None to pass them unchecked."""
    if isinstance(raw, str):
        raw = {"kind": raw}
    table = f.table({} if raw is None else raw, "suggester")
    kind = table.get("kind")
    kind = "random" if kind is None else f.choice(kind, "suggester.kind", SUGGESTER_KINDS)
    options = {k: v for k, v in table.items() if k != "kind" and v is not None}
    allowed = known_options(kind)
    if allowed is not None:
        f.known_keys(options, "suggester", ["kind", *sorted(allowed)], context=f"for kind {kind!r}")
    return SuggesterSpec(kind, options)


# Options one kind of scheduler takes that are no field of the [scheduler] table; they go in its
# `options` table.
_KIND_OPTIONS = ("cohort_size", "min_trials", "seed")
# Fields of the [scheduler] table that only some kinds use.
_KIND_FIELDS = ("min_resource", "max_resource", "reduction_factor", "brackets", "grace", "mode")


def parse_scheduler(f: Fields, raw: Any) -> SchedulerSpec:
    if isinstance(raw, str):
        raw = {"kind": raw}
    if isinstance(raw, dict):
        for key in _KIND_OPTIONS:
            if key in raw:
                f.fail(f"scheduler.{key}", f"{key!r} is an option of one kind of scheduler, "
                       "not a field of [scheduler]",
                       f"write it in the options table: options = {{ {key} = "
                       f"{raw[key]!r} }}".replace("'", '"'))
    table = _table(f, raw, "scheduler", ("kind", "resource", "min_resource", "max_resource",
                                         "reduction_factor", "brackets", "grace", "mode", "options"))
    kind = f.choice(table.get("kind", "fifo"), "scheduler.kind", SCHEDULER_KINDS)
    _refuse_fields_the_kind_ignores(f, table, kind)

    def resource(key: str) -> float | None:
        if key not in table:
            return None
        return f.number(table[key], f"scheduler.{key}", positive=True, high=_MAX_RESOURCE)

    low, high = resource("min_resource"), resource("max_resource")
    if low is not None and high is not None and low >= high:
        f.fail("scheduler.min_resource", f"min_resource ({low:g}) must be less than max_resource ({high:g})",
               "lower min_resource or raise max_resource")
    if kind in RUNG_SCHEDULERS and high is None:
        f.fail("scheduler.max_resource", f"is required for kind {kind!r}",
               "add max_resource = <the resource (e.g. epochs) of a full trial>")
    factor = f.number(table.get("reduction_factor", 3.0), "scheduler.reduction_factor", high=100.0)
    if factor <= 1:
        f.fail("scheduler.reduction_factor", f"must be greater than 1, got {factor:g}",
               "use 2, 3 or 4 (3 is the usual choice)")
    return SchedulerSpec(
        kind=kind,
        resource=parse_metric(f, table["resource"], "scheduler.resource") if "resource" in table else None,
        min_resource=low,
        max_resource=high,
        reduction_factor=factor,
        brackets=f.integer(table["brackets"], "scheduler.brackets", low=1, high=100)
        if "brackets" in table else None,
        grace=f.number(table["grace"], "scheduler.grace", low=0.0, high=_MAX_RESOURCE)
        if "grace" in table else None,
        mode=f.choice(table.get("mode", "stop"), "scheduler.mode", ("stop", "pause")),
        options=_scheduler_options(f, table.get("options", {}), kind),
    )


def _scheduler_options(f: Fields, raw: Any, kind: str) -> dict[str, Any]:
    # `options` goes to the scheduler as it is, so a key there would override what the study
    # says elsewhere: `direction` (a minimising study's scheduler keeping its worst trials) or a
    # [scheduler] field (`mode = "pause"` past the check that refuses it with repeats).
    options = dict(f.table(raw, "scheduler.options"))
    own = sorted(SCHEDULER_OPTIONS.get(kind, frozenset()) - {"direction", *_KIND_FIELDS})
    for key, value in options.items():
        field = f"scheduler.options.{key}"
        if key == "direction":
            f.fail(field, "the direction comes from the objective",
                   'remove it; set [objective] direction = "minimize" or "maximize"')
        if key in (*_KIND_FIELDS, "kind", "resource"):
            f.fail(field, f"{key!r} is a field of [scheduler], not an option",
                   f"write it in [scheduler] itself: {key} = {json.dumps(value)}")
        if kind != "fifo" and key not in own:
            close = difflib.get_close_matches(key, own, n=1)
            f.fail(field, f"kind {kind!r} takes no option {key!r}"
                   + (f". Did you mean `{close[0]}`?" if close else ""),
                   f"its options are {', '.join(own)}" if own else
                   "remove it: this kind has no options beyond the [scheduler] fields")
    return options


def _refuse_fields_the_kind_ignores(f: Fields, table: Mapping[str, Any], kind: str) -> None:
    # A field the kind would silently ignore (`brackets` with kind "asha") makes a user believe
    # they tuned something they did not. "fifo" is exempt: it is how a study switches early
    # stopping off, and keeping the other fields lets it switch back.
    if kind == "fifo":
        return
    for key in _KIND_FIELDS:
        if key in table and key not in SCHEDULER_OPTIONS[kind]:
            users = [k for k, accepted in SCHEDULER_OPTIONS.items()
                     if key in accepted and k != "fifo"]
            f.fail(f"scheduler.{key}", f"kind {kind!r} does not use {key}",
                   "remove it, or use a kind that does: " + ", ".join(f'"{k}"' for k in users))


def parse_resources(f: Fields, raw: Any) -> Resources:
    table = _table(f, raw, "resources", ("gpus_per_trial", "min_free_memory", "gpu_memory_limit"))
    gpus = f.number(table.get("gpus_per_trial", 0), "resources.gpus_per_trial", low=0.0, high=1024.0)
    if 0 < gpus < 1:
        share = round(1 / gpus)
        # 1/3 written with six digits (0.333333) is 1/3: within 1e-5, not only 1e-6.
        if abs(share * gpus - 1) > 1e-5:
            near = sorted({math.floor(1 / gpus), math.ceil(1 / gpus)} - {0})
            options = " or ".join("1 (a whole GPU)" if n == 1 else f"1/{n} = {1 / n:.6f}"
                                  for n in near)
            f.fail("resources.gpus_per_trial", f"a fraction of a GPU must divide 1, got {gpus:g}",
                   f"use {options}: 1/N lets N trials share one GPU")
        gpus = 1 / share
    elif gpus >= 1 and not gpus.is_integer():
        f.fail("resources.gpus_per_trial", f"must be a whole number of GPUs above 1, got {gpus:g}",
               f"use {math.floor(gpus)} or {math.ceil(gpus)}")
    limit = _memory(f, table, "gpu_memory_limit")
    if limit == 0:
        f.fail("resources.gpu_memory_limit", "must be more than 0",
               'give a size such as "4GiB", or remove the key for no limit')
    return Resources(gpus, _memory(f, table, "min_free_memory"), limit)


def _memory(f: Fields, table: Mapping[str, Any], key: str) -> int | None:
    """A memory size in MiB: an integer (MiB) or a string with a unit ("4GiB", "512MiB")."""
    if key not in table:
        return None
    value = table[key]
    try:
        return parse_memory_mb(value)
    except ValueError as e:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            f.fail(f"resources.{key}", str(e), 'give a size such as "4GiB"')
        f.fail(f"resources.{key}", f"{describe(value)} is not a memory size",
               f"write {MEMORY_FORMS}")


def parse_trial(f: Fields, raw: Any, command: Sequence[str] | None = None) -> TrialOptions:
    """`command` (resolved, as parse_command returns it) lets `preload` be checked against it."""
    table = _table(f, raw, "trial", ("timeout", "retries", "retry_delay", "stall_timeout",
                                     "grace", "preload", "repeats", "max_log_mb",
                                     "keep_checkpoints"))

    def seconds(key: str) -> float | None:
        if key not in table:
            return None
        return f.number(table[key], f"trial.{key}", positive=True, high=_MAX_SECONDS)

    return TrialOptions(
        timeout=seconds("timeout"),
        retries=f.integer(table.get("retries", 0), "trial.retries", low=0, high=100),
        retry_delay=f.number(table.get("retry_delay", 5.0), "trial.retry_delay", low=0.0,
                             high=3600.0),
        stall_timeout=seconds("stall_timeout"),
        grace=f.number(table.get("grace", 10.0), "trial.grace", low=0.0, high=3600.0),
        preload=parse_preload(f, table.get("preload"), command),
        repeats=f.integer(table.get("repeats", 1), "trial.repeats", low=1, high=100),
        max_log_mb=f.number(table.get("max_log_mb", 64.0), "trial.max_log_mb", low=0.0,
                            high=1_000_000.0),
        keep_checkpoints=None if "keep_checkpoints" not in table else f.integer(
            table["keep_checkpoints"], "trial.keep_checkpoints", low=0, high=1_000_000),
    )


def parse_preload(f: Fields, raw: Any, command: Sequence[str] | None) -> tuple[str, ...]:
    """Module names ("tensorflow", "sklearn.datasets"), for a command `python script.py ...`."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        f.fail("trial.preload", f"must be a list of module names, got {describe(raw)}",
               'write it as a list: preload = ["tensorflow"]')
    if len(raw) > _MAX_PRELOAD:
        f.fail("trial.preload", f"has {len(raw)} modules (at most {_MAX_PRELOAD})",
               "list only the slow imports (the framework); the rest are cheap")
    names: list[str] = []
    for i, item in enumerate(raw):
        field_name = join("trial.preload", i)
        name = f.string(item, field_name, max_len=200)
        if not all(part.isidentifier() and not keyword.iskeyword(part)
                   for part in name.split(".")):
            f.fail(field_name, f"{name!r} is not a module name",
                   'write a dotted module name as in an import statement, e.g. "tensorflow" '
                   'or "sklearn.datasets"')
        if name in names:
            f.fail(field_name, f"{name!r} is listed twice", "remove the duplicate")
        names.append(name)
    if names and command is not None and not _runs_python_script(command):
        shown = " ".join(command[:2])
        f.fail("trial.preload",
               f"only works for a Python script run by the interpreter that runs hpod "
               f"(`python script.py ...`), but the command starts with {shown!r}",
               'use command = ["python", "train.py", ...] (no options between python and the '
               "script), or remove preload")
    return tuple(names)


def _runs_python_script(command: Sequence[str]) -> bool:
    """`python script.py ...` with `python` resolved to this interpreter (see _executable)."""
    return (len(command) >= 2 and bool(sys.executable) and command[0] == sys.executable
            and not command[1].startswith("-"))


def parse_executor(f: Fields, raw: Any) -> ExecutorSpec:
    """`[executor]` (or `executor = "ray"`): local subprocesses or a Ray cluster."""
    if isinstance(raw, str):
        raw = {"kind": raw}
    table = _table(f, raw, "executor", ("kind", "address", "cpus_per_trial"))
    kind = f.choice(table["kind"], "executor.kind", EXECUTOR_KINDS) if "kind" in table else None
    address = f.string(table["address"], "executor.address", max_len=1000) \
        if "address" in table else None
    if address is not None and kind is None:
        kind = "ray"  # only a Ray executor has an address
    if address is not None and kind != "ray":
        f.fail("executor.address", f"is only for kind = \"ray\", but kind is {kind!r}",
               "remove address, or set kind = \"ray\"")
    if kind == "ray" and not ray_installed():
        f.fail("executor.kind", "is \"ray\", but Ray is not installed for the daemon",
               "pip install 'hpod[ray]' (on the daemon's machine and every node), or remove "
               "[executor]")
    if "cpus_per_trial" in table and kind == "local":
        f.fail("executor.cpus_per_trial", "is only for Ray; a local trial takes one CPU slot",
               "remove it, or set kind = \"ray\"")
    cpus = f.number(table.get("cpus_per_trial", 1.0), "executor.cpus_per_trial", positive=True,
                    high=1024.0)
    return ExecutorSpec(kind, address, cpus)


def ray_installed() -> bool:
    """Whether Ray can be imported, without importing it (seconds). A folder named `ray` on
    sys.path without an __init__.py is a namespace package, not Ray: its origin is None."""
    try:
        found = importlib.util.find_spec("ray")
    except (ImportError, ValueError):
        return False
    return found is not None and found.origin is not None
