"""Where trials run: a fixed set of slots shared fairly between studies.

Fair share means: when a slot frees and several studies wait, it goes to the study that holds
the fewest slots (ties: the one that has waited longest). Nothing polls: waiters are futures,
resolved by `release`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Slot:
    """One place a trial can run; `label` is what the store records as the trial's placement."""

    index: int
    label: str


@dataclass(slots=True)
class _Waiter:
    study: str
    order: int
    future: asyncio.Future[Slot]


class SlotPool:
    def __init__(self, n_slots: int, *, kind: str = "cpu") -> None:
        if n_slots < 1:
            raise ValueError(f"a slot pool needs at least one slot, got {n_slots}")
        self._free: list[Slot] = [Slot(i, f"{kind}:{i}") for i in range(n_slots)]
        self._free.reverse()  # pop() hands out cpu:0 first
        self._held: Counter[str] = Counter()
        self._waiters: list[_Waiter] = []
        self._order = itertools.count()
        self.size = n_slots

    @property
    def in_use(self) -> int:
        return self.size - len(self._free)

    def held_by(self, study: str) -> int:
        return self._held[study]

    async def acquire(self, study: str) -> Slot:
        if self._free and not self._waiters:
            return self._grant(study)
        waiter = _Waiter(study, next(self._order), asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        self._dispatch()
        try:
            return await waiter.future
        except asyncio.CancelledError:
            # NOTE: the slot may have been granted in the same tick the waiter was cancelled;
            # hand it back so it is not leaked.
            if waiter in self._waiters:
                self._waiters.remove(waiter)
            elif waiter.future.done() and not waiter.future.cancelled():
                self.release(study, waiter.future.result())
            raise

    def release(self, study: str, slot: Slot) -> None:
        self._held[study] -= 1
        if self._held[study] <= 0:
            del self._held[study]
        self._free.append(slot)
        self._dispatch()

    @asynccontextmanager
    async def slot(self, study: str) -> AsyncIterator[Slot]:
        granted = await self.acquire(study)
        try:
            yield granted
        finally:
            self.release(study, granted)

    def _grant(self, study: str) -> Slot:
        self._held[study] += 1
        return self._free.pop()

    def _dispatch(self) -> None:
        while self._free and self._waiters:
            waiter = min(self._waiters, key=lambda w: (self._held[w.study], w.order))
            self._waiters.remove(waiter)
            if waiter.future.done():  # cancelled while queued
                continue
            waiter.future.set_result(self._grant(waiter.study))
