"""OS-level helpers for trial processes: die-with-parent, process-group signals, exit reasons.

Synchronous and small; executor/local.py does the asyncio part.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import fcntl
import logging
import os
import signal
import sys
from pathlib import Path
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from hpod.errors import LaunchError
from hpod.executor.base import TrialExit, signal_name

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
_CAP_SYS_NICE = 23  # from <linux/capability.h>
STDERR_TAIL_LINES = 20
STDERR_TAIL_BYTES = 4096


#: Where the local executor puts a trial's pipes: one-digit numbers, because POSIX sh (dash)
#: only accepts descriptors 0-9 in redirections such as `>&"$HPOD_REPORT_FD"`.
REPORT_FD_IN_CHILD = 3
CONTROL_FD_IN_CHILD = 4


def load_prctl() -> Callable[..., int] | None:
    """libc's prctl, looked up once in the parent (Linux only; None elsewhere)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        libc = ctypes.CDLL(None, use_errno=True)
    prctl = libc.prctl
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                      ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl


@dataclass(frozen=True)
class ChildSetup:
    """The pipe numbers a child sees, the fds Popen must keep, and the preexec_fn."""

    report_fd: int
    control_fd: int
    pass_fds: tuple[int, int]
    preexec: Callable[[], None]


def child_setup(report_w: int, control_r: int, prctl: Callable[..., int] | None) -> ChildSetup:
    """Plan what happens in the child between fork and exec.

    1. PR_SET_PDEATHSIG: the child gets SIGKILL when the daemon dies, even by kill -9.
       NOTE: it fires when the *thread* that forked exits; asyncio forks from the event-loop
       thread, which lives as long as the daemon. Processes the trial forks do not inherit it
       (the kernel clears it on fork); killing the group covers them while the daemon lives.
    2. The pipe ends move to descriptors 3 and 4. Popen runs preexec_fn before it closes every
       fd not in pass_fds, so pass_fds names 3 and 4; it also marks them inheritable first,
       which needs them open in the parent: they always are under asyncio (the selector and
       its self-pipe), and when they are not the pipes keep their own numbers.
    """
    parent = os.getpid()
    move = _is_open(REPORT_FD_IN_CHILD) and _is_open(CONTROL_FD_IN_CHILD)

    def preexec() -> None:
        if prctl is not None:
            if prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
                raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
            # The daemon may have died between fork and prctl: then nobody would kill us.
            if os.getppid() != parent:
                os.kill(os.getpid(), signal.SIGKILL)
        if move:
            # Lift both above 9 first: either may itself be 3 or 4.
            report = fcntl.fcntl(report_w, fcntl.F_DUPFD, 10)
            control = fcntl.fcntl(control_r, fcntl.F_DUPFD, 10)
            os.dup2(report, REPORT_FD_IN_CHILD)  # dup2 leaves the copy inheritable
            os.dup2(control, CONTROL_FD_IN_CHILD)

    if move:
        return ChildSetup(REPORT_FD_IN_CHILD, CONTROL_FD_IN_CHILD,
                          (REPORT_FD_IN_CHILD, CONTROL_FD_IN_CHILD), preexec)
    return ChildSetup(report_w, control_r, (report_w, control_r), preexec)


def _is_open(fd: int) -> bool:
    try:
        fcntl.fcntl(fd, fcntl.F_GETFD)
    except OSError:
        return False
    return True


def settle(future: asyncio.Future[None]) -> None:
    """Resolve `future` unless it is already done: for a reader or writer callback, which may
    fire again before the awaiting task removes it."""
    if not future.done():
        future.set_result(None)


def signal_group(pgid: int, signum: int) -> bool:
    """Send `signum` to a process group; False when the group no longer exists."""
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        return False
    except PermissionError:
        # A member changed its user id (setuid helper): nothing more we are allowed to do.
        logger.warning("not allowed to send %s to process group %d", signal_name(signum), pgid)
        return False
    return True


def group_alive(pgid: int) -> bool:
    """True while a live (non-zombie) process is in the group.

    Zombies count as gone: an orphaned child is reparented to PID 1, and in containers PID 1
    often never reaps, so a killed child can stay a zombie forever.
    """
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    proc = Path("/proc")
    if not proc.is_dir():
        return True
    for entry in os.scandir(proc):
        if not entry.name.isdigit():
            continue
        state = _state_in_group(entry.name, pgid)
        if state is not None and state != "Z":
            return True
    return False


