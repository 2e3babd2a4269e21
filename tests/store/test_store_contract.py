"""The store's contract for studies and trials, over a real SQLite file.

Reads go through the `view` fixture, so each read assertion runs against the writer and against
a separate read-only StoreReader (they share their SQL; this checks they share the results).
"""

from __future__ import annotations

import asyncio
import itertools

import numpy as np
import pytest
from hpod.store import (
    ALLOWED_TRANSITIONS,
    UNSET,
    Conflict,
    Direction,
    EventLevel,
    InvalidTransition,
    NotFound,
    StudyState,
    TrialCounts,
    TrialState,
)

# --- studies ----------------------------------------------------------------------------------


async def test_create_study_returns_the_stored_record(store, view, clock):
    spec = {"metric": "loss", "space": {"lr": [1e-4, 0.1], "layers": [1, 2]}, "x": float("inf")}
    created = await store.create_study(
        "mnist", "studies/mnist.toml", spec=spec, identity="abc", direction=Direction.MAXIMIZE,
        metric="accuracy",
    )  # fmt: skip

    assert created.name == "mnist"
    assert created.path == "studies/mnist.toml"
    assert created.state is StudyState.RUNNING
    assert created.spec == spec
    assert (created.identity, created.direction, created.metric) == ("abc", "maximize", "accuracy")
    assert created.error is None
    assert created.created_at == created.updated_at == clock.now
    assert created.finished_at is None
    assert await view.get_study(created.id) == created
    assert await view.find_study("mnist") == created


async def test_an_invalid_study_is_stored_with_its_error_and_no_spec(store, view):
    created = await store.create_study(
        "broken", "broken.toml", spec=None, identity="", direction=Direction.MINIMIZE,
        metric="loss", state=StudyState.INVALID, error="line 3: `space` is missing",
    )  # fmt: skip
    stored = await view.get_study(created.id)
    assert (stored.state, stored.spec, stored.error) == (
        StudyState.INVALID, None, "line 3: `space` is missing",
    )  # fmt: skip


async def test_missing_studies(view):
    assert await view.find_study("nope") is None
    with pytest.raises(NotFound, match="no study with id 42"):
        await view.get_study(42)


async def test_a_duplicate_study_name_is_a_conflict_and_changes_nothing(store, view, make_study):
    first = await make_study("mnist")
    with pytest.raises(Conflict, match="'mnist' already exists"):
        await make_study("mnist", identity="other")
    assert await view.list_studies() == [first]


async def test_list_studies_in_creation_order(store, view, make_study):
    created = [await make_study(name) for name in ("zeta", "alpha", "mu")]
    assert await view.list_studies() == created


async def test_update_study_changes_only_the_given_fields(store, view, make_study, clock):
    study = await make_study("s", error=None)
    clock.advance(5)
    updated = await store.update_study(study.id, identity="id-1", path="moved.toml", metric="acc")

    assert (updated.identity, updated.path, updated.metric) == ("id-1", "moved.toml", "acc")
    assert updated.updated_at == clock.now
    unchanged = ("id", "name", "state", "spec", "direction", "error", "created_at", "finished_at")
    for field in unchanged:
        assert getattr(updated, field) == getattr(study, field), field
    assert await view.get_study(study.id) == updated


async def test_update_study_none_clears_and_unset_keeps(store, make_study):
    study = await make_study(state=StudyState.INVALID, error="bad", spec=None)
    fixed = await store.update_study(
        study.id, state=StudyState.RUNNING, error=None, spec={"a": 1}, direction=Direction.MAXIMIZE
    )
    assert (fixed.state, fixed.error, fixed.spec, fixed.direction) == (
        StudyState.RUNNING, None, {"a": 1}, Direction.MAXIMIZE,
    )  # fmt: skip
    same = await store.update_study(study.id, error=UNSET)
    assert same.error is None and same.spec == {"a": 1}


@pytest.mark.parametrize("final", [StudyState.COMPLETE, StudyState.STOPPED, StudyState.FAILED])
async def test_finished_at_follows_the_study_state(store, make_study, clock, final):
    study = await make_study()
    clock.advance()
    paused = await store.update_study(study.id, state=StudyState.PAUSED)
    assert paused.finished_at is None
    clock.advance()
    done = await store.update_study(study.id, state=final)
    assert done.finished_at == clock.now
    clock.advance()
    again = await store.update_study(study.id, state=final)  # a restart finding it so
    assert again.finished_at == done.finished_at
    clock.advance()
    resumed = await store.update_study(study.id, state=StudyState.RUNNING)
    assert resumed.finished_at is None


async def test_update_of_a_missing_study_raises(store):
    with pytest.raises(NotFound):
        await store.update_study(7, state=StudyState.PAUSED)


async def test_update_study_rejects_a_bad_state(store, make_study):
    study = await make_study()
    with pytest.raises(ValueError):
        await store.update_study(study.id, state="sleeping")


