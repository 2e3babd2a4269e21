"""ResourcePool on a fake inventory of 4 GPUs: the probe object is the one stand-in (the NVML edge).

Nothing here sleeps: a waiter is a task whose completion is awaited with a timeout, and "still
waiting" is checked after the pool has had its chance (`settle`: the placement round finished).
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from dataclasses import replace
from fractions import Fraction

import pytest

from hpod.errors import StudySpecError
from hpod.gpus import GpuInfo, GpuProbeError
from hpod.resources import Lease, PlacementError, ResourcePool
from hpod.spec import parse_study

WAIT = 60.0
GIB = 1024


class FakeProbe:
    """Four 16 GiB GPUs; tests change `used` (MiB) to play other people's jobs."""

    source = "fake"

    def __init__(self, n: int = 4, total: int = 16 * GIB) -> None:
        self.gpus = [GpuInfo(i, f"GPU-{i}", "Fake GPU", total, 0, 0) for i in range(n)]
        self.queries = 0
        self.broken = False

    def use(self, index: int, used_mb: int) -> None:
        self.gpus[index] = replace(self.gpus[index], memory_used_mb=used_mb)

    def query(self) -> list[GpuInfo]:
        self.queries += 1
        if self.broken:
            raise GpuProbeError("nvidia-smi exited with code 9")
        return list(self.gpus)

    def close(self) -> None:
        pass


def make_pool(n_gpus: int = 4, *, slots: int = 2, min_free: int = 0, probe: FakeProbe | None = None,
              reprobe: float = 5.0) -> tuple[ResourcePool, FakeProbe]:
    probe = probe or FakeProbe(n_gpus)
    pool = ResourcePool(gpus=probe.gpus, slots=slots, probe=probe, default_min_free_mb=min_free,
                        reprobe_interval=reprobe)
    return pool, probe


async def settle(pool: ResourcePool) -> None:
    """Let the placement round in flight (probe in a thread, then grants) finish."""
    for _ in range(3):
        round_ = pool._round
        if round_ is not None and not round_.done():
            await asyncio.wait_for(asyncio.shield(round_), WAIT)
        await asyncio.sleep(0)  # let granted futures wake their tasks


async def get(pool: ResourcePool, study: str, gpus: float = 0.0, **kw) -> Lease:
    return await asyncio.wait_for(pool.acquire(study, gpus, **kw), WAIT)


def waiter(pool: ResourcePool, study: str, gpus: float = 0.0, **kw) -> asyncio.Task[Lease]:
    return asyncio.create_task(pool.acquire(study, gpus, **kw))


def check_no_overbooking(pool: ResourcePool, leases: list[Lease]) -> None:
    share: Counter[int] = Counter()
    for lease in leases:
        if not lease.released:
            for index in lease.gpu_indices:
                share[index] += lease.share
    for index in pool.gpu_indices:
        assert share[index] <= 1, f"gpu:{index} booked {share[index]}"
        assert pool.gpu_load(index)[0] == share[index]


# -- placement ---------------------------------------------------------------------------------


