"""Descriptors 3 and 4 of the daemon, kept free for the pipes of the trial being spawned.

A trial finds its report and control pipes on descriptors 3 and 4 (process.REPORT_FD_IN_CHILD,
CONTROL_FD_IN_CHILD): POSIX sh takes only one-digit numbers in `>&"$HPOD_REPORT_FD"`. A child
started without a preexec_fn (so that CPython can use vfork, see executor/spawn.py) keeps its
descriptors' numbers, so the parent's pipe ends must be on 3 and 4 at the moment of the spawn.

`ChildFdSlots.claim()`, called at start-up before anything else opens descriptors (before
asyncio creates its loop), holds 3 and 4 on /dev/null. For each spawn `placed()` puts the
pipe ends there and, afterwards, /dev/null back. dup2 replaces a descriptor in one step, so 3
and 4 are never free in between: no other thread can be handed them by open(), pipe() or
socket(). Every copy is close-on-exec; Popen's pass_fds makes 3 and 4 inheritable in the
child only.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from hpod.executor.process import CONTROL_FD_IN_CHILD, REPORT_FD_IN_CHILD

logger = logging.getLogger(__name__)


class ChildFdSlots:
    """Descriptors 3 and 4 of this process, held for trial spawns. One event loop uses it."""

    def __init__(self, placeholder: int) -> None:
        # Use claim(): it is what makes 3 and 4 ours.
        self._placeholder = placeholder  # /dev/null, a descriptor above 4
        self._lock = asyncio.Lock()  # bound to the loop at its first contended use
        self._closed = False

    def __repr__(self) -> str:
        return f"<ChildFdSlots {REPORT_FD_IN_CHILD},{CONTROL_FD_IN_CHILD} closed={self._closed}>"

    @classmethod
    def claim(cls) -> ChildFdSlots | None:
        """Hold descriptors 3 and 4 when both are free; None when either is taken (then the
        executor moves the pipes in the child, the slower way)."""
        wanted = (REPORT_FD_IN_CHILD, CONTROL_FD_IN_CHILD)
        opened: list[int] = []
        try:
            # open() returns the lowest free number: what it gives is ours, and no other
            # thread's descriptor is ever overwritten (a dup2 onto a "free" number could be).
            for _ in range(len(wanted) + 1):
                opened.append(os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC))
        except OSError as e:
            logger.debug("cannot open %s for descriptors 3 and 4: %s", os.devnull, e)
            for fd in opened:
                os.close(fd)
            return None
        if tuple(opened[:2]) != wanted:
            for fd in opened:
                os.close(fd)
            logger.debug("descriptors 3 and 4 are taken; trials start through a preexec_fn")
            return None
        return cls(opened[2])

    @property
    def closed(self) -> bool:
        return self._closed

    @asynccontextmanager
    async def placed(self, report_w: int, control_r: int) -> AsyncIterator[tuple[int, int]]:
        """Within the block, descriptors 3 and 4 are (close-on-exec) copies of `report_w` and
        `control_r`; spawns are serialised. Yields (3, 4) for Popen's pass_fds."""
        if self._closed:
            raise RuntimeError("the descriptor slots are closed")
        async with self._lock:
            try:
                os.dup2(report_w, REPORT_FD_IN_CHILD, inheritable=False)
                os.dup2(control_r, CONTROL_FD_IN_CHILD, inheritable=False)
                yield REPORT_FD_IN_CHILD, CONTROL_FD_IN_CHILD
            finally:
                # Our copies must go: a copy of the report pipe's write end kept here would
                # keep the trial's pipe from ever reaching its end.
                os.dup2(self._placeholder, REPORT_FD_IN_CHILD, inheritable=False)
                os.dup2(self._placeholder, CONTROL_FD_IN_CHILD, inheritable=False)

    def close(self) -> None:
        """Give 3 and 4 back. Idempotent; not while a spawn is under way."""
        if self._closed:
            return
        self._closed = True
        for fd in (REPORT_FD_IN_CHILD, CONTROL_FD_IN_CHILD, self._placeholder):
            os.close(fd)
