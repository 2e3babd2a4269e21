"""Study files: load (TOML, YAML, JSON), validate, and normalise into a frozen StudySpec.

Every problem raises StudySpecError whose `str()` is one line naming the file, the field and the
fix: exactly what the daemon records for an invalid study and what `hpod check` prints. The
fields are documented in docs/study-file.md; the sections' parsers live in hpod.spec_sections,
the file reading in hpod.spec_files.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpod.enqueue import parse_enqueue
from hpod.errors import NotAStudyFile, SpaceError, StudySpecError
from hpod.safety import check_command
from hpod.space import Space
from hpod.spec_fields import Fields, clean_error, describe
from hpod.spec_files import check_shape, read_study_data
from hpod.spec_sections import (
    FINITE_SUGGESTERS,
    Budget,
    ExecutorSpec,
    Objective,
    Resources,
    SchedulerSpec,
    SuggesterSpec,
    TrialOptions,
    parse_budget,
    parse_command,
    parse_env,
    parse_executor,
    parse_objective,
    parse_resources,
    parse_scheduler,
    parse_suggester,
    parse_trial,
    parse_workdir,
)

__all__ = ["StudySpec", "Objective", "Budget", "SuggesterSpec", "SchedulerSpec", "Resources",
           "TrialOptions", "ExecutorSpec", "load_study_file", "parse_study", "TOP_LEVEL_KEYS"]

TOP_LEVEL_KEYS = ("name", "command", "workdir", "env", "objective", "budget", "parallel", "seed",
                  "space", "suggester", "scheduler", "resources", "trial", "max_failures",
                  "enqueue", "on_finish", "on_failure", "executor")
# The keys only a study has: a file with none of them, nor a misspelling of one, at its top
# level or in a table there (`study: {command: ...}`) is not an attempt at a study
# (NotAStudyFile). Generic words a trial's own output may hold do not count.
STUDY_MARKS = tuple(key for key in TOP_LEVEL_KEYS
                    if key not in ("name", "env", "seed", "parallel", "trial"))
_MARKS = "`command`, `objective`, `space`"
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,99}")


@dataclass(frozen=True)
class StudySpec:
    """A validated study. Paths are absolute; `command[0]` is a resolved executable."""

    name: str
    path: Path
    command: tuple[str, ...]
    workdir: Path
    objective: Objective
    space: Space
    env: dict[str, str] = field(default_factory=dict)
    budget: Budget = Budget()
    parallel: int = 1
    seed: int | None = None
    suggester: SuggesterSpec = SuggesterSpec()
    scheduler: SchedulerSpec = SchedulerSpec()
    resources: Resources = Resources()
    trial: TrialOptions = TrialOptions()
    max_failures: int = 5  # consecutive failed trials before the study is marked failed
    # Points to run before any suggestion ([[enqueue]]), partial ones allowed; validated against
    # `space`, and not part of identity(): enqueuing more points under a running study is fine.
    enqueue: tuple[dict[str, Any], ...] = ()
    # The command as written in the file: what identity() hashes, so that moving the virtualenv
    # hpod runs from (which changes the resolved `python`) does not look like a new command.
    source_command: tuple[str, ...] = ()
    # Hooks (hpod.hooks): argv run with the study's summary on stdin when it completes / fails.
    # Resolved like `command`; not part of identity(): a hook may change under a running study.
    on_finish: tuple[str, ...] | None = None
    on_failure: tuple[str, ...] | None = None
    # Where trials run (local or a Ray cluster); not part of identity(): results compare.
    executor: ExecutorSpec = ExecutorSpec()

    def identity(self) -> str:
        """sha256 (hex) of what may not change under a running study: command, space, objective.

        budget, parallel and the rest may change live; a change here means a new study."""
        payload = {
            "command": list(self.source_command or self.command),
            "space": self.space.to_dict(),
            "objective": {"metric": self.objective.metric,
                          "direction": str(self.objective.direction)},
        }
        text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        """The normalised study as JSON-able data (what the store keeps)."""
        s = self.scheduler
        return {
            "name": self.name,
            "path": str(self.path),
            "command": list(self.command),
            "workdir": str(self.workdir),
            "env": dict(self.env),
            "objective": {"metric": self.objective.metric, "direction": str(self.objective.direction)},
            "budget": {"trials": self.budget.trials, "hours": self.budget.hours},
            "parallel": self.parallel,
            "seed": self.seed,
            "space": self.space.to_dict(),
            "suggester": {"kind": self.suggester.kind, **self.suggester.options},
            "scheduler": {"kind": s.kind, "resource": s.resource, "min_resource": s.min_resource,
                          "max_resource": s.max_resource, "reduction_factor": s.reduction_factor,
                          "brackets": s.brackets, "grace": s.grace, "mode": s.mode,
                          "options": dict(s.options)},
            "resources": {"gpus_per_trial": self.resources.gpus_per_trial,
                          "min_free_memory_mb": self.resources.min_free_memory_mb,
                          "gpu_memory_limit_mb": self.resources.gpu_memory_limit_mb},
            "trial": {"timeout": self.trial.timeout, "retries": self.trial.retries,
                      "retry_delay": self.trial.retry_delay,
                      "stall_timeout": self.trial.stall_timeout, "grace": self.trial.grace,
                      "preload": list(self.trial.preload), "repeats": self.trial.repeats,
                      "max_log_mb": self.trial.max_log_mb,
                      "keep_checkpoints": self.trial.keep_checkpoints},
            "max_failures": self.max_failures,
            "enqueue": [dict(point) for point in self.enqueue],
            "on_finish": None if self.on_finish is None else list(self.on_finish),
            "on_failure": None if self.on_failure is None else list(self.on_failure),
            "executor": {"kind": self.executor.kind, "address": self.executor.address,
                         "cpus_per_trial": self.executor.cpus_per_trial},
        }


def load_study_file(path: str | Path) -> StudySpec:
    """Read and validate a study file; the format follows the extension (.toml .yaml .yml .json).

    It also refuses a file, or a program it runs from its folder, that someone other than the
    daemon's user could have written (hpod.safety)."""
    path = Path(path)
    try:
        data = read_study_data(path)
    except StudySpecError as e:
        raise clean_error(e) from None
    spec = parse_study(data, path=path)
    try:
        check_command(path, spec.command, spec.source_command)
        for hook, (argv, source) in _hooks(spec, data).items():
            _check_hook(path, hook, argv, source)
    except StudySpecError as e:
        raise clean_error(e) from None
    return spec


