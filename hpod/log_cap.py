"""A trial's stdout.log and stderr.log kept under `[trial] max_log_mb`.

A trial that prints a progress bar per batch all night, or loops on an error message, must not
fill the disk: the database lives on it too, and a full disk stops the daemon and every study.
While a trial runs its logs are looked at every LOG_CHECK_EVERY seconds, or sooner while it
prints fast (next_check: a trial printing 10 MiB a second would otherwise run 100 MiB past a
1 MiB limit between two looks); one past the limit keeps its newest half-limit, behind a line
that says how much was cut. The trial appends on (its file
is open with O_APPEND, so its next write goes to the new end); a few lines it writes during the
cut itself may be lost, which a log can afford.
"""

from __future__ import annotations

import os
from pathlib import Path

LOG_CHECK_EVERY = 10.0  # seconds, at most
LOG_CHECK_SOONEST = 0.5  # seconds, for a trial that prints as fast as the disk takes it
STDOUT_LOG, STDERR_LOG = "stdout.log", "stderr.log"  # in each trial's folder
LOG_NAMES = (STDOUT_LOG, STDERR_LOG)


def log_sizes(trial_dir: Path) -> list[int]:
    """The sizes of the trial's logs in bytes (0 for one not there)."""
    sizes = []
    for name in LOG_NAMES:
        try:
            sizes.append(os.path.getsize(trial_dir / name))
        except OSError:
            sizes.append(0)
    return sizes


def next_check(grew: int, elapsed: float, room: int) -> float:
    """Seconds until the logs are looked at again: printing on as fast as they grew by `grew`
    bytes in the last `elapsed` seconds, they should fill at most half the `room` left."""
    if grew <= 0 or elapsed <= 0:
        return LOG_CHECK_EVERY
    return min(LOG_CHECK_EVERY, max(LOG_CHECK_SOONEST, elapsed * max(room, 0) / (2 * grew)))


def look_at_logs(trial_dir: Path, limit_mb: float) -> tuple[int, list[str], list[int]]:
    """One look while the trial runs (one trip off the event loop): the bytes its logs held,
    the names trimmed, and their sizes after."""
    before = log_sizes(trial_dir)
    trimmed = trim_logs(trial_dir, limit_mb, before)
    return sum(before), trimmed, log_sizes(trial_dir) if trimmed else before


def trim_logs(trial_dir: Path, limit_mb: float, sizes: list[int] | None = None) -> list[str]:
    """Trim the trial's logs that are over `limit_mb` MiB (0: no limit); the names trimmed.
    `sizes` (log_sizes, just read) spares a second look at logs under the limit."""
    if limit_mb <= 0:
        return []
    limit = int(limit_mb * 1024 * 1024)
    return [name for i, name in enumerate(LOG_NAMES)
            if (sizes is None or sizes[i] > limit) and trim_log(trial_dir / name, limit)]


def trim_log(path: Path, limit: int) -> bool:
    """Keep the newest `limit // 2` bytes of `path` (from a line start) when it holds more than
    `limit`; True when it was trimmed."""
    try:
        size = os.path.getsize(path)
        if size <= limit:
            return False
        with open(path, "rb") as log:
            log.seek(size - limit // 2)
            tail = log.read(limit // 2)
        newline = tail.find(b"\n")
        if 0 <= newline < len(tail) - 1:
            tail = tail[newline + 1:]
        os.truncate(path, 0)
        cut = size - len(tail)
        with open(path, "ab") as log:
            log.write(f"[hpod: the first {cut} bytes of this log were cut to keep it under "
                      f"[trial] max_log_mb]\n".encode() + tail)
    except OSError:
        return False  # gone, or not ours to trim: the trial's logs are best effort
    return True
