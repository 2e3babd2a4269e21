"""One daemon per database: an flock on a file beside it, released by the kernel on any exit."""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

from hpod.errors import DaemonError


class DaemonLock:
    """Held for the daemon's lifetime; a second daemon on the same database is refused.

    flock (not a pid file alone) so that a `kill -9`'d daemon never leaves a stale lock.
    """

    def __init__(self, db_path: Path) -> None:
        self.path = db_path.with_name(db_path.name + ".lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as error:
            why = "read-only" if error.errno in (errno.EROFS, errno.EACCES, errno.EPERM) else (
                "unusable")
            raise DaemonError(
                f"the state folder {self.path.parent} is {why} ({error.strerror}): a daemon "
                "needs to write its database there. Fix: make it writable, or give the daemon "
                "another database with --db PATH"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f"pid {holder}" if holder else "another process"
            raise DaemonError(
                f"another hpod daemon ({who}) is already serving {self.path.with_suffix('')}; "
                f"stop it first{f' (kill {holder})' if holder else ''}, or give this one "
                "its own database with --db PATH"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "DaemonLock":
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode().strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None


def serving_pid(db_path: Path) -> int | None:
    """The pid of the daemon serving `db_path`, None when no daemon holds its lock.

    Asked without taking the lock (a reader holding it even for a moment could make a daemon
    starting then refuse to run): from the kernel's table of locks where there is one, else
    from the pid the daemon wrote and whether that process is alive."""
    path = db_path.with_name(db_path.name + ".lock")
    try:
        st = os.stat(path)
    except OSError:
        return None
    pid = _pid_in(path)
    held = _flock_holders(st.st_dev, st.st_ino)
    if held is not None:
        return pid if pid in held else (min(held) if held else None)
    return pid if pid is not None and process_exists(pid) else None


def _pid_in(path: Path) -> int | None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        return _read_pid(fd)
    finally:
        os.close(fd)


def _flock_holders(dev: int, ino: int) -> set[int] | None:
    """Pids holding an flock on the file (dev, ino), from /proc/locks; None where that table
    cannot be read. A line reads: `1: FLOCK  ADVISORY  WRITE 4242 08:02:131 0 EOF`."""
    try:
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return None
    wanted = (os.major(dev), os.minor(dev), ino)
    holders = set()
    for line in lines:
        fields = line.split()
        if "->" in fields:  # a waiter, not a holder
            continue
        try:
            kind, pid, where = fields[1], int(fields[4]), fields[5]
            major, minor, inode = where.split(":")
            if kind == "FLOCK" and (int(major, 16), int(minor, 16), int(inode)) == wanted:
                holders.add(pid)
        except (IndexError, ValueError):
            continue
    return holders


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    return True
