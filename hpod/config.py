"""The daemon's settings, decided once by the CLI and then frozen."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

STATE_DIR_NAME = ".hpod"
SPARES_MODES = ("auto", "ignore-load", "off")
EXECUTORS = ("local", "ray")


DB_NAME = "hpod.db"


def default_db_path(folder: Path) -> Path:
    return folder / STATE_DIR_NAME / DB_NAME


def trials_dir_of(db_path: Path) -> Path:
    """The trials' folders of the database at `db_path`: `trials/` beside an `hpod.db`,
    `FILENAME-trials/` beside any other (`a.db-trials/`). Two databases in one folder (`hpod
    run a.toml --db runs/a.db` and `b.toml --db runs/b.db`, which their locks allow at once)
    must not share them: a daemon's start ends the processes it finds left in its own, and two
    studies of one name would mix their logs."""
    name = "trials" if db_path.name == DB_NAME else f"{db_path.name}-trials"
    return db_path.parent / name


def trial_dir(trials_dir: Path, study: str, number: int) -> Path:
    """One trial's folder (its logs, checkpoints, HPOD_TRIAL_DIR) under `trials_dir`."""
    return trials_dir / study / f"{number:05d}"


def default_slots() -> int:
    """One CPU slot per core this process may run on (taskset, a container's cpuset), at
    least one."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
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
    # Seconds between two samples of GPU utilisation and of trials' GPU memory (NVML only):
    # NVML answers in microseconds; the cost is the rows, kept a week (hpod/gpu_usage.py).
    gpu_sample_interval: float = 10.0
    # Spare processes for studies with `[trial] preload` (docs/warm-start.md): "auto" starts one
    # only on a core that nothing wants, "ignore-load" when hpod's own trials leave a core free
    # whatever else runs, "off" starts every trial cold.
    spares: str = "auto"
    # Where trials run unless a study's [executor] says otherwise: "local" (this machine) or
    # "ray" (a Ray cluster, docs/cluster.md); `ray_address` None starts a local Ray instance.
    executor: str = "local"
    ray_address: str | None = None

    def __post_init__(self) -> None:
        if self.slots < 1:
            raise ValueError(f"slots must be at least 1, got {self.slots}")
        if self.folder is None and not self.study_files:
            raise ValueError("a daemon needs a folder to watch or study files to run")
        if not self.gpu_sample_interval > 0:
            raise ValueError(f"gpu_sample_interval must be > 0 seconds, got "
                             f"{self.gpu_sample_interval}")
        if self.spares not in SPARES_MODES:
            raise ValueError(f"spares must be one of {', '.join(SPARES_MODES)}, got "
                             f"{self.spares!r}")
        if self.executor not in EXECUTORS:
            raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}, got "
                             f"{self.executor!r}")

    @property
    def state_dir(self) -> Path:
        return self.db_path.parent

    @property
    def trials_dir(self) -> Path:
        return trials_dir_of(self.db_path)