def _hooks(spec: StudySpec, data: Mapping[str, Any]) -> dict[str, tuple[tuple[str, ...], list[Any]]]:
    """Each hook the study sets: its name -> (resolved argv, argv as written)."""
    hooks = {"on_finish": spec.on_finish, "on_failure": spec.on_failure}
    return {name: (argv, list(data.get(name) or ())) for name, argv in hooks.items()
            if argv is not None}


def _check_hook(path: Path, name: str, argv: tuple[str, ...], source: list[Any]) -> None:
    """A hook runs a program as the daemon's user too: the same trust rules as `command`."""
    try:
        check_command(path, argv, tuple(str(a) for a in source))
    except StudySpecError as e:
        field = (e.field or "command").replace("command", name, 1)
        raise StudySpecError(e.message, path=e.path, field=field, fix=e.fix) from None


def parse_study(data: Mapping[str, Any], *, path: Path) -> StudySpec:
    """Validate already-loaded data as if it came from the file at `path` (relative paths in it
    resolve against that file's folder). Raises StudySpecError, and nothing else."""
    path = Path(path)
    if not isinstance(data, Mapping):  # a file's list or scalar, or a caller's mistake
        raise NotAStudyFile.holding(path, f"it holds {describe(data)}, not a table of settings "
                                          f"({_MARKS}, ...)")
    try:
        return _parse(check_shape(data, path), path)
    except StudySpecError as e:
        raise clean_error(e) from None
    except RecursionError:
        raise clean_error(StudySpecError("is nested too deeply", path=str(path),
                                         fix="flatten it")) from None


def _looks_like_a_study(data: Mapping[str, Any]) -> bool:
    def marked(table: Mapping[str, Any]) -> bool:
        return any(isinstance(key, str) and (key in STUDY_MARKS or difflib.get_close_matches(
            key, STUDY_MARKS, n=1, cutoff=0.8)) for key in table)

    return marked(data) or any(isinstance(value, Mapping) and marked(value)
                               for value in data.values())


