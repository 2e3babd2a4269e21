"""`[trial] keep_checkpoints = N`: a night of early stopping leaves one checkpoint per trial.

Most of them belong to trials that will never run again: stopped at a rung, failed for good,
or complete but beaten. With a model of a few hundred megabytes, a few hundred trials fill a
disk. With `keep_checkpoints` set, the last checkpoint each such trial announced is deleted,
except those of the N best trials (a trial that enters the N best pushes the Nth one's out).
Complete trials rank first, by value; then stopped ones, the furthest trained first, by value:
a study whose budget ran out before any paused trial was promoted to the end keeps the best
of those, not nothing. Failed trials never keep theirs. Paused, queued, running and interrupted
trials keep theirs: they may resume from it. Without the field nothing is ever deleted.

hpod deletes only inside the trial's own folder (HPOD_TRIAL_DIR): a checkpoint the trial wrote
elsewhere (a shared models folder, the study's workdir) is the user's, and is kept.
"""

from __future__ import annotations

import bisect
import math
import os
import shutil
from enum import Enum
from pathlib import Path

from hpod.log_cap import LOG_NAMES
from hpod.store.records import Direction, TrialRecord, TrialState


class Removal(Enum):
    DELETED = "deleted"
    MISSING = "missing"  # already gone: nothing to do
    OUTSIDE = "outside"  # not inside the trial's folder: kept


class CheckpointKeeper:
    """Which ended trials' checkpoints may go. Pure: no I/O (the caller deletes)."""

    def __init__(self, direction: Direction) -> None:
        self._direction = direction
        # The ranked trials with a checkpoint, best first: (rank key, number, trial).
        self._best: list[tuple[tuple[int, float, float], int, TrialRecord]] = []
        self._losers: list[TrialRecord] = []  # failed for good, or no value to rank by

    def ended(self, trial: TrialRecord) -> None:
        """A trial that will never run again (complete, stopped, or failed with no retry left)."""
        if not trial.checkpoint:
            return
        value = trial.value
        if trial.state is TrialState.FAILED or value is None or math.isnan(value):
            self._losers.append(trial)
            return
        score = value if self._direction is Direction.MINIMIZE else -value
        if trial.state is TrialState.COMPLETE:
            key = (0, 0.0, score)
        else:  # stopped: how far it got counts first, values at other steps do not compare
            key = (1, -float(trial.last_step or 0), score)
        bisect.insort(self._best, (key, trial.number, trial), key=lambda e: e[:2])

    def to_delete(self, keep: int | None) -> list[TrialRecord]:
        """The trials whose checkpoint goes now (forgotten here); none while `keep` is None."""
        if keep is None:
            return []
        doomed, self._losers = self._losers, []
        while len(self._best) > keep:
            doomed.append(self._best.pop()[2])
        return doomed


def remove_checkpoint(path: str, trial_dir: Path) -> Removal:
    """Delete the checkpoint at `path` (a file, a link, or a folder) when it lies inside
    `trial_dir`. Raises OSError when it cannot be deleted."""
    folder = os.path.realpath(trial_dir)
    # Normalised first: a trial may announce "$HPOD_TRIAL_DIR/" or "$HPOD_TRIAL_DIR/..", whose
    # last part would otherwise name the folder itself, or the study's folder of trials.
    path = os.path.normpath(os.path.abspath(path))
    # The link itself is what lies in the folder: its target is not followed.
    target = os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))
    if os.path.commonpath([folder, target]) != folder or target == folder \
            or os.path.basename(target) in LOG_NAMES:
        return Removal.OUTSIDE
    if os.path.isdir(target) and not os.path.islink(target):
        shutil.rmtree(target)
        return Removal.DELETED
    try:
        os.unlink(target)
    except FileNotFoundError:
        return Removal.MISSING
    return Removal.DELETED
