"""The daemon's settings, decided once by the CLI and then frozen."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

STATE_DIR_NAME = ".hpod"


def default_db_path(folder: Path) -> Path:
    return folder / STATE_DIR_NAME / "hpod.db"


def default_slots() -> int:
    """One CPU slot per core, at least one: the GPU issue replaces this with GPU leases."""
    return max(1, os.cpu_count() or 1)


@dataclass(frozen=True, slots=True)
class DaemonConfig:
    """What one daemon serves and how.

    `folder` is the watched folder; `study_files` instead pins an explicit list of files and
    turns the watcher off (that is `hpod run FILE`).
    """

    db_path: Path
    folder: Path | None = None
    study_files: tuple[Path, ...] = ()
    slots: int = field(default_factory=default_slots)
    # Which GPUs trials may use: "all" (those visible), "none", or indices/UUIDs ("0,2").
    gpus: str = "all"
    # A GPU with less free memory than this is left alone (someone else is using it); a study's
    # [resources] min_free_memory overrides it.
    min_free_memory_mb: int = 1024
    exit_when_idle: bool = False
    # Seconds between SIGTERM and SIGKILL for trials at shutdown when the study sets no grace.
    shutdown_grace: float = 10.0
    # How long reports may sit in memory before they are written: bounds both the SQLite
    # transaction rate under heavy reporting and how stale the TUI can be.
    flush_interval: float = 0.2
    # How often the daemon looks for commands written by `hpod stop|pause|resume` or the TUI.
    command_interval: float = 0.5
    # The watcher's debounce: editors write a file in several steps; we parse once they settle.
    debounce_ms: int = 200

    def __post_init__(self) -> None:
        if self.slots < 1:
            raise ValueError(f"slots must be at least 1, got {self.slots}")
        if self.folder is None and not self.study_files:
            raise ValueError("a daemon needs a folder to watch or study files to run")

    @property
    def state_dir(self) -> Path:
        return self.db_path.parent

    @property
    def trials_dir(self) -> Path:
        return self.state_dir / "trials"