def _parse(data: Mapping[str, Any], path: Path) -> StudySpec:
    if not _looks_like_a_study(data):
        raise NotAStudyFile.holding(path, f"none of the keys a study has ({_MARKS}, ...) at "
                                          "its top level")
    f = Fields(path=str(path))
    f.known_keys(data, "", TOP_LEVEL_KEYS)
    data = {k: v for k, v in data.items() if v is not None}  # null means "the default"
    folder = path.resolve().parent

    name = _name(f, data.get("name"), path)
    env = parse_env(f, data.get("env"))
    source = data.get("command")
    command = parse_command(f, source, folder, env)
    workdir = parse_workdir(f, data.get("workdir"), folder)
    objective = parse_objective(f, data.get("objective"))
    space = _space(f, data.get("space"))
    _check_params_fit_the_environment(f, space)
    suggester = parse_suggester(f, data.get("suggester"), _suggester_options)
    if suggester.kind in FINITE_SUGGESTERS:
        try:
            space.grid_size()
        except SpaceError as e:
            f.fail(e.field, f"suggester kind {suggester.kind!r} needs a finite space, but {e.message}",
                   e.fix)
    budget = parse_budget(f, data.get("budget"), suggester.kind)
    scheduler = parse_scheduler(f, data.get("scheduler"))
    _check_suggester_values(f, suggester, scheduler, space, objective)
    _check_scheduler_values(f, scheduler, objective)
    trial = parse_trial(f, data.get("trial"), command)
    _check_repeats(f, trial.repeats, scheduler)
    _check_pause_grace(f, trial.grace, scheduler)
    return StudySpec(
        name=name,
        path=path,
        command=command,
        workdir=workdir,
        objective=objective,
        space=space,
        env=env,
        budget=budget,
        parallel=f.integer(data.get("parallel", 1), "parallel", low=1, high=1024),
        seed=f.integer(data["seed"], "seed", low=0, high=2**63 - 1) if "seed" in data else None,
        suggester=suggester,
        scheduler=scheduler,
        resources=parse_resources(f, data.get("resources")),
        trial=trial,
        max_failures=f.integer(data.get("max_failures", 5), "max_failures", low=1, high=10**6),
        enqueue=parse_enqueue(f, data.get("enqueue"), space, budget.trials),
        source_command=tuple(str(a) for a in source or ()),  # a list: parse_command checked it
        on_finish=_hook(f, data, "on_finish", folder, env),
        on_failure=_hook(f, data, "on_failure", folder, env),
        executor=parse_executor(f, data.get("executor")),
    )


# Schedulers that park a trial at a rung (PAUSE); a configuration with several runs would have
# to park and resume them together, which hpod does not do.
_PAUSING_SCHEDULERS = frozenset({"sh", "hyperband"})


# Linux caps one environment string at 32 pages (128 KiB); HPOD_PARAMS carries the params.
_MAX_PARAMS_BYTES = 100_000


def _check_params_fit_the_environment(f: Fields, space: Space) -> None:
    size = len(json.dumps(space.fixed))
    if size > _MAX_PARAMS_BYTES:
        f.fail("space", f"its fixed values take {size // 1024} KiB in HPOD_PARAMS, the "
               "environment variable a trial reads them from; Linux refuses one over 128 KiB "
               "(every trial would fail to start), and the searched values need room too, so "
               "hpod allows 100 000 bytes",
               "put large data in a file and give its path as the fixed value")


def _check_pause_grace(f: Fields, grace: float, scheduler: SchedulerSpec) -> None:
    # [trial] grace is also how long a trial told "pause" has to save its checkpoint and exit;
    # with 0 every pause was a kill, and pause mode never paused anything.
    if grace == 0 and _pauses(scheduler):
        f.fail("trial.grace", "is 0, but the scheduler pauses trials, and a trial told to "
               "pause needs time to save its checkpoint and exit",
               "give it the seconds a checkpoint takes (the default is 10)"
               + ('' if scheduler.kind in _PAUSING_SCHEDULERS else ', or use mode = "stop"'))


