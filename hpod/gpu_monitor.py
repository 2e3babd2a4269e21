"""GPU utilisation over time: samples every few seconds, handed to a callback that stores them.

Only NVML is sampled (`GpuMonitor.supported`): it answers in microseconds, while `nvidia-smi`
is a process start per sample. Peak GPU memory per trial comes from the same samples: NVML
lists the processes on each GPU, and `memory_of_group` sums the ones of a trial's process group.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Collection, Sequence

from hpod.gpus import GpuInfo, GpuProbe, GpuProbeError

logger = logging.getLogger(__name__)

SampleCallback = Callable[[float, list[GpuInfo]], None]


class GpuMonitor:
    """`await monitor.run()` samples until cancelled; `sample()` takes one sample now.

    `on_sample(unix_time, gpus)` gets the GPUs in `indices` (all when None), fresh from the probe.
    """

    def __init__(self, probe: GpuProbe, on_sample: SampleCallback, *, interval: float = 10.0,
                 indices: Collection[int] | None = None) -> None:
        if not interval > 0:
            raise ValueError(f"the sampling interval must be > 0 seconds, got {interval}")
        self._probe = probe
        self._on_sample = on_sample
        self._interval = interval
        self._indices = None if indices is None else frozenset(indices)
        self._failing = False

    @staticmethod
    def supported(probe: GpuProbe | None) -> bool:
        return probe is not None and probe.source == "nvml"

    async def sample(self) -> list[GpuInfo] | None:
        """One sample, passed to the callback and returned; None when the probe failed."""
        try:
            gpus = await asyncio.to_thread(self._probe.query)
        except Exception as e:  # noqa: BLE001 — a driver hiccup or a probe's bug: never fatal
            if not self._failing:  # one warning per outage, not one per sample
                why = str(e) if isinstance(e, GpuProbeError) else f"{type(e).__name__}: {e}"
                logger.warning("GPU sampling failed: %s", why)
            self._failing = True
            return None
        if self._failing:
            logger.info("GPU sampling works again")
            self._failing = False
        chosen = [g for g in gpus if self._indices is None or g.index in self._indices]
        try:
            self._on_sample(time.time(), chosen)
        except Exception:  # storing a sample must never take the daemon down
            logger.exception("storing a GPU sample failed")
        return chosen

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await self.sample()
            # Sampling is periodic by nature: this timer is the product, not a poll for an event.
            await asyncio.sleep(max(0.0, self._interval - (loop.time() - started)))


def memory_of_group(gpus: Sequence[GpuInfo], pgid: int) -> int:
    """MiB held on `gpus` by the processes of one process group (a trial and its children)."""
    total = 0
    for gpu in gpus:
        for pid, mb in gpu.processes.items():
            try:
                if os.getpgid(pid) == pgid:
                    total += mb
            except OSError:  # gone, or a PID of another namespace (NVML inside a container)
                continue
    return total