async def test_forget_study_deletes_only_a_study_that_never_had_a_definition(store, view,
                                                                            make_study):
    broken = await make_study("broken", state=StudyState.INVALID, error="bad", spec=None)
    valid = await make_study("valid")
    # A never-valid record that somehow has a trial is data too: never deleted.
    odd = await make_study("odd", state=StudyState.INVALID, error="bad", spec=None)
    await store.create_trial(odd.id, {"lr": 0.1})
    await store.record_event(EventLevel.ERROR, "broken.toml: bad", study_id=broken.id)

    assert await store.forget_study(broken.id) is True
    assert await store.forget_study(valid.id) is False
    assert await store.forget_study(odd.id) is False
    assert await store.forget_study(broken.id) is False  # already gone
    assert [s.name for s in await view.list_studies()] == ["valid", "odd"]
    (event,) = await view.list_events()
    assert (event.message, event.study_id) == ("broken.toml: bad", None)


# --- trials -----------------------------------------------------------------------------------


async def test_trials_are_numbered_per_study(store, view, make_study, clock):
    a, b = await make_study(), await make_study()
    numbers = []
    for study in (a, b, a, a, b):
        trial = await store.create_trial(study.id, {"lr": 0.1})
        numbers.append((study.id, trial.number))
    assert numbers == [(a.id, 0), (b.id, 0), (a.id, 1), (a.id, 2), (b.id, 1)]
    first = await view.get_trial_by_number(a.id, 0)
    assert first.state is TrialState.QUEUED
    assert (first.attempt, first.value, first.last_step, first.started_at) == (0, None, None, None)
    assert first.created_at == clock.now


async def test_concurrent_create_trial_never_reuses_a_number(store, make_study):
    study = await make_study()
    trials = await asyncio.gather(*(store.create_trial(study.id, {"i": i}) for i in range(40)))
    assert sorted(t.number for t in trials) == list(range(40))


async def test_params_round_trip_including_numpy_scalars(store, view, make_study):
    study = await make_study()
    params = {"lr": np.float64(0.25), "layers": np.int64(3), "act": "relu", "flag": True}
    trial = await store.create_trial(study.id, params)
    stored = await view.get_trial(trial.id)
    assert stored.params == {"lr": 0.25, "layers": 3, "act": "relu", "flag": True}
    assert type(stored.params["layers"]) is int


async def test_the_suggester_state_is_saved_with_the_trial_it_proposed(store, make_study):
    study, other = await make_study(), await make_study()
    assert await store.suggester_state(study.id) is None
    first = {"gains": [0.5, -1.25], "lam": [np.float64(2.0)]}
    await store.create_trial(study.id, {"i": 0}, suggester_state=first)
    assert await store.suggester_state(study.id) == {"gains": [0.5, -1.25], "lam": [2.0]}
    # A trial without a state (an enqueued point) keeps the last one; runs replace it.
    await store.create_trial(study.id, {"i": 1})
    assert (await store.suggester_state(study.id))["gains"] == [0.5, -1.25]
    await store.create_runs(study.id, {"i": 2}, 2, suggester_state={"gains": [1.0]})
    assert await store.suggester_state(study.id) == {"gains": [1.0]}
    assert await store.suggester_state(other.id) is None
    await store.set_suggester_state(study.id, None)
    assert await store.suggester_state(study.id) is None
    await store.set_suggester_state(other.id, {"gains": [2.0]})
    assert await store.suggester_state(other.id) == {"gains": [2.0]}
    with pytest.raises(NotFound):
        await store.suggester_state(99)
    with pytest.raises(NotFound):
        await store.set_suggester_state(99, None)


async def test_a_state_that_cannot_be_stored_leaves_no_trial(store, make_study):
    study = await make_study()
    with pytest.raises(TypeError):
        await store.create_trial(study.id, {"i": 0}, suggester_state={"bad": object()})
    assert await store.list_trials(study.id) == []


async def test_create_trial_for_a_missing_study_raises(store):
    with pytest.raises(NotFound):
        await store.create_trial(99, {})


async def test_missing_trials(view, make_study):
    study = await make_study()
    with pytest.raises(NotFound, match="no trial with id 5"):
        await view.get_trial(5)
    with pytest.raises(NotFound, match="no trial number 3"):
        await view.get_trial_by_number(study.id, 3)


async def test_list_and_count_trials_by_state(store, view, make_study, make_trial):
    study = await make_study()
    other = await make_study()
    wanted = [TrialState.QUEUED, TrialState.RUNNING, TrialState.COMPLETE, TrialState.RUNNING]
    trials = [await make_trial(s, study_id=study.id) for s in wanted]
    await make_trial(TrialState.RUNNING, study_id=other.id)

    assert await view.list_trials(study.id) == [await view.get_trial(t.id) for t in trials]
    running = await view.list_trials(study.id, states=[TrialState.RUNNING])
    assert [t.number for t in running] == [1, 3]
    several = await view.list_trials(study.id, states={TrialState.QUEUED, TrialState.COMPLETE})
    assert [t.number for t in several] == [0, 2]
    assert await view.list_trials(study.id, states=[]) == []
    assert await view.count_trials(study.id) == TrialCounts(queued=1, running=2, complete=1)
    assert (await view.count_trials(study.id)).total == 4
    assert await view.count_trials(12345) == TrialCounts()


