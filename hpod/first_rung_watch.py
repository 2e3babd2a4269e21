"""Say so when a rung scheduler stops trial after trial at its first rung.

ASHA keeps the top third of a rung (eta = 3), so a run of STREAK trials in a row stopped at the
first rung happens by chance with probability (2/3)**30, about 5e-6. When it does happen, the
study has usually settled into proposing points that the first rung rejects: on learning
curves that cross, a first rung that comes too early ranks trials poorly, and a model-based
suggester keeps proposing slow starters and unexplored corners that die there
(docs/benchmarks.md, "A long study in which almost nothing completes"). Nothing is broken, but
a user who watches a night of stopped trials deserves to know why, and what to change.

One warning per streak: a trial that gets past the first rung (or completes) ends it, and the
next streak of STREAK warns again.
"""

from __future__ import annotations

from hpod.schedule.rungs import format_level, reached
from hpod.store.records import TrialRecord, TrialState

STREAK = 30


class FirstRungWatch:
    def __init__(self, study: str, scheduler: str, first_level: float, next_level: float,
                 streak: int = STREAK) -> None:
        """`next_level`: the second rung (or the end of training): a trial stopped before it
        was stopped at the first rung."""
        self.study = study
        self.scheduler = scheduler
        self.first_level = first_level
        self.next_level = next_level
        self.streak = streak
        self._run = 0

    def on_end(self, trial: TrialRecord) -> str | None:
        """Count a trial that ended; the warning's text when this one makes the streak."""
        if trial.state is TrialState.STOPPED and trial.last_step is not None \
                and not reached(float(trial.last_step), self.next_level):
            self._run += 1
            if self._run == self.streak:
                return self._message()
            return None
        if trial.state in (TrialState.COMPLETE, TrialState.STOPPED):
            self._run = 0
        return None  # a failure says nothing about the rung

    def _message(self) -> str:
        level = format_level(self.first_level)
        return (f"study {self.study}: the last {self.streak} trials were all stopped at the "
                f"first rung (resource {level}) by the {self.scheduler} scheduler. The points "
                "proposed rarely survive it: the first rung may come too early for these "
                "learning curves. `hpod simulate STUDY_FILE --curves FOLDER/.hpod/hpod.db` "
                "measures how well each rung ranks this study's trials; consider a later "
                "`min_resource`, or `kind = \"async-hyperband\"`, which hedges over first rungs")


def watch_for(study: str, scheduler_kind: str, scheduler: object) -> FirstRungWatch | None:
    """A watch for a scheduler with rungs (None for one without: fifo, median)."""
    levels = tuple(getattr(scheduler, "levels", ()))
    top = getattr(scheduler, "max_resource", None)
    if not levels or top is None:
        return None
    next_level = levels[1] if len(levels) > 1 else top
    return FirstRungWatch(study, scheduler_kind, levels[0], next_level)
