"""How numbers, durations and times read on screen: short, fixed-width friendly, never raising."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from typing import Any

MISSING = "-"


def value(v: float | None, digits: int = 4) -> str:
    """A metric value in `digits` significant digits: 0.01234, 1.235e-05, 1234, nan."""
    if v is None:
        return MISSING
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return f"{v:.{digits}g}"


def param(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return str(v).lower()
    if isinstance(v, float):
        return value(v, 3)
    return str(v)


def duration(seconds: float | None) -> str:
    """12s, 3m04s, 2h05m, 3d04h: two units at most, so a column stays narrow."""
    if seconds is None or math.isnan(seconds):
        return MISSING
    s = int(max(0.0, seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def clock(ts: float | None, now: float | None = None) -> str:
    """Local wall-clock time; the date too when it is not today."""
    if ts is None:
        return MISSING
    local = time.localtime(ts)
    if now is not None and time.localtime(now)[:3] != local[:3]:
        return time.strftime("%m-%d %H:%M", local)
    return time.strftime("%H:%M:%S", local)


def memory(mb: float | None) -> str:
    """A size in MiB as it reads best: 512 MiB, 9.1 GiB."""
    if mb is None or math.isnan(mb):
        return MISSING
    return f"{mb / 1024:.1f} GiB" if mb >= 1024 else f"{mb:.0f} MiB"


def count(n: int) -> str:
    return str(n) if n else "·"


def abbreviate(name: str, width: int) -> str:
    """A name in `width` characters keeping its start and its end: long parameter names often
    differ only at the end (layer_1_units, layer_2_units), where truncate would cut."""
    if len(name) <= width or width < 5:
        return truncate(name, width)
    head = (width - 1) // 2
    return name[:head] + "…" + name[len(name) - (width - 1 - head):]


def distinct_labels(names: Sequence[str], width: int) -> list[str]:
    """Each name abbreviated to `width`; where two would read the same (layer_1_units and
    layer_2_units), what follows the prefix they share instead."""
    labels = [abbreviate(name, width) for name in names]
    for label in set(labels):
        group = [i for i, other in enumerate(labels) if other == label]
        if len(group) < 2:
            continue
        shared = len(os.path.commonprefix([names[i] for i in group]))
        for i in group:
            rest = names[i][shared:]
            labels[i] = "…" + abbreviate(rest, width - 1) if rest else labels[i]
    return labels


def truncate(text: str, width: int) -> str:
    if width <= 0:
        return ""
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"
