"""What every screen is given: where the database is, the feed to subscribe to, and the clock."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .feed import StoreFeed


@dataclass(frozen=True, slots=True)
class TuiContext:
    db_path: Path
    feed: StoreFeed
    # Durations and "time left" tick with it; tests and snapshots pass a frozen one.
    clock: Callable[[], float] = field(default=time.time)