async def test_whole_gpus_are_distinct_and_carry_their_environment() -> None:
    pool, _ = make_pool()
    leases = [await get(pool, "s", 1) for _ in range(4)]
    assert sorted(lease.label for lease in leases) == ["gpu:0", "gpu:1", "gpu:2", "gpu:3"]
    assert leases[0].env == {"CUDA_VISIBLE_DEVICES": str(leases[0].gpu_indices[0]),
                             "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    fifth = waiter(pool, "s", 1)
    await settle(pool)
    assert not fifth.done()
    leases[2].release()
    got = await asyncio.wait_for(fifth, WAIT)
    assert got.gpu_indices == leases[2].gpu_indices


async def test_several_gpus_per_trial() -> None:
    pool, _ = make_pool()
    a, b = await get(pool, "s", 2), await get(pool, "s", 2)
    assert a.label == "gpu:0,1" and b.label == "gpu:2,3"
    assert a.env["CUDA_VISIBLE_DEVICES"] == "0,1"
    assert set(a.gpu_indices).isdisjoint(b.gpu_indices)


async def test_fractions_spread_first_then_share_never_beyond_one() -> None:
    pool, _ = make_pool()
    leases = [await get(pool, "s", 0.5) for _ in range(8)]
    assert [lease.label for lease in leases[:4]] == ["gpu:0(½)", "gpu:1(½)", "gpu:2(½)",
                                                      "gpu:3(½)"]
    assert Counter(lease.gpu_indices[0] for lease in leases) == {0: 2, 1: 2, 2: 2, 3: 2}
    assert leases[0].env["TF_FORCE_GPU_ALLOW_GROWTH"] == "true"
    ninth = waiter(pool, "s", 0.5)
    await settle(pool)
    assert not ninth.done()
    check_no_overbooking(pool, leases)
    leases[5].release()
    assert (await asyncio.wait_for(ninth, WAIT)).gpu_indices == leases[5].gpu_indices


async def test_different_fractions_share_a_gpu_up_to_a_whole() -> None:
    pool, _ = make_pool(1)
    half, quarter, third = await get(pool, "a", 0.5), await get(pool, "b", 0.25), None
    assert quarter.label == "gpu:0(¼)"
    third = waiter(pool, "c", 1 / 3)
    await settle(pool)
    assert not third.done()  # 1/2 + 1/4 + 1/3 > 1
    other_quarter = await get(pool, "d", 0.25)
    assert pool.gpu_load(0) == (Fraction(1), 3)
    half.release()
    assert (await asyncio.wait_for(third, WAIT)).label == "gpu:0(⅓)"
    check_no_overbooking(pool, [quarter, other_quarter, third.result()])


async def test_no_gpu_is_ever_double_booked_under_random_traffic() -> None:
    rng = random.Random(7)
    pool, _ = make_pool(slots=3)
    held: list[Lease] = []
    pending: list[asyncio.Task[Lease]] = []
    for _ in range(300):
        if held and rng.random() < 0.45:
            held.pop(rng.randrange(len(held))).release()
        else:
            pending.append(waiter(pool, rng.choice("abc"), rng.choice([0, 0.25, 0.5, 1, 2, 3])))
        await settle(pool)
        for task in [t for t in pending if t.done()]:
            pending.remove(task)
            held.append(task.result())
        check_no_overbooking(pool, held)
        whole = [i for lease in held if lease.share == 1 for i in lease.gpu_indices]
        assert len(whole) == len(set(whole))
        assert len([lease for lease in held if lease.slot is not None]) <= 3
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    for lease in held:
        lease.release()
    assert pool.in_use == 0 and all(pool.gpu_load(i) == (0, 0) for i in pool.gpu_indices)


async def test_zero_gpus_is_a_cpu_slot_that_cannot_see_the_gpus() -> None:
    pool, _ = make_pool(slots=2)
    a, b = await get(pool, "s", 0), await get(pool, "s", 0)
    assert (a.label, b.label) == ("cpu:0", "cpu:1")
    assert a.env == {"CUDA_VISIBLE_DEVICES": ""} and a.gpu_indices == ()
    third = waiter(pool, "s", 0)
    await asyncio.sleep(0)
    assert not third.done()
    a.release()
    assert (await asyncio.wait_for(third, WAIT)).label == "cpu:0"


async def test_without_gpus_every_trial_takes_a_cpu_slot_and_the_environment_is_untouched() -> None:
    pool = ResourcePool(gpus=[], slots=1)
    lease = await get(pool, "s", 2)
    assert lease.label == "cpu:0" and lease.env == {}


async def test_least_loaded_first_then_most_free_memory() -> None:
    pool, probe = make_pool()
    probe.use(0, 4 * GIB)
    probe.use(1, 2 * GIB)
    probe.use(2, 1 * GIB)
    probe.use(3, 3 * GIB)
    first = await get(pool, "s", 0.5)
    assert first.label == "gpu:2(½)"
    second = await get(pool, "s", 0.5)
    assert second.label == "gpu:1(½)"  # gpu:2 now has a lease, so the next-freest empty GPU


# -- the memory filter ---------------------------------------------------------------------------


async def test_a_gpu_short_of_free_memory_is_skipped() -> None:
    pool, probe = make_pool(min_free=4 * GIB)
    probe.use(0, 15 * GIB)  # someone else's job
    leases = [await get(pool, "s", 1) for _ in range(3)]
    assert sorted(lease.label for lease in leases) == ["gpu:1", "gpu:2", "gpu:3"]
    blocked = waiter(pool, "s", 1)
    await settle(pool)
    assert not blocked.done()
    assert pool.waiting() == [("s", "waiting for 4.0 GiB of free GPU memory (free now: "
                                    "gpu:0 1.0 GiB)")]
    assert pool.reprobe_armed


async def test_a_gpu_missing_from_the_reading_gets_no_trial_until_it_is_back(caplog) -> None:
    # It fell off the bus: its memory unread passed the check, and trials were sent to it.
    caplog.set_level("INFO", logger="hpod.resources")
    pool, probe = make_pool(n_gpus=2, min_free=GIB, reprobe=0.05)
    gpu1 = probe.gpus.pop(1)
    lease = await get(pool, "s", 1)
    assert lease.label == "gpu:0"
    blocked = waiter(pool, "s", 1)
    await settle(pool)
    assert not blocked.done()
    assert "gpu:1 is missing from the GPU reading" in caplog.text
    probe.broken = True  # no reading at all: still missing, not "back"
    pool._serve_gpus(None)
    assert "is back in the GPU reading" not in caplog.text and not blocked.done()
    probe.broken = False
    probe.gpus.append(gpu1)  # back: the next look places the trial on it
    assert (await asyncio.wait_for(blocked, WAIT)).label == "gpu:1"
    assert "gpu:1 is back in the GPU reading" in caplog.text


async def test_a_per_study_minimum_overrides_the_daemon_default() -> None:
    pool, probe = make_pool(min_free=0)
    for i in range(4):
        probe.use(i, 12 * GIB)
    lease = await get(pool, "s", 1)  # daemon default: no minimum
    needy = waiter(pool, "t", 1, min_free_memory_mb=8 * GIB)
    await settle(pool)
    assert not needy.done()
    needy.cancel()
    lease.release()


async def test_a_waiter_blocked_on_memory_is_granted_once_memory_frees() -> None:
    pool, probe = make_pool(1, min_free=4 * GIB, reprobe=0.01)
    probe.use(0, 14 * GIB)
    task = waiter(pool, "s", 1)
    await settle(pool)
    assert not task.done() and pool.reprobe_armed
    probe.use(0, 1 * GIB)  # the other job ended: only the re-probe timer can notice
    lease = await asyncio.wait_for(task, WAIT)
    assert lease.label == "gpu:0"
    await settle(pool)
    assert not pool.reprobe_armed  # no timer while nobody waits for memory


async def test_shares_granted_together_count_against_the_free_memory_they_saw() -> None:
    pool, probe = make_pool(1, min_free=6 * GIB)
    probe.use(0, 4 * GIB)  # 12 GiB free: room for two trials needing 6 GiB, not three
    tasks = [waiter(pool, "s", 0.25) for _ in range(3)]
    await settle(pool)
    assert [t.done() for t in tasks] == [True, True, False]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_waiter_blocked_on_memory_does_not_hold_back_others() -> None:
    pool, probe = make_pool(2)
    for i in range(2):
        probe.use(i, 8 * GIB)
    big = waiter(pool, "big", 1, min_free_memory_mb=12 * GIB)
    await settle(pool)
    small = await get(pool, "small", 1, min_free_memory_mb=1 * GIB)
    assert small.label in ("gpu:0", "gpu:1") and not big.done()
    big.cancel()


async def test_unreadable_memory_holds_trials_that_need_memory_and_no_others() -> None:
    pool, probe = make_pool(1, reprobe=0.01)
    probe.broken = True
    needy = waiter(pool, "s", 0.5, min_free_memory_mb=GIB)
    await settle(pool)
    assert not needy.done()
    assert pool.waiting() == [("s", "waiting: GPU memory cannot be read right now")]
    easy = await get(pool, "t", 0.5, min_free_memory_mb=0)
    assert easy.label == "gpu:0(½)"
    probe.broken = False
    assert (await asyncio.wait_for(needy, WAIT)).label == "gpu:0(½)"


async def test_without_a_probe_the_memory_filter_is_off() -> None:
    probe = FakeProbe(2)
    pool = ResourcePool(gpus=probe.gpus, slots=1, probe=None, default_min_free_mb=4 * GIB)
    assert (await get(pool, "s", 1)).label == "gpu:0"
    assert probe.queries == 0


# -- fair share ----------------------------------------------------------------------------------


async def test_a_freed_slot_goes_to_the_study_holding_fewest() -> None:
    pool = ResourcePool(gpus=[], slots=2)
    a1, _a2 = await get(pool, "a", 0), await get(pool, "a", 0)
    a3 = waiter(pool, "a", 0)  # waits longest
    await asyncio.sleep(0)
    b1 = waiter(pool, "b", 0)
    await asyncio.sleep(0)
    a1.release()
    assert (await asyncio.wait_for(b1, WAIT)).study == "b"
    assert not a3.done() and pool.held_by("a") == 1 and pool.held_by("b") == 1
    a3.cancel()


async def test_a_freed_gpu_goes_to_the_study_holding_fewest() -> None:
    pool, _ = make_pool(2)
    a1, _a2 = await get(pool, "a", 1), await get(pool, "a", 1)
    a3 = waiter(pool, "a", 1)
    await settle(pool)
    b1 = waiter(pool, "b", 1)
    await settle(pool)
    a1.release()
    assert (await asyncio.wait_for(b1, WAIT)).gpu_indices == a1.gpu_indices
    await settle(pool)
    assert not a3.done()
    a3.cancel()


async def test_a_large_request_holds_back_the_gpus_it_can_use_but_not_the_others() -> None:
    pool, _ = make_pool(2)
    half = await get(pool, "c", 0.5)  # on gpu:0
    whole = await get(pool, "c", 1)  # on gpu:1
    big = waiter(pool, "a", 2)
    await settle(pool)
    whole.release()  # gpu:1 is free, but `big` still needs gpu:0 too
    await settle(pool)
    small = waiter(pool, "b", 0.5)
    await settle(pool)
    assert small.done() and small.result().label == "gpu:0(½)"  # a half `big` cannot use anyway
    blocked = waiter(pool, "b", 1)  # gpu:1 is held back for `big`
    await settle(pool)
    assert not blocked.done() and not big.done()
    half.release()
    small.result().release()
    assert (await asyncio.wait_for(big, WAIT)).label == "gpu:0,1"
    blocked.cancel()


class Clock:
    """The pool's clock, moved by hand: when a study was served is what the test says."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def serve(pool: ResourcePool, clock: Clock, study: str, then: float = 10) -> None:
    """`study` is granted a lease and gives it back; the clock then moves on `then` seconds."""
    (await get(pool, study)).release()
    clock.now += then


async def in_line(pool: ResourcePool, *studies: str) -> list[asyncio.Task[Lease]]:
    """A waiting request of each study, made in this order."""
    tasks = []
    for study in studies:
        tasks.append(waiter(pool, study))
        await asyncio.sleep(0)
    return tasks


async def test_between_studies_holding_as_many_the_least_recently_served_goes_first() -> None:
    clock = Clock()
    pool = ResourcePool(gpus=[], slots=1, clock=clock)
    await serve(pool, clock, "a")
    await serve(pool, clock, "b")
    busy = await get(pool, "c")
    b, a, never = await in_line(pool, "b", "a", "never")  # b waits longest
    assert [study for study, _ in pool.waiting()] == ["never", "a", "b"]
    busy.release()
    assert (await asyncio.wait_for(never, WAIT)).study == "never"
    assert not (a.done() or b.done())
    clock.now += 10
    never.result().release()  # `never` now served last: a rotation, not a queue by name
    assert (await asyncio.wait_for(a, WAIT)).study == "a"
    assert not b.done()
    b.cancel()


async def test_fewer_leases_held_still_goes_before_served_longer_ago() -> None:
    clock = Clock()
    pool = ResourcePool(gpus=[], slots=2, clock=clock)
    await get(pool, "b")  # at 1000, held to the end
    clock.now += 100
    await serve(pool, clock, "a")  # at 1100
    busy = await get(pool, "c")
    b2, a = await in_line(pool, "b", "a")
    busy.release()
    assert (await asyncio.wait_for(a, WAIT)).study == "a"
    assert not b2.done()
    b2.cancel()


async def test_service_before_a_restart_counts_on_the_pool_s_own_clock() -> None:
    clock = Clock()
    pool = ResourcePool(gpus=[], slots=1, clock=clock)
    await serve(pool, clock, "in-run", then=500)  # at 1000 on the pool's clock; now 1500
    pool.served_before("recent", 60)  # at 1440: after in-run
    pool.served_before("long-ago", 36000)
    pool.served_before("skewed", -30)  # the store's clock ahead of this one: as if just now
    busy = await get(pool, "x")
    tasks = await in_line(pool, "skewed", "recent", "in-run", "long-ago")
    assert [study for study, _ in pool.waiting()] == ["long-ago", "in-run", "recent", "skewed"]
    busy.release()
    assert (await asyncio.wait_for(tasks[-1], WAIT)).study == "long-ago"
    for task in tasks[:-1]:
        assert not task.done()
        task.cancel()


async def test_requests_made_while_held_are_served_in_the_fair_order_at_open() -> None:
    # A daemon's start: the first to ask is not the first served.
    pool = ResourcePool(gpus=[], slots=1)
    pool.served_before("a", 60)
    pool.served_before("b", 36000)
    pool.hold()
    queued = asyncio.Event()
    a = waiter(pool, "a", queued=queued)
    await asyncio.wait_for(queued.wait(), WAIT)  # in line, not granted
    b, c = await in_line(pool, "b", "c")  # c never ran
    assert not (a.done() or b.done() or c.done())
    assert pool.waiting() == [(study, "waiting for the other studies to start")
                              for study in ("c", "b", "a")]
    pool.open()
    assert (await asyncio.wait_for(c, WAIT)).study == "c"
    assert pool.waiting() == [("b", "all CPU slots are in use"),
                              ("a", "all CPU slots are in use")]
    c.result().release()
    assert (await asyncio.wait_for(b, WAIT)).study == "b"
    assert not a.done()
    a.cancel()


# -- leases always come back ------------------------------------------------------------------


async def test_a_lease_is_released_when_its_block_raises() -> None:
    pool, _ = make_pool(1)
    with pytest.raises(RuntimeError):
        async with pool.lease("s", 1) as lease:
            assert pool.in_use == 1
            raise RuntimeError("the trial crashed")
    assert lease.released and pool.in_use == 0 and pool.gpu_load(0) == (0, 0)


async def test_a_lease_is_released_when_its_task_is_cancelled() -> None:
    pool, _ = make_pool(1)
    inside = asyncio.Event()

    async def trial() -> None:
        async with pool.lease("s", 0.5, memory_limit_mb=2048) as lease:
            assert lease.env["HPOD_GPU_MEMORY_LIMIT_MB"] == "2048"
            inside.set()
            await asyncio.Event().wait()  # runs until stopped

    task = asyncio.create_task(trial())
    await asyncio.wait_for(inside.wait(), WAIT)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert pool.in_use == 0 and pool.gpu_load(0) == (0, 0)


async def test_release_twice_gives_back_once() -> None:
    pool, _ = make_pool(1)
    a = await get(pool, "s", 0.5)
    b = await get(pool, "s", 0.5)
    a.release()
    a.release()
    pool.release(a)
    assert pool.gpu_load(0) == (Fraction(1, 2), 1) and pool.held_by("s") == 1
    b.release()


async def test_a_cancelled_waiter_takes_nothing_and_blocks_nobody() -> None:
    pool, _ = make_pool(1)
    held = await get(pool, "s", 1)
    gone = waiter(pool, "s", 1)
    await settle(pool)
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    held.release()
    assert (await get(pool, "t", 1)).label == "gpu:0"
    assert pool.held_by("s") == 0


async def test_a_grant_cancelled_in_the_same_tick_is_handed_back() -> None:
    pool = ResourcePool(gpus=[], slots=1)
    held = await get(pool, "s", 0)
    racing = waiter(pool, "s", 0)
    await asyncio.sleep(0)
    held.release()  # resolves racing's future...
    racing.cancel()  # ...and cancels it before it runs
    with pytest.raises(asyncio.CancelledError):
        await racing
    assert pool.in_use == 0
    assert (await get(pool, "t", 0)).label == "cpu:0"


async def test_closing_the_pool_stops_the_reprobe_timer() -> None:
    pool, probe = make_pool(1, min_free=GIB)
    probe.use(0, 16 * GIB)
    task = waiter(pool, "s", 1)
    await settle(pool)
    assert pool.reprobe_armed
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await pool.aclose()
    assert not pool.reprobe_armed


# -- requests that can never be granted fail at once ------------------------------------------


async def test_with_gpus_found_but_none_used_a_cpu_trial_still_sees_none() -> None:
    # `hpod serve --gpus none` on a GPU machine: its CPU trials saw every GPU.
    pool = ResourcePool(gpus=[], slots=1, hide_gpus=True)
    assert (await get(pool, "s")).env == {"CUDA_VISIBLE_DEVICES": ""}
    assert (await get(ResourcePool(gpus=[], slots=1), "s")).env == {}  # no GPU at all


async def test_more_gpus_than_the_daemon_has_is_an_error_naming_study_and_fix() -> None:
    pool, _ = make_pool(1)
    with pytest.raises(PlacementError) as caught:
        await pool.acquire("mnist", 2)
    error = caught.value
    assert error.field == "resources.gpus_per_trial"
    assert "study 'mnist' asks for 2 GPUs per trial, but hpod uses 1 (gpu:0)" in str(error)
    assert "gpus_per_trial to at most 1" in error.fix


async def test_more_free_memory_than_any_gpu_holds_is_an_error() -> None:
    pool, _ = make_pool(2)
    with pytest.raises(PlacementError, match="needs 20.0 GiB free on 1 GPU") as caught:
        await pool.acquire("big", 0.5, 20 * GIB)
    assert caught.value.field == "resources.min_free_memory"  # the field to change
    assert pool.in_use == 0 and pool.waiting() == []


@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf"), 1.5, 0.3])
async def test_invalid_requests_are_refused(bad) -> None:
    pool, _ = make_pool(2)
    with pytest.raises(ValueError):
        await pool.acquire("s", bad)


# -- the study file's [resources] ------------------------------------------------------------


def study_resources(tmp_path, **resources):
    data = {"command": ["python", "train.py"], "objective": {"metric": "loss", "direction": "min"},
            "budget": {"trials": 5}, "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
            "resources": resources}
    return parse_study(data, path=tmp_path / "s.toml").resources


def test_memory_keys_in_the_study_file(tmp_path) -> None:
    got = study_resources(tmp_path, gpus_per_trial=0.5, min_free_memory="4GiB",
                          gpu_memory_limit=3000)
    assert (got.gpus_per_trial, got.min_free_memory_mb, got.gpu_memory_limit_mb) == (
        0.5, 4096, 3000)
    default = study_resources(tmp_path)
    assert (default.min_free_memory_mb, default.gpu_memory_limit_mb) == (None, None)


@pytest.mark.parametrize(("key", "value", "message"), [
    ("min_free_memory", "4 parsecs", "string '4 parsecs' is not a memory size"),
    ("min_free_memory", -5, "out of range"),
    ("gpu_memory_limit", "0GiB", "must be more than 0"),
    ("gpu_memory_limt", "1GiB", "Did you mean 'gpu_memory_limit'"),
])
def test_bad_memory_keys_name_the_field(tmp_path, key, value, message) -> None:
    with pytest.raises(StudySpecError, match=message) as caught:
        study_resources(tmp_path, **{key: value})
    assert caught.value.field == f"resources.{key}"
