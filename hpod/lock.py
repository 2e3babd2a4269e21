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
