"""The database's write-ahead log, checkpointed on a clock and watched for a reader that pins it.

Every commit is appended to `hpod.db-wal`, and copied back into the database (a checkpoint) up
to the oldest snapshot a reader still reads. hpod's own readers (the TUI, the commands) read in
short transactions, so the log cycles within a few MiB. A program that keeps a read transaction
open — a `sqlite3` shell after BEGIN, a notebook's cursor left unfinished, a database browser —
pins the log: it grows with every report for as long as that stays open (about 1 MB/s at 15
short trials a second) and nothing the daemon does can empty it. The daemon cannot close
another program's transaction; it can say so, once, in the events, while there is still disk.
"""

from __future__ import annotations

import asyncio
import logging

from hpod.store import EventLevel
from hpod.store.errors import StoreError
from hpod.store.store import Store

logger = logging.getLogger(__name__)

CHECK_EVERY = 60.0  # seconds
WARN_BYTES = 64 * 1024 * 1024  # far above the few MiB the log reaches between checkpoints


class WalWatch:
    def __init__(self, store: Store, *, every: float = CHECK_EVERY,
                 warn_bytes: int = WARN_BYTES) -> None:
        self._store = store
        self._every = every
        self._warn_bytes = warn_bytes
        self._warned = False

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self._every)
            try:
                await self.check()
            except StoreError as e:  # a full disk, a locked file: the writers report those
                logger.debug("checkpoint of the write-ahead log skipped: %s", e)

    async def check(self) -> None:
        """One PASSIVE checkpoint; an event when the log is large and a reader keeps it so, and
        another when it is emptied again."""
        log, done = await self._store.checkpoint_wal()
        pinned = done < log
        if pinned and log >= self._warn_bytes and not self._warned:
            self._warned = True
            message = (
                f"the database's write-ahead log ({self._store.path}-wal) has grown to "
                f"{log / 2**20:.0f} MiB and cannot be emptied: another program holds a read "
                "transaction open on the database (a sqlite3 shell after BEGIN, a notebook, a "
                "database browser). It grows with every report until that program ends its "
                "transaction or closes the database; hpod's own commands and TUI do not do this")
            logger.warning("%s", message)
            await self._store.record_event(EventLevel.WARNING, message)
        elif self._warned and not pinned:
            self._warned = False
            message = ("the database's write-ahead log is no longer held open: it is emptied "
                       "again, and its file cut back when the next write restarts it")
            logger.info("%s", message)
            await self._store.record_event(EventLevel.INFO, message)