def _pauses(scheduler: SchedulerSpec) -> bool:
    """Whether the scheduler may tell a trial to pause (`mode` only counts for the kinds that
    use it: fifo may keep a mode = "pause" from before it switched early stopping off)."""
    return scheduler.kind in _PAUSING_SCHEDULERS or (
        scheduler.kind in ("asha", "async-hyperband") and scheduler.mode == "pause")


def _check_repeats(f: Fields, repeats: int, scheduler: SchedulerSpec) -> None:
    if repeats > 1 and _pauses(scheduler):
        what = (f"scheduler kind {scheduler.kind!r}" if scheduler.kind in _PAUSING_SCHEDULERS
                else 'scheduler mode "pause"')
        f.fail("trial.repeats",
               f"repeats = {repeats} cannot be combined with {what}, which pauses trials at "
               "rungs (the runs of a configuration would have to pause and resume together)",
               'use kind = "asha" or "async-hyperband" with mode = "stop" (or "median"), '
               "or set repeats = 1")


def _hook(f: Fields, data: Mapping[str, Any], name: str, folder: Path,
          env: Mapping[str, str]) -> tuple[str, ...] | None:
    if name not in data:
        return None
    return parse_command(f, data[name], folder, env, name=name)


def _name(f: Fields, raw: Any, path: Path) -> str:
    if raw is None:
        if not _NAME_RE.fullmatch(path.stem):
            f.fail("name", f"the file name {path.stem!r} cannot be a study name",
                   'set name = "..." (letters, digits, "_", ".", "-"), or rename the file')
        return path.stem
    text = f.string(raw, "name", max_len=100)
    if not _NAME_RE.fullmatch(text):
        f.fail("name", f"invalid study name {text!r}",
               'use letters, digits, "_", ".", "-", starting with a letter or digit')
    return text


def _space(f: Fields, raw: Any) -> Space:
    if raw is None:
        f.fail("space", "is required but missing",
               'add a [space] table, e.g. lr = { type = "float", low = 1e-4, high = 1e-1, log = true }')
    try:
        return Space.from_dict(raw)
    except SpaceError as e:  # add the file name the space parser does not know
        raise SpaceError(e.message, path=f.path, field=e.field, fix=e.fix) from None


def _check_suggester_values(f: Fields, suggester: SuggesterSpec, scheduler: SchedulerSpec,
                            space: Space, objective: Objective) -> None:
    """Build the suggester once, with the options the daemon will give it, so that a value it
    refuses (acquisition = "foo") is an error of the file, here and in `hpod check`, not of the
    daemon that loads it."""
    from hpod.suggest import make_suggester
    from hpod.suggester_defaults import suggester_options

    try:
        make_suggester(suggester.kind, space, direction=objective.direction.value,
                       **suggester_options(suggester, scheduler))
    except SpaceError:
        return  # a space the kind cannot search is reported where the space is checked
    except (ValueError, TypeError) as e:
        message = str(e)
        named = [name for name in suggester.options if message.startswith(f"{name} ")]
        f.fail(f"suggester.{named[0]}" if named else "suggester", message,
               "give a value the message allows, or leave the option out for its "
               "default (docs/study-file.md#suggester)")


def _check_scheduler_values(f: Fields, scheduler: SchedulerSpec, objective: Objective) -> None:
    """Build the scheduler once, as the daemon will, so that what it refuses (max_resource
    below min_resource, an option it does not take) is an error of the file, not a study that
    fails when it starts."""
    from hpod.study_policy import scheduler_of

    try:
        scheduler_of(scheduler, objective.direction.value, None)
    except (ValueError, TypeError) as e:
        message = str(e)
        # The field is the option the message names first.
        fields = {f"scheduler.options.{key}": f"`{key}`" for key in scheduler.options}
        fields.update({f"scheduler.{key}": f"`{key}`" for key in (
            "min_resource", "max_resource", "reduction_factor", "brackets", "grace", "mode")})
        named = sorted((message.find(quoted), field) for field, quoted in fields.items()
                       if quoted in message)
        f.fail(named[0][1] if named else "scheduler", message.split(" Fix: ")[0],
               message.split(" Fix: ")[1] if " Fix: " in message else
               "give a value the message allows, or leave the option out for its default "
               "(docs/study-file.md#scheduler)")


def _suggester_options(kind: str) -> frozenset[str] | None:
    from hpod.suggest import suggester_options

    return suggester_options(kind)
