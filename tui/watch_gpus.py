"""The GPU panel's watch: the newest sample of each GPU, and the recent ones for a sparkline.

The daemon writes a sample round every few seconds (NVML only), while metrics make the
database change several times a second: so a changed database costs one indexed read of the
newest round, and the recent window is read again only when that round is new.
"""

from __future__ import annotations

from dataclasses import dataclass

from hpod.store import StoreReader
from textual.message import Message

from .messages import GpusUpdated

SPARK_WINDOW_S = 600.0  # ten minutes: 60 samples at the daemon's default 10 s


@dataclass(frozen=True, slots=True)
class GpuInterest:
    window: float = SPARK_WINDOW_S

    def open(self) -> GpuWatch:
        return GpuWatch(self.window)


class GpuWatch:
    def __init__(self, window: float) -> None:
        self._window = window
        self._newest: float | None = None  # the time of the round last sent

    @property
    def busy(self) -> bool:
        return False

    def retarget(self, interest: object) -> None:
        if isinstance(interest, GpuInterest):
            self._window = interest.window
        self._newest = None  # a re-subscription asks for the whole state again

    def poll(self, reader: StoreReader, changed: bool) -> list[Message]:
        if not changed and self._newest is not None:
            return []
        with reader.snapshot():
            latest = reader.latest_gpu_samples()
            if not latest or latest[0].time == self._newest:
                return []  # no GPU sampled (no NVML), or nothing new since the last round
            recent = reader.recent_gpu_samples(self._window)
        self._newest = latest[0].time
        return [GpusUpdated(tuple(latest), {gpu: tuple(s) for gpu, s in recent.items()})]