def _state_in_group(pid: str, pgid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
    fields = stat[stat.rfind(b")") + 2:].split()
    if len(fields) < 3 or int(fields[2]) != pgid:
        return None
    return fields[0].decode()


def priority_restorable() -> bool:
    """Whether we may lower a niceness again after raising it (CAP_SYS_NICE, or an
    RLIMIT_NICE that allows our own niceness): raising is always allowed, undoing it is not."""
    nice = os.getpriority(os.PRIO_PROCESS, 0)
    try:
        import resource

        soft, _hard = resource.getrlimit(resource.RLIMIT_NICE)
        if soft == resource.RLIM_INFINITY or 20 - nice <= soft:
            return True
    except (ImportError, AttributeError, OSError, ValueError):
        pass
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> _CAP_SYS_NICE & 1)
    except (OSError, ValueError):
        pass
    return False


def set_thread_nice(pid: int, nice: int) -> None:
    """Set the niceness of every thread of `pid` (Linux keeps it per thread, and new threads
    inherit their creator's). Raises PermissionError (or OSError) when not allowed."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            os.setpriority(os.PRIO_PROCESS, int(tid), nice)
        except ProcessLookupError:  # the thread has ended meanwhile
            pass


def set_autogroup_nice(pid: int, nice: int) -> bool:
    """Set the niceness of the autogroup (session) of `pid`; False when the kernel says to try
    again (it allows one change per 100 ms machine-wide). Any user may set a value >= 0 for
    its own processes. Raises OSError (FileNotFoundError: a kernel without autogroups)."""
    try:
        with open(f"/proc/{pid}/autogroup", "w") as f:
            f.write(str(nice))
    except BlockingIOError:
        return False
    return True


_CONTROL_BYTES = {c: "\ufffd" for c in range(32) if chr(c) not in "\n\r\t"} | {127: "\ufffd"}


def stderr_tail(path: Path, start: int = 0, *, lines: int = STDERR_TAIL_LINES,
                max_bytes: int = STDERR_TAIL_BYTES) -> str:
    """The last `lines` lines written to `path` after byte offset `start`, at most `max_bytes`."""
    try:
        with open(path, "rb") as f:
            end = f.seek(0, os.SEEK_END)
            if start > end:  # trimmed since the run began (hpod.log_cap): its newest output
                start = 0
            begin = max(start, end - max_bytes)
            f.seek(begin)
            data = f.read(end - begin)
    except OSError:
        return ""
    # NUL and other control bytes (a binary dump) would end the reason early in a C reader
    # of the database, or garble a terminal: shown as U+FFFD, as undecodable bytes are.
    text = data.decode("utf-8", errors="replace").translate(_CONTROL_BYTES)
    if begin > start:  # we started mid-file: drop the partial first line
        text = text.partition("\n")[2] or text
    return "\n".join(text.rstrip().splitlines()[-lines:])


def classify_exit(returncode: int, tail: str, *, sent: int | None = None,
                  grace: float | None = None) -> TrialExit:
    """Turn a Popen-style returncode (negative: killed by that signal) into a TrialExit.

    `sent` is the last signal hpod itself sent to the group, so that our own SIGKILL is not
    blamed on the kernel's OOM killer.
    """
    if returncode >= 0:
        reason = f"exit code {returncode}"
        if returncode > 128 and returncode - 128 < signal.NSIG:
            # A shell reports a child killed by signal N as 128+N.
            reason += f" (128+{returncode - 128}: a child killed by " \
                      f"{signal_name(returncode - 128)}?)"
        return TrialExit(returncode, None, tail, reason)
    signum = -returncode
    name = signal_name(signum)
    if signum == sent == signal.SIGKILL:
        reason = "killed by SIGKILL from hpod"
        if grace is not None:
            reason += f" (still running {grace:g} s after SIGTERM)"
    elif signum == sent:
        reason = f"stopped by {name} from hpod"
    elif signum == signal.SIGKILL:
        reason = "killed by SIGKILL (out of memory? see dmesg)"
    else:
        reason = f"killed by {name}"
    return TrialExit(None, signum, tail, reason)


def launch_error(error: OSError, argv: Sequence[str], cwd: Path) -> LaunchError:
    """A LaunchError that says what to fix, from the OSError the exec or chdir raised."""
    program = argv[0]
    if error.filename is not None and os.fspath(error.filename) == os.fspath(cwd):
        return LaunchError(f"cannot start trial: working directory {os.fspath(cwd)!r}: "
                           f"{error.strerror}")
    if isinstance(error, FileNotFoundError):
        where = "on PATH" if os.sep not in program else "(no such file)"
        return LaunchError(f"cannot start trial: command {program!r} not found {where}")
    if isinstance(error, PermissionError):
        return LaunchError(f"cannot start trial: {program!r} is not executable (permission "
                           "denied); chmod +x it, or name its interpreter first, "
                           f"e.g. [\"sh\", {program!r}]")
    if error.errno == errno.ENOEXEC:
        return LaunchError(f"cannot start trial: {program!r} is not a program (exec format "
                           "error); give it a #! line or name its interpreter first")
    return LaunchError(f"cannot start trial {program!r}: {error}")