# --- transitions ------------------------------------------------------------------------------

_ALL_MOVES = list(itertools.product(TrialState, TrialState))


@pytest.mark.parametrize(("start", "to"), _ALL_MOVES, ids=[f"{a}->{b}" for a, b in _ALL_MOVES])
async def test_every_move_in_the_table_works_and_every_other_raises(store, make_trial, start, to):
    trial = await make_trial(start)
    assert trial.state is start
    if to in ALLOWED_TRANSITIONS[start]:
        moved = await store.transition(trial.id, to)
        assert moved.state is to
        assert (await store.get_trial(trial.id)).state is to
    else:
        with pytest.raises(InvalidTransition) as raised:
            await store.transition(trial.id, to)
        message = str(raised.value)
        assert f"trial {trial.number}" in message
        assert f"from {start.value} to {to.value}" in message
        assert await store.get_trial(trial.id) == trial


async def test_running_sets_started_at_and_finishing_sets_finished_at(store, make_trial, clock):
    trial = await make_trial()
    clock.advance()
    running = await store.transition(trial.id, TrialState.RUNNING, placement="gpu:1")
    assert running.placement == "gpu:1"
    assert (running.started_at, running.finished_at) == (clock.now, None)
    started = clock.now
    clock.advance()
    done = await store.transition(trial.id, TrialState.COMPLETE, value=0.5, exit_code=0)
    assert (done.started_at, done.finished_at) == (started, clock.now)
    assert (done.value, done.exit_code, done.placement) == (0.5, 0, "gpu:1")


async def test_retry_and_requeue_count_attempts(store, make_trial, clock):
    trial = await make_trial(TrialState.RUNNING)
    failed = await store.transition(trial.id, TrialState.FAILED, reason="exit code 1", exit_code=1)
    assert failed.finished_at == clock.now and failed.attempt == 0
    retried = await store.transition(trial.id, TrialState.QUEUED)
    assert (retried.attempt, retried.finished_at) == (1, None)
    assert (retried.reason, retried.exit_code) == ("exit code 1", 1)  # kept unless given

    await store.transition(trial.id, TrialState.RUNNING)
    await store.transition(trial.id, TrialState.INTERRUPTED)
    requeued = await store.transition(trial.id, TrialState.QUEUED, reason=None, exit_code=None)
    assert (requeued.attempt, requeued.reason, requeued.exit_code) == (2, None, None)

    await store.transition(trial.id, TrialState.RUNNING)
    await store.transition(trial.id, TrialState.PAUSED, checkpoint="ckpt/3",
                           reason="paused by the asha scheduler at step 3")
    promoted = await store.transition(trial.id, TrialState.QUEUED)
    assert (promoted.attempt, promoted.checkpoint) == (2, "ckpt/3")  # a promotion is no retry
    # Running again, its last run's ending no longer describes it.
    resumed = await store.transition(trial.id, TrialState.RUNNING)
    assert (resumed.reason, resumed.exit_code) == (None, None)


async def test_last_trial_starts_are_each_study_s_latest_run_start(store, make_study, clock):
    a, b, c = await make_study("a"), await make_study("b"), await make_study("c")
    first = await store.create_trial(a.id, {"lr": 0.01})
    await store.transition(first.id, TrialState.RUNNING)  # at 1000
    clock.advance(100)
    second = await store.create_trial(a.id, {"lr": 0.02})
    await store.transition(second.id, TrialState.RUNNING)  # at 1100
    clock.advance(100)
    await store.transition(second.id, TrialState.COMPLETE)
    # Paused before a's latest, resumed after it: its latest run is what counts, here and for
    # the study, not the start of its first run.
    await store.transition(first.id, TrialState.PAUSED)
    clock.advance(300)
    await store.transition(first.id, TrialState.RUNNING)  # at 1500
    clock.advance(50)
    await store.transition(first.id, TrialState.STOPPED)
    run_b = await store.create_trial(b.id, {"lr": 0.1})
    await store.transition(run_b.id, TrialState.RUNNING)  # at 1550
    await store.transition(run_b.id, TrialState.INTERRUPTED)  # a daemon's stop: its start stays
    await store.create_trial(b.id, {"lr": 0.2})  # queued, never ran
    await store.create_trial(c.id, {"lr": 0.3})  # c never ran: no entry
    assert await store.last_trial_starts() == {"a": 1500.0, "b": 1550.0}


async def test_transition_of_a_missing_trial_raises(store):
    with pytest.raises(NotFound):
        await store.transition(404, TrialState.RUNNING)


async def test_set_checkpoint(store, view, make_trial):
    trial = await make_trial(TrialState.RUNNING)
    await store.set_checkpoint(trial.id, "trials/0/ckpt-10")
    assert (await view.get_trial(trial.id)).checkpoint == "trials/0/ckpt-10"
    with pytest.raises(NotFound):
        await store.set_checkpoint(999, "x")
