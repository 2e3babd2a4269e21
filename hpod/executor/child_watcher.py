"""How asyncio learns that a trial exited: a pidfd on the event loop, not a thread per child.

Python 3.11's default ThreadedChildWatcher starts one thread per subprocess, blocked in
waitpid(); with hundreds of short trials that is a thread start and a wake-up through the
loop's self-pipe each time. PidfdChildWatcher (Linux 5.3+) puts a pidfd of each child on the
event loop instead. Python 3.12 made that the default and deprecated the watcher API, so this
does nothing there.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

logger = logging.getLogger(__name__)


@asynccontextmanager
async def pidfd_child_watcher() -> AsyncIterator[bool]:
    """Within the block, asyncio waits for this loop's subprocesses with pidfds (Python 3.11
    on Linux 5.3+; yields True then). The watcher is process-wide: use this around the one
    loop of a process (`hpod serve`), not where several loops run (tests)."""
    if not _wanted():
        yield False
        return
    policy = asyncio.get_event_loop_policy()
    watcher = asyncio.PidfdChildWatcher()
    watcher.attach_loop(asyncio.get_running_loop())
    policy.set_child_watcher(watcher)
    try:
        yield True
    finally:
        # None: the policy builds its default watcher again when one is next asked for.
        policy.set_child_watcher(None)  # type: ignore[arg-type]  # typeshed omits None


def _wanted() -> bool:
    if sys.version_info >= (3, 12) or not hasattr(os, "pidfd_open"):
        return False
    if not isinstance(asyncio.get_event_loop_policy(), asyncio.DefaultEventLoopPolicy):
        return False  # another loop implementation (uvloop) watches children its own way
    try:
        os.close(os.pidfd_open(os.getpid()))
    except OSError as e:  # a kernel older than 5.3, or a seccomp filter that refuses it
        logger.debug("pidfd_open is refused (%s): asyncio keeps a thread per trial", e)
        return False
    return True
