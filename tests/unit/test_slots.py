"""SlotPool: slots handed out fairly between studies, never leaked."""

from __future__ import annotations

import asyncio

import pytest

from hpod.slots import SlotPool


async def test_free_slots_are_granted_at_once_in_order() -> None:
    pool = SlotPool(2)
    first = await pool.acquire("a")
    second = await pool.acquire("a")
    assert (first.label, second.label) == ("cpu:0", "cpu:1")
    assert pool.in_use == 2 and pool.held_by("a") == 2


async def test_a_freed_slot_goes_to_the_study_holding_fewest() -> None:
    pool = SlotPool(2)
    a1 = await pool.acquire("a")
    await pool.acquire("a")
    # "a" queues first, then "b": fairness must still pick "b", which holds nothing.
    wait_a = asyncio.ensure_future(pool.acquire("a"))
    wait_b = asyncio.ensure_future(pool.acquire("b"))
    await asyncio.sleep(0)
    pool.release("a", a1)
    granted = await asyncio.wait_for(wait_b, 5)
    assert granted.label == "cpu:0"
    assert not wait_a.done()
    wait_a.cancel()
    with pytest.raises(asyncio.CancelledError):
        await wait_a
    assert pool.held_by("a") == 1 and pool.held_by("b") == 1


async def test_ties_go_to_the_longest_waiting() -> None:
    pool = SlotPool(1)
    slot = await pool.acquire("x")
    waiters = [asyncio.ensure_future(pool.acquire(name)) for name in ("b", "c")]
    await asyncio.sleep(0)
    pool.release("x", slot)
    assert (await asyncio.wait_for(waiters[0], 5)).label == "cpu:0"
    assert not waiters[1].done()
    waiters[1].cancel()


async def test_a_cancelled_waiter_does_not_leak_its_slot() -> None:
    pool = SlotPool(1)
    slot = await pool.acquire("a")
    waiter = asyncio.ensure_future(pool.acquire("b"))
    await asyncio.sleep(0)
    pool.release("a", slot)  # granted to "b" in this tick...
    waiter.cancel()  # ...and cancelled before "b" saw it
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert pool.in_use == 0
    assert (await pool.acquire("c")).label == "cpu:0"


async def test_slot_context_manager_releases_on_error() -> None:
    pool = SlotPool(1)
    with pytest.raises(RuntimeError):
        async with pool.slot("a"):
            raise RuntimeError("trial set-up failed")
    assert pool.in_use == 0


def test_a_pool_needs_a_slot() -> None:
    with pytest.raises(ValueError, match="at least one"):
        SlotPool(0)
