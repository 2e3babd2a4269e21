"""Where trials run: GPU leases and CPU slots, shared fairly between studies.

A study asks for `gpus_per_trial`:
- 0, or any value on a machine where hpod uses no GPU: a CPU slot (`--slots N` of them);
- a whole number N: N distinct GPUs, each held whole;
- a fraction 1/k: a k-th of one GPU, so k trials share it (trials with different fractions may
  share a GPU as long as the shares add up to at most 1).

Placement: least loaded first (smallest share in use, then fewest leases, then most free
memory, then lowest index). A GPU with less free memory than the study's `min_free_memory`,
read when the lease is made, is skipped: other people's jobs are left alone.

Fair share: when resources free, the waiter of the study holding the fewest leases goes first;
ties go to the study served least recently (granted its last lease longest ago; never served
first), its trials before a restart included (`served_before`, from the store), then to the one
waiting longest. Between equals this is a rotation. It is not usage (resource-seconds) on
purpose: the store keeps only the start of a trial's latest run, which is exactly when its study
was last served, while the seconds a trial ran cannot be read back (a paused trial's time till
it is retired, a daemon's downtime, a resumed trial's earlier runs would all be miscounted by
hours); and usage, never forgotten, would make a study with a long history wait until the others
caught up, days later, where a rotation serves each in turn. A daemon's start holds the pool
(`hold`) until each study has asked, so the first requests too are served in that order, not as
they come. A waiter that cannot fit yet holds back the GPUs it could use, so smaller requests
behind it do not starve it; a waiter blocked only by memory (someone else's job) holds nothing
back. Waiting is on futures resolved by `release`; the only timer is a re-probe every
`reprobe_interval` seconds, armed only while someone waits for memory to free.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from fractions import Fraction

from hpod.errors import StudySpecError
from hpod.gpus import GpuInfo, GpuProbe, GpuProbeError, format_memory

logger = logging.getLogger(__name__)

DEFAULT_MIN_FREE_MB = 1024  # a desktop session fits under it; another job's training does not
DEFAULT_REPROBE_INTERVAL = 5.0
_GLYPHS = {2: "½", 3: "⅓", 4: "¼", 5: "⅕", 6: "⅙", 8: "⅛"}
_HELD = "waiting for the other studies to start"  # a waiter's `why` while the pool is held


class PlacementError(StudySpecError):
    """A study asks for something this daemon can never give (names the study and the fix)."""


@dataclass(eq=False, slots=True)
class Lease:
    """Where one trial runs. `env` goes into the trial's environment; `label` into the store."""

    study: str
    label: str
    gpu_indices: tuple[int, ...]
    share: Fraction  # of each GPU in gpu_indices; 0 for a CPU slot
    env: dict[str, str]
    slot: int | None = None
    _pool: ResourcePool | None = field(default=None, repr=False)

    @property
    def released(self) -> bool:
        return self._pool is None

    def release(self) -> None:
        """Give the resources back; a second call does nothing."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool._give_back(self)


@dataclass(frozen=True, slots=True)
class _Request:
    gpus: int  # 0: a CPU slot
    share: Fraction  # of each GPU
    min_free_mb: int
    memory_limit_mb: int | None


@dataclass(slots=True)
class _Waiter:
    study: str
    order: int
    request: _Request
    future: asyncio.Future[Lease]
    why: str = ""  # what it waits for, in words
    on_memory: bool = False  # for free GPU memory (someone else's job), not for hpod's own


@dataclass(slots=True)
class _Gpu:
    info: GpuInfo
    used: Fraction = Fraction(0)
    leases: int = 0


class ResourcePool:
    def __init__(self, *, gpus: Sequence[GpuInfo] = (), slots: int = 1,
                 probe: GpuProbe | None = None, default_min_free_mb: int = DEFAULT_MIN_FREE_MB,
                 reprobe_interval: float = DEFAULT_REPROBE_INTERVAL,
                 hide_gpus: bool = False, clock: Callable[[], float] = time.monotonic) -> None:
        """`hide_gpus`: CPU trials see no GPU even when hpod uses none (`--gpus none` on a
        machine that has some: TensorFlow would otherwise take them all). `clock` says when a
        study was served (seconds)."""
        if slots < 1:
            raise ValueError(f"a resource pool needs at least one CPU slot, got {slots}")
        if not reprobe_interval > 0:
            raise ValueError(f"reprobe_interval must be > 0 seconds, got {reprobe_interval}")
        self._gpus = {g.index: _Gpu(g) for g in gpus}
        self._hide_gpus = hide_gpus or bool(gpus)
        self._free_slots = list(range(slots - 1, -1, -1))  # pop() hands out cpu:0 first
        self.slots = slots
        self._probe = probe
        self._default_min_free = default_min_free_mb
        self._reprobe_interval = reprobe_interval
        self._clock = clock
        self._holding = False  # grants wait for `open` (hold)
        self._held: Counter[str] = Counter()
        self._served: dict[str, float] = {}  # study -> its last grant, on `clock`
        self._waiters: list[_Waiter] = []
        self._order = itertools.count()
        self._round: asyncio.Task[None] | None = None
        self._again = False
        self._timer: asyncio.TimerHandle | None = None
        self._probe_failing = False
        self._missing: set[int] = set()  # GPUs the last reading did not list
        self._cpu_fallback_noted: set[str] = set()

    # -- what the daemon and the status display read -----------------------------------------

    @property
    def gpu_indices(self) -> list[int]:
        return list(self._gpus)

    @property
    def in_use(self) -> int:
        return sum(self._held.values())

    def held_by(self, study: str) -> int:
        return self._held[study]

    def gpu_load(self, index: int) -> tuple[Fraction, int]:
        """(share in use, number of leases) of one GPU."""
        gpu = self._gpus[index]
        return gpu.used, gpu.leases

    @property
    def reprobe_armed(self) -> bool:
        """True while a request waits for GPU memory and a re-probe is scheduled."""
        return self._timer is not None

    def waiting(self) -> list[tuple[str, str]]:
        """(study, why) for each request not yet granted, first in line first."""
        return [(w.study, w.why) for w in sorted(self._waiters, key=self._fair_key)]

    def waiting_for_memory(self, study: str) -> str | None:
        """Why `study`'s request waits, when it waits for free GPU memory; else None."""
        return next((w.why for w in self._waiters if w.study == study and w.on_memory), None)

    # -- leases ----------------------------------------------------------------------------

    @asynccontextmanager
    async def lease(self, study: str, gpus_per_trial: float = 0.0,
                    min_free_memory_mb: int | None = None, *,
                    memory_limit_mb: int | None = None) -> AsyncIterator[Lease]:
        granted = await self.acquire(study, gpus_per_trial, min_free_memory_mb,
                                     memory_limit_mb=memory_limit_mb)
        try:
            yield granted
        finally:
            granted.release()

    async def acquire(self, study: str, gpus_per_trial: float = 0.0,
                      min_free_memory_mb: int | None = None, *,
                      memory_limit_mb: int | None = None,
                      queued: asyncio.Event | None = None) -> Lease:
        """Wait for a lease. Raises PlacementError at once when it can never be granted.
        `queued` is set once the request is in line (granted or not)."""
        request = self._request(study, gpus_per_trial, min_free_memory_mb, memory_limit_mb)
        waiter = _Waiter(study, next(self._order), request,
                         asyncio.get_running_loop().create_future())
        self._waiters.append(waiter)
        self._kick()
        if queued is not None:
            queued.set()
        try:
            return await waiter.future
        except asyncio.CancelledError:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
                self._kick()  # it may have held GPUs back from the waiters behind it
            elif waiter.future.done() and not waiter.future.cancelled():
                # Granted in the same tick it was cancelled: hand it back, never leak it.
                waiter.future.result().release()
            raise

    def release(self, lease: Lease) -> None:
        lease.release()

    def hold(self) -> None:
        """Grant nothing until `open`: requests made meanwhile are then served together, in
        the fair order, instead of each as it comes."""
        self._holding = True

    def open(self) -> None:
        self._holding = False
        for waiter in self._waiters:
            waiter.why = ""  # till a round says what it waits for now
        self._kick()

    def served_before(self, study: str, seconds_ago: float) -> None:
        """`study` was last served `seconds_ago` by another pool (before a restart). A negative
        age (the wall clock set back since) counts as now: served, and last in line."""
        self._served[study] = self._clock() - max(seconds_ago, 0.0)

    async def aclose(self) -> None:
        """Stop the re-probe timer and any round in flight (daemon shutdown)."""
        self._cancel_timer()
        if self._round is not None and not self._round.done():
            self._round.cancel()
            try:
                await self._round
            except asyncio.CancelledError:
                pass

    def _request(self, study: str, gpus_per_trial: float, min_free: int | None,
                 memory_limit: int | None) -> _Request:
        if not (math.isfinite(gpus_per_trial) and gpus_per_trial >= 0):
            raise ValueError(f"gpus_per_trial must be a number >= 0, got {gpus_per_trial!r}")
        min_free = self._default_min_free if min_free is None else min_free
        if gpus_per_trial == 0 or not self._gpus:
            if gpus_per_trial and study not in self._cpu_fallback_noted:
                self._cpu_fallback_noted.add(study)
                logger.info("study %s asks for %g GPU(s) per trial, but hpod uses no GPU: its "
                            "trials run on CPU slots", study, gpus_per_trial)
            return _Request(0, Fraction(0), 0, None)
        if gpus_per_trial < 1:
            share = Fraction(1, round(1 / gpus_per_trial))
            if abs(float(share) - gpus_per_trial) > 1e-6:
                raise ValueError(f"a fraction of a GPU must divide 1, got {gpus_per_trial:g}")
            count = 1
        elif float(gpus_per_trial).is_integer():
            share, count = Fraction(1), int(gpus_per_trial)
        else:
            raise ValueError(f"gpus_per_trial above 1 must be whole, got {gpus_per_trial:g}")
        big_enough = [g for g in self._gpus.values()
                      if g.info.memory_total_mb is None or g.info.memory_total_mb >= min_free]
        if count > len(self._gpus):
            self._impossible(study, f"asks for {count} GPUs per trial, but hpod uses "
                             f"{len(self._gpus)} ({self._names()})",
                             f"set [resources] gpus_per_trial to at most {len(self._gpus)}, or "
                             "give hpod more GPUs (hpod serve --gpus all; see `hpod gpus`)")
        if count > len(big_enough):
            self._impossible(study, f"needs {format_memory(min_free)} free on {count} GPU(s), "
                             f"but only {len(big_enough)} of hpod's GPUs ({self._names()}) "
                             "have that much memory at all",
                             "lower [resources] min_free_memory (or hpod serve "
                             "--min-free-memory)", field="resources.min_free_memory")
        return _Request(count, share, min_free, memory_limit)

    def _names(self) -> str:
        return ", ".join(f"gpu:{i}" for i in self._gpus) or "none"

    def _impossible(self, study: str, what: str, fix: str,
                    field: str = "resources.gpus_per_trial") -> None:
        raise PlacementError(f"study {study!r} {what}", field=field, fix=fix)

    def _give_back(self, lease: Lease) -> None:
        self._held[lease.study] -= 1
        if self._held[lease.study] <= 0:
            del self._held[lease.study]
        if lease.slot is not None:
            self._free_slots.append(lease.slot)
        for index in lease.gpu_indices:
            gpu = self._gpus[index]
            gpu.used -= lease.share
            gpu.leases -= 1
        self._kick()

    # -- granting ----------------------------------------------------------------------------

    def _fair_key(self, waiter: _Waiter) -> tuple[int, float, int]:
        # When a study was served only breaks ties: `held` keeps a study with `parallel = 8`
        # from starving one with `parallel = 1`; between equals, as at a start, where every
        # study holds nothing, arrival order would favour the file names read first, night
        # after night.
        return (self._held[waiter.study], self._served.get(waiter.study, -math.inf),
                waiter.order)

    def _kick(self) -> None:
        """Serve what can be served now: CPU slots at once, GPUs after a fresh memory reading."""
        if self._holding:
            for waiter in self._waiters:
                waiter.why = _HELD
            return
        self._serve_cpu()
        if not any(w.request.gpus for w in self._waiters):
            self._cancel_timer()
            return
        if self._probe is None:
            self._serve_gpus(None)
        elif self._round is not None and not self._round.done():
            self._again = True  # the round in flight goes once more with a new reading
        else:
            self._round = asyncio.get_running_loop().create_task(self._probe_round(),
                                                                 name="hpod-gpu-placement")

    async def _probe_round(self) -> None:
        while True:
            self._again = False
            probe = self._probe
            if probe is None:  # rounds start only with a probe; this is for the type checker
                return
            try:
                readings: Mapping[int, GpuInfo] | None = {
                    g.index: g for g in await asyncio.to_thread(probe.query)}
                if self._probe_failing:
                    logger.info("GPU memory can be read again")
                self._probe_failing = False
            except Exception as e:  # GpuProbeError, or a driver library's own surprise
                if not self._probe_failing:
                    logger.warning("cannot read GPU memory (%s): trials that need free GPU "
                                   "memory wait until it can be read", e,
                                   exc_info=not isinstance(e, GpuProbeError))
                self._probe_failing = True
                readings = None
            self._serve_gpus(readings)
            if not self._again:
                return

    def _serve_cpu(self) -> None:
        waiting = [w for w in self._waiters if not w.request.gpus]
        while waiting and self._free_slots:
            waiter = min(waiting, key=self._fair_key)
            waiting.remove(waiter)
            self._waiters.remove(waiter)
            if not waiter.future.done():  # not cancelled while queued
                slot = self._free_slots.pop()
                waiter.future.set_result(self._grant(waiter, f"cpu:{slot}", (), slot))
        for waiter in waiting:
            waiter.why = "all CPU slots are in use"

    def _serve_gpus(self, readings: Mapping[int, GpuInfo] | None) -> None:
        """`readings`: fresh per-GPU facts, or None when there is no probe or it failed."""
        free = {i: readings[i].memory_free_mb if readings and i in readings else None
                for i in self._gpus}
        # A GPU the driver no longer lists (fallen off the bus) must get no trial; its memory
        # unread once meant "no objection".
        # Without a reading (the probe failed) what was missing stays missing.
        missing = self._missing if readings is None else set(self._gpus) - set(readings)
        self._note_missing(missing)
        held_back: set[int] = set(missing)
        blocked_on_memory = False
        waiting = [w for w in self._waiters if w.request.gpus]
        while waiting:
            waiter = min(waiting, key=self._fair_key)
            waiting.remove(waiter)
            if waiter.future.done():  # cancelled while queued
                self._waiters.remove(waiter)
                continue
            req = waiter.request
            room = [g for i, g in self._gpus.items()
                    if i not in held_back and g.used + req.share <= 1]
            unread = readings is None and self._probe is not None and req.min_free_mb > 0
            fits = [] if unread else [
                g for g in room
                if req.min_free_mb <= 0 or free[g.info.index] is None
                or free[g.info.index] >= req.min_free_mb]  # type: ignore[operator]
            if len(fits) >= req.gpus:
                fits.sort(key=lambda g: (g.used, g.leases, -(free[g.info.index] or 0),
                                         g.info.index))
                chosen = fits[:req.gpus]
                for g in chosen:
                    if free[g.info.index] is not None:
                        # Not yet visible in the reading: keep it from the next grant this round.
                        free[g.info.index] -= req.min_free_mb  # type: ignore[operator]
                self._waiters.remove(waiter)
                waiter.future.set_result(self._grant_gpus(waiter, chosen))
            elif len(room) >= req.gpus:
                blocked_on_memory = waiter.on_memory = True
                waiter.why = self._memory_reason(req, room, free, unread)
            else:
                held_back.update(g.info.index for g in room)
                waiter.why = "waiting for GPUs held by other trials"
        if (blocked_on_memory or missing) and self._probe is not None:
            self._arm_timer()  # look again: memory may free up, a lost GPU come back
        else:
            self._cancel_timer()

    def _note_missing(self, missing: set[int]) -> None:
        for index in sorted(missing - self._missing):
            logger.warning("gpu:%d is missing from the GPU reading (fallen off the bus, or its "
                           "driver lost it): no trial is placed on it until it is back", index)
        for index in sorted(self._missing - missing):
            logger.info("gpu:%d is back in the GPU reading", index)
        self._missing = missing

    def _memory_reason(self, req: _Request, room: list[_Gpu], free: Mapping[int, int | None],
                       unread: bool) -> str:
        if unread:
            return "waiting: GPU memory cannot be read right now"
        seen = ", ".join(f"gpu:{g.info.index} {format_memory(free[g.info.index])}" for g in room)
        return (f"waiting for {format_memory(req.min_free_mb)} of free GPU memory "
                f"(free now: {seen})")

    def _grant(self, waiter: _Waiter, label: str, indices: tuple[int, ...], slot: int | None,
               share: Fraction = Fraction(0), env: dict[str, str] | None = None) -> Lease:
        self._held[waiter.study] += 1
        self._served[waiter.study] = self._clock()
        if env is None:
            # A CPU-only trial must not touch the GPUs hpod hands out to others.
            env = {"CUDA_VISIBLE_DEVICES": ""} if self._hide_gpus else {}
        return Lease(waiter.study, label, indices, share, env, slot, self)

    def _grant_gpus(self, waiter: _Waiter, chosen: list[_Gpu]) -> Lease:
        req = waiter.request
        indices = tuple(g.info.index for g in chosen)
        for g in chosen:
            g.used += req.share
            g.leases += 1
        env = {"CUDA_VISIBLE_DEVICES": ",".join(map(str, indices)),
               # CUDA's default order is fastest first; NVML's indices follow the PCI bus.
               "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
        if req.share < 1:
            # Shared GPU: TensorFlow would otherwise reserve nearly all memory of the card.
            env["TF_FORCE_GPU_ALLOW_GROWTH"] = "true"
        if req.memory_limit_mb:
            env["HPOD_GPU_MEMORY_LIMIT_MB"] = str(req.memory_limit_mb)
        return self._grant(waiter, _label(indices, req.share), indices, None, req.share, env)

    def _arm_timer(self) -> None:
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self._reprobe_interval,
                                                                self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._kick()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def _label(indices: tuple[int, ...], share: Fraction) -> str:
    label = "gpu:" + ",".join(map(str, indices))
    if share < 1:
        label += f"({_GLYPHS.get(share.denominator, f'1/{share.denominator}')})"
    return label
