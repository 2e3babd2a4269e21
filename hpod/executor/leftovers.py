"""Processes an earlier run of a trial left behind, found by the trial folder in their environment.

A trial's main process dies with the daemon (PR_SET_PDEATHSIG), but what it forked does not: the
kernel clears that setting on fork, and after `kill -9` of the daemon nobody is left to kill the
trial's process group. Such orphans (a data loader, a helper server) may hold a GPU's memory for
the rest of the night. Every process of a trial inherits HPOD_TRIAL_DIR, the trial's own folder
under the daemon's state folder; one daemon holds that folder (its lock), so a live process
carrying it when the trial is not running is a leftover, whatever its pid or group became.
A trial's processes are looked for again when it ends (LocalTrial.sweeps): what left its
process group (a session of its own) is killed then, not only at the folder's next use.
A process that cleared its environment cannot be found this way.
"""

from __future__ import annotations

import logging
import os
import signal
from pathlib import Path

logger = logging.getLogger(__name__)

_VARIABLE = b"HPOD_TRIAL_DIR="


def trial_dir_value(trial_dir: Path) -> str:
    """HPOD_TRIAL_DIR as every trial gets it, and as the sweeps here look for it: absolute."""
    return os.path.abspath(trial_dir)


def find_leftovers(trial_dir: Path, *, under: bool = False) -> list[int]:
    """Pids of live processes whose HPOD_TRIAL_DIR is `trial_dir` (or, with `under`, any
    folder inside it: every trial of a state folder). Linux only; elsewhere none are found."""
    proc = Path("/proc")
    if not proc.is_dir():
        return []
    wanted = os.fsencode(trial_dir_value(trial_dir))
    me = os.getpid()
    found = []
    for entry in os.scandir(proc):
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as f:
                environ = f.read()
        except OSError:  # gone meanwhile, a zombie, or another user's
            continue
        for item in environ.split(b"\0"):
            if item.startswith(_VARIABLE) and _matches(item[len(_VARIABLE):], wanted, under):
                found.append(int(entry.name))
                break
    return found


def _matches(value: bytes, wanted: bytes, under: bool) -> bool:
    if value == wanted:
        return True
    return under and value.startswith(wanted.rstrip(b"/") + b"/")


def kill_leftovers(trial_dir: Path, *, under: bool = False,
                   why: str = "left by an earlier run") -> list[int]:
    """SIGKILL what find_leftovers() finds; returns the pids it signalled. `why` says in the
    log whose they were."""
    killed = []
    for pid in find_leftovers(trial_dir, under=under):
        try:
            os.kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            continue
        killed.append(pid)
    if killed:
        logger.warning("killed %d process(es) %s under %s: %s",
                       len(killed), why, trial_dir, " ".join(map(str, killed)))
    return killed
