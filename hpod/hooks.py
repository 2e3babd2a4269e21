"""Study hooks: `on_finish` / `on_failure` commands run with the study's summary as JSON on stdin.

A hook is how a user hears that the night's study ended (a mail, a chat message). It runs like a
trial does: an argv list (never a shell) in its own process group, so a timeout or a cancelled
daemon kills everything it started. A hook that fails, hangs or is missing never raises: the
daemon records what happened as an event and goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import signal
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hpod.executor.base import signal_name
from hpod.executor.process import settle, signal_group
from hpod.store.records import (
    EventLevel,
    StudyRecord,
    StudyState,
    TrialRecord,
    TrialState,
)

logger = logging.getLogger(__name__)

OUTPUT_TAIL_BYTES = 4096  # what is kept of a hook's stdout and of its stderr
SUMMARY_VERSION = 1  # bumped when a field of the summary changes meaning
_READ_CHUNK = 65536
_PIPE_DRAIN_S = 5.0  # how long to wait for pipes to close once the hook's group is gone


@dataclass(frozen=True)
class HookResult:
    """What one hook run did. `ok` is exit code 0; `reason` says it in words."""

    argv: tuple[str, ...]
    ok: bool
    exit_code: int | None  # None: never started, or killed by a signal
    reason: str  # "exit code 0", "killed after the 60 s timeout", "cannot start: ..."
    stdout: str  # the last OUTPUT_TAIL_BYTES of each, decoded leniently
    stderr: str
    elapsed_s: float

    def describe(self, hook: str = "hook") -> str:
        """One line for the event log: `hook on_finish (notify.sh): exit code 3: <stderr>`."""
        program = os.path.basename(self.argv[0]) if self.argv else "?"
        text = f"{hook} ({program}): {self.reason}"
        last = self.stderr.strip().splitlines()[-1:] if not self.ok else []
        if last:
            text += f": {last[0][:300]}"
        return text


async def run_hook(argv: Sequence[str], summary: Mapping[str, Any], *, cwd: str | Path,
                   timeout: float = 60.0, env: Mapping[str, str] | None = None) -> HookResult:
    """Run `argv` with `summary` as JSON on stdin; never raises for anything the hook does.

    `env` None inherits the daemon's environment. On timeout, or when the caller is cancelled,
    the hook's whole process group is killed; processes it leaves behind in its group when it
    exits are killed too (no orphans).
    """
    argv = tuple(str(a) for a in argv)
    started = time.monotonic()
    if not argv:
        return HookResult(argv, False, None, "cannot start: the command is empty", "", "", 0.0)
    payload = (json.dumps(dict(summary), sort_keys=True, default=str) + "\n").encode()
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, cwd=os.fspath(cwd),
            env=None if env is None else dict(env), start_new_session=True)
    except (OSError, ValueError) as error:  # missing program, bad cwd, NUL in an argument
        return HookResult(argv, False, None, f"cannot start: {_start_error(error, argv, cwd)}",
                          "", "", time.monotonic() - started)
    pgid = proc.pid  # start_new_session: the leader's pid is the group id
    assert proc.stdin and proc.stdout and proc.stderr  # PIPE was asked for all three
    tasks: list[asyncio.Task[Any]] = [asyncio.create_task(_feed(proc.stdin, payload)),
             asyncio.create_task(_tail(proc.stdout)), asyncio.create_task(_tail(proc.stderr))]
    timed_out = False
    try:
        try:
            # NOTE: not proc.wait(): under 3.11 it also waits for the pipes to close, which a
            # background child the hook left holding stdout would put off for ever.
            await asyncio.wait_for(_exited(proc.pid), timeout)
        except TimeoutError:
            timed_out = True
        signal_group(pgid, signal.SIGKILL)  # on timeout the hook; else what it left behind
        tasks.append(asyncio.create_task(proc.wait()))  # sets returncode once the pipes close
        await asyncio.wait(tasks, timeout=_PIPE_DRAIN_S)
    except BaseException:  # cancelled (the daemon stops): the hook goes with it
        signal_group(pgid, signal.SIGKILL)
        for task in tasks:
            task.cancel()
        raise
    for task in tasks:
        task.cancel()
    out, err = _done_text(tasks[1]), _done_text(tasks[2])
    elapsed = time.monotonic() - started
    code = proc.returncode
    if timed_out:
        reason = f"killed after the {timeout:g} s timeout"
        return HookResult(argv, False, None, reason, out, err, elapsed)
    if code is not None and code < 0:
        return HookResult(argv, False, None, f"killed by {signal_name(-code)}", out, err, elapsed)
    if code is None:  # a process that left the group still holds the pipes
        return HookResult(argv, False, None, "exited, exit code unknown", out, err, elapsed)
    return HookResult(argv, code == 0, code, f"exit code {code}", out, err, elapsed)


async def _exited(pid: int) -> None:
    """Return once process `pid` has exited (reaped or not), without reaping it: asyncio's
    child watcher does that and records the exit code."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return  # already gone
    except (AttributeError, OSError):  # no pidfd (kernel < 5.3): look every 50 ms instead
        while True:
            try:
                if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                    return
            except ChildProcessError:
                return  # reaped already
            await asyncio.sleep(0.05)
    loop = asyncio.get_running_loop()
    done = loop.create_future()
    loop.add_reader(fd, settle, done)
    try:
        await done
    finally:
        loop.remove_reader(fd)
        os.close(fd)


