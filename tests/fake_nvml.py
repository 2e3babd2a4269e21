"""A stand-in for the `pynvml` module: the NVML edge, the one place GPU tests fake.

Put it in `sys.modules["pynvml"]` and a daemon built afterwards finds its GPUs through it,
exactly as it would through nvidia-ml-py. Tests change `gpus` (utilisation, memory, the
processes on each GPU) and `failure` (raised by every reading) while the daemon runs.
(Importable as `fake_nvml`: pytest puts tests/ on sys.path.)
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

MIB = 1 << 20


class FakeNvml:
    class NVMLError(Exception):
        pass

    def __init__(self, gpus: list[dict[str, Any]]) -> None:
        self.gpus = gpus  # uuid, name, total and used (MiB), util (%), procs ({pid: MiB})
        self.failure: BaseException | None = None
        self.queries = 0  # readings of the GPU count: one per probe query

    def nvmlInit(self) -> None:
        pass

    def nvmlShutdown(self) -> None:
        pass

    def nvmlDeviceGetCount(self) -> int:
        self.queries += 1
        if self.failure is not None:
            raise self.failure
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> int:
        return index

    def nvmlDeviceGetUUID(self, h: int) -> str:
        return self.gpus[h]["uuid"]

    def nvmlDeviceGetName(self, h: int) -> str:
        return self.gpus[h]["name"]

    def nvmlDeviceGetMemoryInfo(self, h: int) -> SimpleNamespace:
        g = self.gpus[h]
        return SimpleNamespace(total=g["total"] * MIB, used=g["used"] * MIB,
                               free=(g["total"] - g["used"]) * MIB)

    def nvmlDeviceGetUtilizationRates(self, h: int) -> SimpleNamespace:
        return SimpleNamespace(gpu=self.gpus[h]["util"], memory=0)

    def nvmlDeviceGetComputeRunningProcesses(self, h: int) -> list[SimpleNamespace]:
        return [SimpleNamespace(pid=pid, usedGpuMemory=mb * MIB)
                for pid, mb in dict(self.gpus[h].get("procs", {})).items()]


def four_gpus() -> list[dict[str, Any]]:
    """Four 16 GiB cards, GPU i at 10·i % utilisation with 100·i MiB in use."""
    return [{"uuid": f"GPU-{c * 8}-0000", "name": "NVIDIA RTX A4000", "total": 16376,
             "used": 100 * i, "util": 10 * i, "procs": {}} for i, c in enumerate("abcd")]
