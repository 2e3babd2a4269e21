"""The executor contract: start a trial's program, stream its reports, answer them, end it.

`LocalExecutor` (executor/local.py) implements it with subprocesses on this machine; a Ray
executor can implement the same contract on a cluster. Timeouts and stall detection are the
caller's (the runner's): an executor only offers `stop(grace)`.
"""

from __future__ import annotations

import signal as _signal
from dataclasses import dataclass
from pathlib import Path
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Protocol

from hpod.decision import Decision
from hpod.reasons import with_stderr_tail
from hpod.wire import Message


@dataclass(frozen=True, slots=True)
class TrialExit:
    """How a trial's process ended.

    Exactly one of `returncode` (it exited) and `signal` (a signal killed it) is set, unless
    `lost`: the machine or worker process that ran it is gone, so how it ended is unknown (a
    Ray node lost; the trial is requeued as after a daemon restart, not failed).
    `reason` says it in words ("exit code 3", "killed by SIGSEGV"); `stderr_tail` holds the last
    lines the program wrote to stderr (bounded), which is usually the real explanation.
    """

    returncode: int | None
    signal: int | None
    stderr_tail: str
    reason: str
    lost: bool = False

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def describe(self) -> str:
        """The reason and the stderr tail together, as recorded for a failed trial."""
        return with_stderr_tail(self.reason, self.stderr_tail)


def signal_name(signum: int) -> str:
    try:
        return _signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class RunningTrial(Protocol):
    """A started trial. Use it as `async with`: on exit its processes are dead and fds closed."""

    @property
    def pid(self) -> int: ...

    def messages(self) -> AsyncIterator[Message]:
        """Reports, checkpoint notes and protocol problems in order; ends when the pipe closes."""
        ...

    def batches(self) -> AsyncIterator[list[Message]]:
        """The same messages grouped by pipe read: one await per burst, not per line."""
        ...

    def decide(self, decision: Decision, step: int | None = None) -> None:
        """Answer the report of `step` (None: unsolicited). Never blocks; may drop the answer."""
        ...

    async def stop(self, grace: float) -> None:
        """Ask the trial to end (SIGTERM), then force it (SIGKILL) after `grace` seconds."""
        ...

    async def wait(self) -> TrialExit: ...

    async def __aenter__(self) -> RunningTrial: ...

    async def __aexit__(self, *exc_info: object) -> None: ...


class Executor(Protocol):
    async def launch(self, argv: Sequence[str], *, env: Mapping[str, str], cwd: Path,
                     trial_dir: Path, preload: Sequence[str] = (),
                     slot: str | None = None) -> RunningTrial:
        """Start `argv` (never through a shell) with exactly the environment `env` plus the
        HPOD_REPORT_FD / HPOD_CONTROL_FD pipe numbers. Raises LaunchError when it cannot start.

        `preload` (the study's `[trial] preload`) and `slot` (which launches may share spare
        processes: the daemon passes the study's name, and only when `preload` is set) let an
        executor hand the trial to a process that has imported those modules already
        (executor/warm.py); an executor may ignore both.
        """
        ...
