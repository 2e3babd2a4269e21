"""The daemon's record of its GPUs: utilisation over time, and each trial's peak GPU memory.

A GpuMonitor (gpu_monitor.py) samples the GPUs trials may use, NVML only; each round goes to
the store in one transaction. A trial's GPU memory is what NVML lists for the processes of its
process group, summed over the GPUs. Executors start every trial as its own process group with
the leader's pid as the group id (warm starts too: the spare that takes a trial is one), so
noting `launch`'s pid is all it takes to know a trial's group: the runner and the controller
need not know GPUs exist.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from hpod.executor.base import Executor, RunningTrial
from hpod.gpu_monitor import GpuMonitor, memory_of_group
from hpod.gpus import GpuInfo, GpuInventory, GpuProbe
from hpod.store.errors import StoreError
from hpod.store.records import GpuSample
from hpod.store.store import Store

logger = logging.getLogger(__name__)

# Samples older than this are deleted. A week covers the longest run a workstation is left
# alone with (a long weekend) and the look back on Monday; at the 10 s default and 4 GPUs it is
# about 240 000 rows (~11 MB, and reading the newest round stays ~1 ms), a bound the file
# reaches and keeps. Downsampling old rows instead would keep a longer history, but nobody
# reads last month's utilisation second by second, and deleting by the time index is cheap.
RETENTION_S = 7 * 24 * 3600.0
PRUNE_INTERVAL_S = 3600.0  # an hour's samples go at once: one small delete, not one per round
# While no trial runs, rounds are written together, every this many (a minute at the 10 s
# default): each write is a synced commit, and a daemon idle all week made 8 640 a day. The
# rounds are all kept; only the GPU panels' look at an idle machine lags by up to a minute.
IDLE_ROUNDS_PER_WRITE = 6


class GpuUsage:
    """`track` the daemon's executor, then `await run()` in the daemon's TaskGroup."""

    def __init__(self, store: Store, probe: GpuProbe, *, indices: Collection[int] | None = None,
                 interval: float = 10.0, retention: float = RETENTION_S,
                 clock: Callable[[], float] = time.time) -> None:
        if not retention > 0:
            raise ValueError(f"the retention must be > 0 seconds, got {retention}")
        self._store = store
        self._retention = retention
        self._clock = clock
        self._monitor = GpuMonitor(probe, self._collect, interval=interval, indices=indices)
        self._groups: dict[int, int] = {}  # trial id -> process group, while the group lives
        self._samples: list[GpuSample] = []
        self._peaks: dict[int, float] = {}  # trial id -> MiB, the highest since the last write
        self._collected = asyncio.Event()

    @classmethod
    def for_inventory(cls, store: Store, inventory: GpuInventory,
                      interval: float) -> GpuUsage | None:
        """The recorder of the GPUs trials may use, or None where NVML cannot say (nvidia-smi
        costs a process per sample) or hpod uses no GPU."""
        probe = inventory.probe
        if probe is None or not GpuMonitor.supported(probe) or not inventory.usable:
            return None
        return cls(store, probe, indices=[g.index for g in inventory.usable], interval=interval)

    def track(self, executor: Executor) -> Executor:
        """`executor`, noting the process group of every trial launched through it."""
        return _TrackingExecutor(executor, self._groups)

    @property
    def tracked(self) -> Mapping[int, int]:
        """The process group of each trial whose group still ran at the last sample."""
        return dict(self._groups)

    async def run(self) -> None:
        """Sample and record until cancelled. A failing probe is a warning (the monitor's);
        a failing store ends the daemon, as it does everywhere else."""
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._monitor.run(), name="gpu-sampler")
            tg.create_task(self._write(), name="gpu-writer")

    def _collect(self, at: float, gpus: list[GpuInfo]) -> None:
        # Called on the loop by the monitor after the probe ran in a thread: only getpgid and
        # kill(0) calls here, microseconds each, nothing that can block.
        self._samples.extend(GpuSample(at, g.index, g.utilization, g.memory_used_mb,
                                       g.memory_total_mb) for g in gpus)
        for trial_id, pgid in list(self._groups.items()):
            if not _group_alive(pgid):  # ended: forget it before its pid can be reused
                del self._groups[trial_id]
                continue
            mb = memory_of_group(gpus, pgid)
            if mb > 0:  # a trial that never touched a GPU keeps "unknown", not 0
                self._peaks[trial_id] = max(mb, self._peaks.get(trial_id, 0))
        self._collected.set()

    async def _write(self) -> None:
        next_prune = 0.0  # at once: a daemon restarted after weeks starts by trimming
        rounds_held = -1  # the first round is written at once: the GPUs show from the start
        while True:
            try:
                await self._collected.wait()
            except asyncio.CancelledError:
                await self._write_held()
                raise
            self._collected.clear()
            idle = not self._groups and not self._peaks
            rounds_held += 1
            if idle and 0 < rounds_held < IDLE_ROUNDS_PER_WRITE:
                continue
            rounds_held = 0
            samples, self._samples = self._samples, []
            peaks, self._peaks = self._peaks, {}
            try:
                await self._store.add_gpu_samples(samples, peaks)
                now = self._clock()
                if now >= next_prune:
                    next_prune = now + PRUNE_INTERVAL_S
                    removed = await self._store.prune_gpu_samples(now - self._retention)
                    if removed:
                        logger.debug("deleted %d GPU sample(s) older than %g days", removed,
                                     self._retention / 86400)
            except StoreError:
                raise
            except Exception:  # a bug here must not end a night of trials: this round is lost
                logger.exception("recording GPU utilisation failed")


    async def _write_held(self) -> None:
        """At the daemon's stop: the rounds held while idle, so none is lost. Best effort: the
        store may be what is failing."""
        if not self._samples and not self._peaks:
            return
        try:
            await self._store.add_gpu_samples(self._samples, self._peaks)
        except Exception:  # noqa: BLE001 - stopping anyway; the rounds are what is lost
            logger.warning("the last GPU samples could not be recorded", exc_info=True)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user (a setuid child): still ours
        return True
    return True


class _TrackingExecutor:
    """The daemon's executor with one addition: it notes each launched trial's process group."""

    def __init__(self, inner: Executor, groups: dict[int, int]) -> None:
        self._inner = inner
        self._groups = groups

    def __repr__(self) -> str:
        return f"<tracking GPU memory of {self._inner!r}>"

    async def launch(self, argv: Sequence[str], *, env: Mapping[str, str], cwd: Path,
                     trial_dir: Path, **options: Any) -> RunningTrial:
        # `options` (preload, slot) are passed on only when given: an executor without warm
        # starts need not know them.
        running = await self._inner.launch(argv, env=env, cwd=cwd, trial_dir=trial_dir,
                                           **options)
        trial_id = env.get("HPOD_TRIAL_ID", "")
        if trial_id.isdigit():
            self._groups[int(trial_id)] = running.pid
        return running
