"""Fair share across a restart: a real daemon on a tmp folder (real store, intake, trial
processes), started on a store that already holds what the studies ran before."""

from __future__ import annotations

from pathlib import Path

from hpod.config import DaemonConfig
from hpod.daemon import Daemon
from hpod.spec import load_study_file
from hpod.store import TrialState, open_store

from helpers import quadratic_study, study_and_trials, write_study

NIGHT = 10 * 3600.0  # seconds study "a" ran before this start


async def seed_a_night_of_a(db: Path, path: Path) -> None:
    """Study `a`, as its file defines it, with one trial that ran for a night on a CPU slot."""
    spec = load_study_file(path)
    now = [1_000_000.0]
    async with open_store(db, clock=lambda: now[0]) as store:
        study = await store.create_study(spec.name, str(path), spec=spec.to_dict(),
                                         identity=spec.identity(),
                                         direction=spec.objective.direction,
                                         metric=spec.objective.metric)
        trial = await store.create_trial(study.id, {"x": 0.5})
        await store.transition(trial.id, TrialState.RUNNING, placement="cpu:0")
        now[0] += NIGHT
        await store.transition(trial.id, TrialState.COMPLETE, value=0.25)


async def test_at_a_start_the_study_that_ran_less_before_goes_first(tmp_path: Path) -> None:
    # One slot, both files there at the start: every study holds nothing, and "a", read first,
    # took the slot at every start, however much it had run before.
    db = tmp_path / ".hpod" / "hpod.db"
    await seed_a_night_of_a(db, write_study(tmp_path, "a", quadratic_study(trials=2,
                                                                           parallel=1)))
    write_study(tmp_path, "b", quadratic_study(trials=1, parallel=1))
    await Daemon(DaemonConfig(db_path=db, folder=tmp_path, slots=1, exit_when_idle=True)).run()

    _, a_trials = study_and_trials(db, "a")
    _, b_trials = study_and_trials(db, "b")
    assert [t.state.value for t in a_trials + b_trials] == ["complete"] * 3
    assert b_trials[0].started_at < a_trials[1].started_at
