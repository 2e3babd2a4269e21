"""Trials as subprocesses on this machine, talking the pipe protocol (hpod/wire.py).

Each trial is its own process group (start_new_session), so stopping it reaches whatever it
forked; it gets SIGKILL if the daemon dies (PR_SET_PDEATHSIG); its report and control pipes are
its descriptors 3 and 4 and no other descriptor of the daemon's reaches it; its stdout/stderr go
to `stdout.log` / `stderr.log` in its trial folder, never through the pipes.

Two ways to start one, with the same result for the trial:
- the fast path (the daemon's: it holds descriptors 3 and 4, executor/fd_slots.py, and has
  setpriv, executor/spawn.py): no preexec_fn, so CPython spawns with vfork;
- the preexec path (everywhere else, and for a program that may not exec cleanly): a
  preexec_fn sets PR_SET_PDEATHSIG and moves the pipes (process.child_setup), and CPython forks.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import IO

from hpod.decision import Decision
from hpod.errors import LaunchError
from hpod.executor.base import TrialExit
from hpod.executor.fd_slots import ChildFdSlots
from hpod.executor.leftovers import kill_leftovers, trial_dir_value
from hpod.log_cap import STDERR_LOG, STDOUT_LOG
from hpod.executor.process import (child_setup, classify_exit, group_alive, launch_error,
                                   load_prctl, settle, signal_group, stderr_tail)
from hpod.executor.spawn import direct_program, with_pdeathsig
from hpod.wire import MAX_LINE, LineBuffer, Message, encode_decision, parse_lines

logger = logging.getLogger(__name__)

_READ_CHUNK = 1 << 16
# NOTE: after the main process exits during a stop, the rest of its group is checked at this
# pace: the kernel has no event for "process group empty" that a non-parent can wait on.
_GROUP_POLL_MAX = 0.1


class LocalExecutor:
    """Starts trials as local subprocesses. One instance serves every trial of a daemon.

    With both `fd_slots` (ChildFdSlots.claim()) and `setpriv` (spawn.find_setpriv()) trials
    start on the fast path; without either, on the preexec path.
    """

    def __init__(self, *, fd_slots: ChildFdSlots | None = None,
                 setpriv: str | None = None) -> None:
        self._prctl_ready = False
        self._prctl: Callable[..., int] | None = None
        self._fd_slots = fd_slots
        self._setpriv = setpriv
        self.fast_starts = 0  # launches that took the fast path

    @property
    def fast(self) -> bool:
        """Whether launches can take the fast path (a program that may not exec cleanly
        still takes the preexec path)."""
        return self._fd_slots is not None and not self._fd_slots.closed \
            and self._setpriv is not None

    async def launch(self, argv: Sequence[str], *, env: Mapping[str, str], cwd: Path,
                     trial_dir: Path, preload: Sequence[str] = (),
                     slot: str | None = None) -> LocalTrial:
        """Start `argv` in `cwd` with exactly `env` (plus HPOD_REPORT_FD / HPOD_CONTROL_FD).

        Always a cold start: `preload` and `slot` are for executor/warm.py and ignored here.
        Raises LaunchError when the program cannot be started.
        """
        argv = [os.fspath(a) for a in argv]
        if not argv or not argv[0]:
            raise LaunchError("cannot start trial: the command is empty")
        trial_dir = Path(trial_dir)
        try:
            trial_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise LaunchError(f"cannot create trial folder {os.fspath(trial_dir)!r}: {e}") from e
        # What an earlier run of this trial forked may have outlived a killed daemon: it must
        # not share the machine (or the GPU) with the run that starts now. Every run creates
        # stderr.log before its process exists (a spare's hand-off too), so without one no
        # process can carry this folder as its HPOD_TRIAL_DIR: the scan of /proc is skipped.
        if (trial_dir / STDERR_LOG).exists():
            await asyncio.to_thread(kill_leftovers, trial_dir)
        fast = self.fast and direct_program(argv[0], env, Path(cwd)) is not None

        try:
            report_r, report_w = os.pipe()
        except OSError as e:  # out of file descriptors: this trial fails, not the study
            raise LaunchError(f"cannot open the trial's report pipe: {e}") from e
        try:
            control_r, control_w = os.pipe()
        except OSError as e:
            os.close(report_r)
            os.close(report_w)
            raise LaunchError(f"cannot open the trial's control pipe: {e}") from e
        spawned = False
        try:
            # Appending keeps a resumed trial's earlier output; the tail starts at this run.
            with open(trial_dir / STDOUT_LOG, "ab") as out, \
                    open(trial_dir / STDERR_LOG, "ab") as err:
                stderr_start = err.tell()
                if fast:
                    proc = await self._spawn_fast(argv, env, cwd, out, err, report_w,
                                                  control_r)
                    self.fast_starts += 1
                else:
                    proc = await self._spawn_preexec(argv, env, cwd, out, err, report_w,
                                                     control_r)
            spawned = True
        except OSError as e:
            raise launch_error(e, argv, Path(cwd)) from e
        except Exception as e:  # SubprocessError from preexec_fn, bad env values, ...
            raise LaunchError(f"cannot start trial {argv[0]!r}: {e}") from e
        finally:
            # The child has its copies; ours would keep the report pipe from ever reaching EOF.
            os.close(report_w)
            os.close(control_r)
            if not spawned:
                os.close(report_r)
                os.close(control_w)

        # A trial that never reads its control pipe must not stall the daemon: answers that
        # do not fit are dropped (see decide()).
        os.set_blocking(control_w, False)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=_READ_CHUNK, loop=loop)
        try:
            transport, _ = await loop.connect_read_pipe(
                lambda: asyncio.StreamReaderProtocol(reader, loop=loop),
                os.fdopen(report_r, "rb", buffering=0))
        except BaseException:
            os.close(control_w)
            signal_group(proc.pid, signal.SIGKILL)
            raise
        logger.debug("launched pid %d: %s", proc.pid, argv)
        trial = LocalTrial(proc, reader, transport, control_w, trial_dir / STDERR_LOG,
                           stderr_start)
        if env.get("HPOD_TRIAL_DIR") == trial_dir_value(trial_dir):
            trial.sweeps(trial_dir)
        return trial

    async def _spawn_fast(self, argv: list[str], env: Mapping[str, str], cwd: Path,
                          out: IO[bytes], err: IO[bytes], report_w: int,
                          control_r: int) -> asyncio.subprocess.Process:
        """vfork + exec of setpriv, which sets PR_SET_PDEATHSIG and execs the trial.

        NOTE: unlike the preexec path, nothing checks that the daemon is still alive once the
        death signal is set: a daemon killed between the spawn and setpriv's prctl (a few
        hundred microseconds) leaves the trial running. That is the window a trial's own
        children always have (PDEATHSIG is not inherited by fork), and it is covered the same
        way: the next daemon on this state folder kills every process carrying a trial folder
        of it as HPOD_TRIAL_DIR before it starts anything (leftovers.py, Daemon._reconcile).
        """
        assert self._fd_slots is not None and self._setpriv is not None
        async with self._fd_slots.placed(report_w, control_r) as (report_fd, control_fd):
            child_env = {**env, "HPOD_REPORT_FD": str(report_fd),
                         "HPOD_CONTROL_FD": str(control_fd)}
            return await asyncio.create_subprocess_exec(
                *with_pdeathsig(self._setpriv, argv), stdin=asyncio.subprocess.DEVNULL,
                stdout=out, stderr=err, cwd=cwd, env=child_env, start_new_session=True,
                pass_fds=(report_fd, control_fd))

    async def _spawn_preexec(self, argv: list[str], env: Mapping[str, str], cwd: Path,
                             out: IO[bytes], err: IO[bytes], report_w: int,
                             control_r: int) -> asyncio.subprocess.Process:
        """fork + preexec_fn (PR_SET_PDEATHSIG, pipes moved to 3 and 4) + exec of the trial."""
        if not self._prctl_ready:
            self._prctl = load_prctl()
            self._prctl_ready = True
        setup = child_setup(report_w, control_r, self._prctl)
        child_env = {**env, "HPOD_REPORT_FD": str(setup.report_fd),
                     "HPOD_CONTROL_FD": str(setup.control_fd)}
        return await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=err,
            cwd=cwd, env=child_env, start_new_session=True,
            pass_fds=setup.pass_fds, preexec_fn=setup.preexec)


class LocalTrial:
    """A running local trial (implements executor.base.RunningTrial)."""

    def __init__(self, proc: asyncio.subprocess.Process, reader: asyncio.StreamReader,
                 transport: asyncio.ReadTransport, control_fd: int, stderr_path: Path,
                 stderr_start: int) -> None:
        self._proc = proc
        self._pgid = proc.pid  # start_new_session: the leader's pid is the group id
        self._reader = reader
        self._transport = transport
        self._control_fd: int | None = control_fd
        self._stderr_path = stderr_path
        self._stderr_start = stderr_start
        self._reading = False
        self._stopping = False
        self._group_killed = False
        self._sent: int | None = None  # the last signal hpod sent, for the exit's reason
        self._grace: float | None = None
        self._exit: TrialExit | None = None
        self._sweep_dir: Path | None = None
        self.dropped_decisions = 0
        # Owned by this object: finishes by itself when the process exits.
        self._reaper = asyncio.get_running_loop().create_task(
            self._reap(), name=f"hpod-reap-{proc.pid}")

    def __repr__(self) -> str:
        state = "running" if self._proc.returncode is None else f"rc={self._proc.returncode}"
        return f"<LocalTrial pid={self.pid} {state}>"

    @property
    def pid(self) -> int:
        return self._proc.pid

    async def _reap(self) -> int:
        returncode = await self._proc.wait()
        if not self._stopping:
            # The trial is its process group: what the main process left behind is a stray
            # that would otherwise hold the report pipe open for ever.
            signal_group(self._pgid, signal.SIGKILL)
            self._group_killed = True
        return returncode

    def _kill_group(self) -> None:
        """SIGKILL the group, unless it is certainly gone already.

        NOTE: once the main process is reaped and its group is empty, the pid may be reused,
        so the group is signalled then only when something live is still in it.
        """
        if not self._reaper.done():
            self._sent, self._grace = signal.SIGKILL, self._grace if self._stopping else None
            signal_group(self._pgid, signal.SIGKILL)
        elif not self._group_killed and group_alive(self._pgid):
            signal_group(self._pgid, signal.SIGKILL)
        self._group_killed = True

    async def exited(self) -> int:
        """Wait for the main process to exit; its returncode (nothing classified, no tail read)."""
        return await asyncio.shield(self._reaper)

    # -- a spare process becoming a trial (executor/warm.py), before messages() is read ----

    async def read_handshake(self) -> bytes:
        """One line from the report pipe, b"" at its end; what follows stays for messages()."""
        if self._reading:
            raise RuntimeError("the report pipe is already read as messages")
        try:
            return await self._reader.readline()
        except ValueError:  # a line longer than the reader's limit: not a handshake
            return b""

    async def send_handshake(self, data: bytes) -> None:
        """Write all of `data` to the control pipe, waiting while it is full (decide() drops
        what does not fit instead). Raises OSError (EPIPE) when the other end is gone."""
        fd = self._control_fd
        if fd is None:
            raise BrokenPipeError("the control pipe is closed")
        loop = asyncio.get_running_loop()
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(fd, view):]
            except BlockingIOError:
                writable = loop.create_future()
                loop.add_writer(fd, settle, writable)
                try:
                    await writable
                finally:
                    loop.remove_writer(fd)

    def sweeps(self, trial_dir: Path) -> None:
        """When closed, kill every process still carrying `trial_dir` as its HPOD_TRIAL_DIR.

        The process group reaches what the trial forked, but not what left it: a helper
        started in a session of its own (setsid, a daemonising server) would otherwise hold
        its memory, or a GPU's, until the trial's folder is used again or the daemon restarts.
        """
        self._sweep_dir = Path(trial_dir)

    def adopt_stderr(self, path: Path, start: int) -> None:
        """From now on the exit's stderr tail is read from `path`, after byte `start`."""
        self._stderr_path = path
        self._stderr_start = start

    async def batches(self) -> AsyncIterator[list[Message]]:
        """The messages of each read from the report pipe, as lists (cheaper at high rates)."""
        if self._reading:
            raise RuntimeError("the report pipe of a trial can be read only once")
        self._reading = True
        lines = LineBuffer(MAX_LINE)
        while True:
            data = await self._reader.read(_READ_CHUNK)
            if not data:
                batch = parse_lines(lines.finish())
                if batch:
                    yield batch
                return
            batch = parse_lines(lines.feed(data))
            if batch:
                yield batch

    async def messages(self) -> AsyncIterator[Message]:
        """Reports, checkpoint notes and WireProblems in order; ends at EOF of the report pipe."""
        async for batch in self.batches():
            for message in batch:
                yield message

    def decide(self, decision: Decision, step: int | None = None) -> None:
        """Answer a report (or send an unsolicited decision). Never blocks, never raises."""
        fd = self._control_fd
        if fd is None:
            return
        data = encode_decision(decision, step)
        try:
            # One line is far below PIPE_BUF, so the write is all or nothing.
            os.write(fd, data)
        except BlockingIOError:
            self.dropped_decisions += 1
            logger.debug("pid %d: control pipe full, dropped %s for step %s",
                         self.pid, decision, step)
        except OSError as e:  # EPIPE: the trial closed its end or exited
            self.dropped_decisions += 1
            logger.debug("pid %d: control pipe closed (%s), dropped %s for step %s",
                         self.pid, e.strerror, decision, step)

    async def stop(self, grace: float) -> None:
        """SIGTERM the whole group; SIGKILL it when anything is left after `grace` seconds."""
        if grace < 0:
            raise ValueError(f"grace must be >= 0 seconds, got {grace}")
        if self._reaper.done() and self._group_killed:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        self._stopping = True
        if not self._reaper.done():
            self._sent, self._grace = signal.SIGTERM, grace
            signal_group(self._pgid, signal.SIGTERM)
        elif group_alive(self._pgid):  # an earlier stop was cancelled after the leader exited
            signal_group(self._pgid, signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(self._reaper), grace)
            # The main process is gone; its children get the rest of the grace period.
            delay = 0.005
            while loop.time() < deadline and group_alive(self._pgid):
                await asyncio.sleep(min(delay, max(0.0, deadline - loop.time())))
                delay = min(delay * 2, _GROUP_POLL_MAX)
        except TimeoutError:
            pass
        self._kill_group()
        await asyncio.shield(self._reaper)

    async def wait(self) -> TrialExit:
        """Wait for the main process to exit and say how it ended."""
        returncode = await asyncio.shield(self._reaper)
        if self._exit is None:
            tail = stderr_tail(self._stderr_path, self._stderr_start)
            self._exit = classify_exit(returncode, tail, sent=self._sent, grace=self._grace)
        return self._exit

    async def aclose(self) -> None:
        """Kill whatever is left of the group and close the pipes. Safe to call twice."""
        try:
            self._kill_group()
            await asyncio.shield(self._reaper)
            sweep, self._sweep_dir = self._sweep_dir, None
            if sweep is not None:
                await asyncio.to_thread(kill_leftovers, sweep, why="left by its trial")
        finally:
            self._transport.close()
            if self._control_fd is not None:
                os.close(self._control_fd)
                self._control_fd = None

    async def __aenter__(self) -> LocalTrial:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