def _start_error(error: OSError | ValueError, argv: Sequence[str], cwd: str | Path) -> str:
    if isinstance(error, FileNotFoundError):
        if error.filename is not None and os.fspath(error.filename) == os.fspath(cwd):
            return f"working directory {os.fspath(cwd)!r} does not exist"
        return f"command {argv[0]!r} not found"
    if isinstance(error, PermissionError):
        return f"{argv[0]!r} is not executable (permission denied)"
    return str(error)


async def _feed(stream: asyncio.StreamWriter, payload: bytes) -> None:
    # A hook need not read its stdin: a closed pipe is its choice, not an error.
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        stream.write(payload)
        await stream.drain()
        stream.close()
        await stream.wait_closed()


async def _tail(stream: asyncio.StreamReader) -> str:
    """Read to the end, keeping only the last OUTPUT_TAIL_BYTES: a chatty hook costs no memory."""
    kept = bytearray()
    while chunk := await stream.read(_READ_CHUNK):
        kept += chunk
        del kept[:-OUTPUT_TAIL_BYTES]
    return kept.decode("utf-8", errors="replace")


def _done_text(task: asyncio.Task[Any]) -> str:
    if task.done() and not task.cancelled() and task.exception() is None:
        return str(task.result())
    return ""


# -- the summary ---------------------------------------------------------------------------------

def study_summary(study: StudyRecord, trials: Iterable[TrialRecord], *, db_path: str | Path,
                  now: float | None = None) -> dict[str, Any]:
    """The JSON-able account of a study a hook reads on stdin (docs/study-file.md, hooks).

    Pure: everything comes from the store's records. `now` stands in for `finished_at` while
    the study has none (a summary taken before the store marked the end).
    """
    trials = list(trials)
    counts = {state.value: 0 for state in TrialState}
    for trial in trials:
        counts[trial.state.value] += 1
    best = _best(trials, study)
    begun = [t.started_at for t in trials if t.started_at is not None]
    started = min(begun) if begun else study.created_at
    finished = study.finished_at if study.finished_at is not None else now
    return {
        "version": SUMMARY_VERSION,
        "name": study.name,
        "state": study.state.value,
        "error": study.error,
        "study_file": study.path,
        "database": os.fspath(db_path),
        "metric": study.metric,
        "direction": study.direction.value,
        "trials": len(trials),
        "counts": counts,
        "best": None if best is None else {"trial": best.number, "value": best.value,
                                           "params": dict(best.params)},
        "started_at": started,
        "finished_at": finished,
        "started": _iso(started),
        "finished": _iso(finished),
        "elapsed_s": None if finished is None else round(max(0.0, finished - started), 3),
    }


def _best(trials: list[TrialRecord], study: StudyRecord) -> TrialRecord | None:
    """The best complete trial with a finite value; the lowest number wins a tie (as the store)."""
    best: TrialRecord | None = None
    for trial in sorted(trials, key=lambda t: t.number):
        if trial.state is not TrialState.COMPLETE or trial.value is None:
            continue
        if not math.isfinite(trial.value):
            continue
        if best is None or study.direction.better(trial.value, best.value):  # type: ignore[arg-type]
            best = trial
    return best


def _iso(when: float | None) -> str | None:
    if when is None:
        return None
    return datetime.fromtimestamp(when, tz=timezone.utc).isoformat(timespec="seconds")


# -- for the controller ----------------------------------------------------------------------------

def hook_for(spec: Any, state: StudyState) -> tuple[str, tuple[str, ...]] | None:
    """(hook name, argv) a study in `state` runs, or None: on_finish when complete, on_failure
    when failed."""
    if state is StudyState.COMPLETE and spec.on_finish is not None:
        return "on_finish", tuple(spec.on_finish)
    if state is StudyState.FAILED and spec.on_failure is not None:
        return "on_failure", tuple(spec.on_failure)
    return None


async def run_study_hook(spec: Any, study: StudyRecord, store: Any, *, db_path: str | Path,
                         timeout: float = 60.0) -> HookResult | None:
    """Run the hook `study.state` calls for, if the study file set one, and record an event.

    `spec` is the StudySpec, `store` the daemon's Store. Never raises for the hook's sake; the
    hook runs in the study's workdir with the study's `env` on top of the daemon's.
    """
    chosen = hook_for(spec, study.state)
    if chosen is None:
        return None
    name, argv = chosen
    trials = await store.list_trials(study.id)
    summary = study_summary(study, trials, db_path=db_path, now=time.time())
    env = {**os.environ, **spec.env, "HPOD_STUDY": study.name, "HPOD_HOOK": name}
    result = await run_hook(argv, summary, cwd=spec.workdir, timeout=timeout, env=env)
    level = EventLevel.INFO if result.ok else EventLevel.WARNING
    message = f"study {study.name}: {result.describe(name)}"
    logger.log(logging.INFO if result.ok else logging.WARNING, "%s", message)
    await store.record_event(level, message, study_id=study.id)
    return result
