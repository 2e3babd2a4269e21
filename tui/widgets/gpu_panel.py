"""GpuPanel: each GPU's utilisation now and over the last minutes, and its memory in use.

It sits on the studies overview, the machine-wide view, and subscribes to the feed itself
(GpuInterest) so the screen's own subscription is untouched. Without samples — no NVML, or a
daemon that never ran with it — it stays hidden and the screen looks as it did.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import ClassVar

from hpod.store import GpuSample
from rich.style import Style
from rich.text import Text
from textual.geometry import Size
from textual.widget import Widget

from .. import format as fmt
from ..feed import StoreFeed
from ..messages import GpusUpdated
from ..watch_gpus import GpuInterest

BLOCKS = "▁▂▃▄▅▆▇█"
SPARK_WIDTH = 16
ENTRY_WIDTH = 6 + 1 + SPARK_WIDTH + 5 + 16  # "gpu:12" sparkline " 100%" "  15.9/80.0 GiB"
ENTRY_GAP = 3
# An older newest sample means no daemon is sampling now: say when it was. Above a minute: a
# daemon with no trial running writes a minute of rounds at once (hpod.gpu_usage).
STALE_AFTER_S = 90.0


def sparkline(values: Sequence[float | None], width: int = SPARK_WIDTH) -> str:
    """Percentages (fixed 0-100 scale) as `width` blocks, newest on the right.

    With more values than columns each column shows the highest of its share, so a short burst
    stays visible; a missing reading is a dot, and the line is padded on the left when short.
    """
    if width <= 0:
        return ""
    n = len(values)
    if n > width:
        shares = (values[i * n // width:(i + 1) * n // width] for i in range(width))
        values = [max((v for v in share if v is not None), default=None) for share in shares]
    return "".join(_block(v) for v in values).rjust(width)


def _block(percent: float | None) -> str:
    if percent is None:
        return "·"
    return BLOCKS[min(len(BLOCKS) - 1, max(0, int(percent * len(BLOCKS) / 100)))]


def memory_text(used: float | None, total: float | None) -> str:
    if used is None or total is None:
        return f"{fmt.MISSING} memory"
    if total >= 1024:
        return f"{used / 1024:.1f}/{total / 1024:.1f} GiB"
    return f"{used:.0f}/{total:.0f} MiB"


def gpu_entry(sample: GpuSample, recent: Sequence[GpuSample], spark: Style | None = None) -> Text:
    """One GPU: `gpu:0 ▁▂▅█▇  87%  9.1/16.0 GiB`, padded to ENTRY_WIDTH."""
    text = Text()
    text.append(f"gpu:{sample.gpu}".ljust(7), style="bold")
    text.append(sparkline([s.utilization for s in recent] or [sample.utilization]), style=spark)
    util = fmt.MISSING if sample.utilization is None else f"{sample.utilization:.0f}%"
    text.append(f" {util:>4}  ")
    text.append(memory_text(sample.memory_used_mb, sample.memory_total_mb))
    text.pad_right(max(0, ENTRY_WIDTH - text.cell_len))
    return text


def panel_text(latest: Sequence[GpuSample], recent: Mapping[int, Sequence[GpuSample]],
               width: int, now: float, spark: Style | None = None) -> Text:
    """As many GPUs per line as fit in `width`, and when the newest sample is old, its time."""
    per_line = max(1, (width + ENTRY_GAP) // (ENTRY_WIDTH + ENTRY_GAP))
    lines = []
    for start in range(0, len(latest), per_line):
        line = Text(" " * ENTRY_GAP).join(
            gpu_entry(s, recent.get(s.gpu, ()), spark) for s in latest[start:start + per_line])
        line.rstrip()
        lines.append(line)
    if latest and now - latest[0].time > STALE_AFTER_S:
        lines.append(Text(f"(sampled at {fmt.clock(latest[0].time, now)}: no daemon samples "
                          "the GPUs now)", style="italic"))
    return Text("\n").join(lines)


class GpuPanel(Widget):
    COMPONENT_CLASSES: ClassVar[set[str]] = {"gpu-panel--spark"}

    def __init__(self, feed: StoreFeed, *, clock: Callable[[], float] = time.time,
                 id: str | None = None) -> None:
        super().__init__(id=id)
        self._feed = feed
        self._clock = clock
        self._latest: tuple[GpuSample, ...] = ()
        self._recent: Mapping[int, Sequence[GpuSample]] = {}

    @property
    def latest(self) -> tuple[GpuSample, ...]:
        return self._latest

    def on_mount(self) -> None:
        self.display = False
        self._feed.subscribe(self, GpuInterest())
        self.set_interval(5.0, self.refresh)  # the "sampled at" note appears without new data

    def on_unmount(self) -> None:
        self._feed.unsubscribe(self)

    def on_gpus_updated(self, message: GpusUpdated) -> None:
        self._latest, self._recent = message.latest, message.recent
        self.display = bool(self._latest)
        self.refresh(layout=True)

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        # The lines depend on the width they are laid out in, which render() learns only after.
        return len(self._text(width).split())

    def render(self) -> Text:
        return self._text(self.size.width)

    def _text(self, width: int) -> Text:
        spark = self.get_component_rich_style("gpu-panel--spark", partial=True)
        return panel_text(self._latest, self._recent, width, self._clock(), spark)
