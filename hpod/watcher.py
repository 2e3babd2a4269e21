"""The watched folder as an async stream of "this study file is there now" / "it is gone".

The daemon treats each event idempotently (it compares the file's content with what it runs),
so the watcher only has to say which paths changed, never how.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import watchfiles

logger = logging.getLogger(__name__)

STUDY_SUFFIXES = frozenset({".toml", ".yaml", ".yml", ".json"})


def is_study_file_name(name: str) -> bool:
    """Study files are visible files with a study suffix; editor droppings are not.

    Hidden files cover vim's `.x.swp`, emacs' `.#x`, and the `write temp then rename` dance of
    most editors and of `cp --backup`; `~` and `.part`/`.tmp` suffixes cover the rest.
    """
    if not name or name.startswith((".", "#", "~")) or name.endswith("~"):
        return False
    return Path(name).suffix.lower() in STUDY_SUFFIXES


@dataclass(frozen=True, slots=True)
class StudyFileEvent:
    path: Path
    present: bool  # False: the file was removed (or renamed away)
    initial: bool = False  # True for the scan at start-up


WATCH_STEP_MS = 250


def scan(folder: Path) -> list[Path]:
    """Every entry named like a study file, whatever it is: a folder, a FIFO or a broken link
    named x.toml gets its error recorded instead of being silently ignored."""
    return sorted(p for p in folder.iterdir() if is_study_file_name(p.name))


async def watch_study_files(
    folder: Path, stop: asyncio.Event, *, debounce_ms: int = 200
) -> AsyncIterator[list[StudyFileEvent]]:
    """Yield batches of events until `stop` is set: first the files present at start (the
    batch may be empty), then each settled batch of changes.
    """

    def wanted(_change: watchfiles.Change, raw: str) -> bool:
        path = Path(raw)
        return path.parent == folder and is_study_file_name(path.name)

    changes = watchfiles.awatch(
        folder,
        watch_filter=wanted,
        debounce=debounce_ms,
        # watchfiles' thread wakes every `step` to look for changes and for `stop`, whether
        # anything happened or not: at 20 ms that was 50 wakeups a second all night, the
        # idle daemon's largest cost. A file is still seen within two steps.
        step=WATCH_STEP_MS,
        stop_event=stop,
        recursive=False,
    )
    first = asyncio.ensure_future(anext(changes, None))
    try:
        # NOTE: one turn of the loop runs awatch up to its first suspension point, by which
        # time the inotify watch exists: a file dropped after the scan below is never missed.
        await asyncio.sleep(0)
        yield [StudyFileEvent(path, present=True, initial=True) for path in scan(folder)]
        batch = await first
        while batch is not None:
            yield [_event(Path(raw)) for raw in sorted({raw for _change, raw in batch})]
            batch = await anext(changes, None)
    finally:
        first.cancel()
        await changes.aclose()


def _event(path: Path) -> StudyFileEvent:
    # lexists, not is_file: a name that is there but unusable (a loop of links, a folder) is
    # reported by the reader with its reason; only a name that is gone is a removal.
    present = os.path.lexists(path)
    logger.debug("study file %s %s", path, "changed" if present else "removed")
    return StudyFileEvent(path, present=present)
