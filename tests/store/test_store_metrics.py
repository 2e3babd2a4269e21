"""Metrics and progress, best_trial, startup reconciliation and events."""

from __future__ import annotations

import asyncio
import contextlib
import math

import pytest
from hpod.store import (
    INTERRUPTED_REASON,
    Conflict,
    Direction,
    EventLevel,
    MetricPoint,
    TrialState,
)

# --- metrics ----------------------------------------------------------------------------------


async def test_add_metrics_stores_points_and_progress_in_one_go(store, view, make_trial):
    a = await make_trial(TrialState.RUNNING)
    b = await make_trial(TrialState.RUNNING, study_id=a.study_id)
    points = [
        MetricPoint(a.id, 0, "loss", 2.0, 10.0),
        MetricPoint(a.id, 0, "acc", 0.1, 10.0),
        MetricPoint(b.id, 0, "loss", 3.0, 10.5),
        MetricPoint(a.id, 1, "loss", 1.5, 11.0),
    ]
    await store.add_metrics(points, {a.id: (1, 1.5), b.id: (0, None)})

    rows = await view.metrics(a.id)
    assert [p for _, p in rows] == [points[0], points[1], points[3]]
    ids = [row_id for row_id, _ in rows]
    assert ids == sorted(ids)
    assert [p for _, p in await view.metrics(b.id)] == [points[2]]
    assert ((await view.get_trial(a.id)).last_step, (await view.get_trial(a.id)).value) == (1, 1.5)
    # None means "the objective was not in this batch": last_step moves, value stays.
    assert ((await view.get_trial(b.id)).last_step, (await view.get_trial(b.id)).value) == (0, None)


async def test_metrics_since_id_reads_only_what_is_new(store, view, make_trial):
    trial = await make_trial(TrialState.RUNNING)
    await store.add_metrics(
        [MetricPoint(trial.id, s, "loss", 1.0 / (s + 1), 0.0) for s in range(3)], {}
    )
    first = await view.metrics(trial.id)
    await store.add_metrics([MetricPoint(trial.id, 3, "loss", 0.2, 1.0)], {trial.id: (3, 0.2)})
    newer = await view.metrics(trial.id, since_id=first[-1][0])
    assert [p.step for _, p in newer] == [3]
    assert await view.metrics(trial.id, since_id=newer[-1][0]) == []


async def test_metrics_of_some_names_only(store, make_trial):
    trial = await make_trial(TrialState.RUNNING)
    points = [MetricPoint(trial.id, s, name, float(s), float(s))
              for s in range(3) for name in ("loss", "acc", "epoch", "lr")]
    await store.add_metrics(points, {})
    rows = await store.metrics(trial.id, names=["loss", "epoch"])
    assert [p for _, p in rows] == [p for p in points if p.name in ("loss", "epoch")]
    assert await store.metrics(trial.id, names=[]) == []
    since = await store.metrics(trial.id, since_id=rows[1][0], names=["acc"])
    assert [(p.step, p.name) for _, p in since] == [(1, "acc"), (2, "acc")]


async def test_progress_keeps_the_value_when_none_and_replaces_it_otherwise(store, make_trial):
    trial = await make_trial(TrialState.RUNNING)
    await store.add_metrics([], {trial.id: (0, 0.9)})
    await store.add_metrics([], {trial.id: (1, None)})
    kept = await store.get_trial(trial.id)
    assert (kept.last_step, kept.value) == (1, 0.9)
    await store.add_metrics([], {trial.id: (2, float("nan"))})
    diverged = await store.get_trial(trial.id)
    # A NaN objective is "no usable value": SQLite stores NaN as NULL, read back as None.
    assert (diverged.last_step, diverged.value) == (2, None)


async def test_nan_and_infinities_round_trip(store, view, make_trial):
    trial = await make_trial(TrialState.RUNNING)
    values = [float("nan"), float("inf"), float("-inf"), 0.0, -1e308]
    await store.add_metrics(
        [MetricPoint(trial.id, i, "loss", v, 0.0) for i, v in enumerate(values)], {}
    )
    read = [p.value for _, p in await view.metrics(trial.id)]
    assert math.isnan(read[0])
    assert read[1:] == values[1:]


async def test_a_batch_with_an_unknown_trial_stores_nothing(store, view, make_trial):
    trial = await make_trial(TrialState.RUNNING)
    points = [MetricPoint(trial.id, 0, "loss", 1.0, 0.0), MetricPoint(9999, 0, "loss", 1.0, 0.0)]
    with pytest.raises(Conflict):
        await store.add_metrics(points, {trial.id: (0, 1.0)})
    assert await view.metrics(trial.id) == []
    assert (await view.get_trial(trial.id)).last_step is None


async def test_an_empty_batch_is_a_no_op(store, make_trial):
    trial = await make_trial(TrialState.RUNNING)
    await store.add_metrics([], {})
    assert await store.get_trial(trial.id) == trial


async def test_a_hundred_thousand_points_in_one_batch(store, view, make_trial):
    trial = await make_trial(TrialState.RUNNING)
    n = 100_000
    names = ("loss", "acc")
    points = [MetricPoint(trial.id, i // 2, names[i % 2], i * 0.5, 100.0 + i) for i in range(n)]
    await store.add_metrics(points, {trial.id: (n // 2 - 1, 0.25)})

    rows = await view.metrics(trial.id)
    assert len(rows) == n
    assert rows[0][1] == points[0] and rows[-1][1] == points[-1]
    assert sum(p.value for _, p in rows) == sum(p.value for p in points)
    assert (await view.get_trial(trial.id)).last_step == n // 2 - 1


# --- best trial -------------------------------------------------------------------------------


async def _finish(store, make_trial, study_id, value):
    trial = await make_trial(TrialState.RUNNING, study_id=study_id)
    return await store.transition(trial.id, TrialState.COMPLETE, value=value)


@pytest.mark.parametrize(
    ("direction", "best_number"), [(Direction.MINIMIZE, 1), (Direction.MAXIMIZE, 3)]
)
async def test_best_trial_ignores_nan_inf_and_unfinished(
    store, view, make_study, make_trial, direction, best_number
):
    study = await make_study(direction=direction)
    for value in (0.5, 0.1, float("nan"), 0.9, 0.1, 0.9, float("inf"), float("-inf")):
        await _finish(store, make_trial, study.id, value)  # numbers 0..7
    running = await make_trial(TrialState.RUNNING, study_id=study.id)
    await store.add_metrics([], {running.id: (3, -100.0)})  # better, but not COMPLETE
    failed = await make_trial(TrialState.RUNNING, study_id=study.id)
    await store.transition(failed.id, TrialState.FAILED, value=-100.0)

    best = await view.best_trial(study.id, direction)
    # ties (0.1 at 1 and 4, 0.9 at 3 and 5) go to the lowest number
    assert best is not None and best.number == best_number


async def test_best_trial_without_a_finite_value_is_none(store, view, make_study, make_trial):
    study = await make_study()
    assert await view.best_trial(study.id, Direction.MINIMIZE) is None
    await _finish(store, make_trial, study.id, float("nan"))
    await _finish(store, make_trial, study.id, None)
    assert await view.best_trial(study.id, Direction.MAXIMIZE) is None


# --- reconciliation ---------------------------------------------------------------------------


async def test_interrupt_running_marks_only_running_trials(store, make_study, make_trial, clock):
    study = await make_study()
    states = [TrialState.RUNNING, TrialState.QUEUED, TrialState.RUNNING, TrialState.PAUSED]
    trials = [await make_trial(s, study_id=study.id) for s in states]

    interrupted = await store.interrupt_running()

    assert [t.id for t in interrupted] == [trials[0].id, trials[2].id]
    for trial in interrupted:
        assert trial.state is TrialState.INTERRUPTED
        assert trial.reason == INTERRUPTED_REASON == "the daemon stopped while it ran"
        assert trial.finished_at is None
    assert [(await store.get_trial(t.id)).state for t in trials] == [
        TrialState.INTERRUPTED, TrialState.QUEUED, TrialState.INTERRUPTED, TrialState.PAUSED,
    ]  # fmt: skip
    assert await store.interrupt_running() == []
    requeued = await store.transition(trials[0].id, TrialState.QUEUED)
    assert requeued.attempt == 1


# --- events -----------------------------------------------------------------------------------


async def test_events_are_listed_in_order_and_filtered(store, view, make_study, make_trial, clock):
    a, b = await make_study(), await make_study()
    trial = await make_trial(study_id=a.id)
    ids = [
        await store.record_event(EventLevel.INFO, "daemon started"),
        await store.record_event(
            EventLevel.WARNING, "trial 0 crashed", study_id=a.id, trial_id=trial.id
        ),
        await store.record_event(EventLevel.ERROR, "bad file", study_id=b.id),
        await store.record_event(EventLevel.INFO, "study done", study_id=a.id),
    ]
    assert ids == sorted(ids)

    events = await view.list_events()
    assert [e.id for e in events] == ids
    second = events[1]
    assert (second.level, second.study_id, second.trial_id, second.message, second.time) == (
        EventLevel.WARNING, a.id, trial.id, "trial 0 crashed", clock.now,
    )  # fmt: skip
    assert [e.id for e in await view.list_events(since_id=ids[1])] == ids[2:]
    assert [e.id for e in await view.list_events(study_id=a.id)] == [ids[1], ids[3]]
    assert [e.id for e in await view.list_events(limit=2)] == ids[:2]
    assert [e.id for e in await view.list_events(since_id=ids[0], study_id=a.id, limit=1)] == [
        ids[1]
    ]
    serious = [EventLevel.WARNING, EventLevel.ERROR]
    assert [e.id for e in await view.list_events(levels=serious)] == ids[1:3]
    assert [e.id for e in await view.list_events(levels=serious, limit=1, newest=True)] == [
        ids[2]
    ]


async def test_the_newest_events_are_read_without_the_older_ones(store, view, make_study):
    a, b = await make_study(), await make_study()
    ids = [await store.record_event(EventLevel.INFO, f"event {n}", study_id=(a, b)[n % 2].id)
           for n in range(7)]

    newest = await view.list_events(limit=3, newest=True)
    assert [e.id for e in newest] == ids[-3:]  # still oldest first, like every other read
    assert [e.id for e in await view.list_events(study_id=a.id, limit=2, newest=True)] == [
        ids[4], ids[6]
    ]
    assert [e.id for e in await view.list_events(since_id=ids[4], limit=5, newest=True)] == (
        ids[5:]
    )
    assert [e.id for e in await view.list_events(limit=100, newest=True)] == ids
    assert await view.list_events(limit=0, newest=True) == []


async def test_an_event_for_a_missing_study_is_a_conflict(store):
    with pytest.raises(Conflict):
        await store.record_event(EventLevel.INFO, "x", study_id=77)


@pytest.mark.parametrize("yields_before_cancel", range(6))
async def test_a_cancelled_batch_is_all_or_nothing_and_the_store_goes_on(
    store, make_trial, yields_before_cancel
):
    """Cancellation lands wherever it lands (lock, BEGIN, insert, commit): never half a batch."""
    trial = await make_trial(TrialState.RUNNING)
    points = [MetricPoint(trial.id, i, "loss", 1.0, 0.0) for i in range(5_000)]
    task = asyncio.create_task(store.add_metrics(points, {trial.id: (4_999, 1.0)}))
    for _ in range(yields_before_cancel):
        await asyncio.sleep(0)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task

    stored = len(await store.metrics(trial.id))
    assert stored in (0, len(points))
    assert (await store.get_trial(trial.id)).last_step == (4_999 if stored else None)
    await store.record_event(EventLevel.INFO, "still writable")
    await store.add_metrics(points[:1], {})
    assert len(await store.metrics(trial.id)) == stored + 1


async def test_the_metric_sink_fills_up_then_writes_everything_in_bounded_transactions(
        store, make_trial):
    # A trial reporting faster than SQLite writes: its reader flushes once the sink is full
    # (so the trial waits), and each transaction holds at most CHUNK points, so a CLI command
    # waiting for the write lock never waits long.
    from hpod.ingest import CHUNK, HIGH_WATER, MetricSink

    trial = await make_trial(TrialState.RUNNING)
    sink = MetricSink(store, interval=60.0)
    sizes: list[int] = []
    add_metrics = store.add_metrics

    async def counted(points, progress):
        sizes.append(len(points))
        await add_metrics(points, progress)

    store.add_metrics = counted
    steps = HIGH_WATER // 2
    for step in range(steps):
        sink.add(trial.id, step, {"loss": 1.0 / (step + 1), "acc": 0.5}, "loss")
    assert sink.full
    await sink.flush()
    assert not sink.full and sink.written == 2 * steps
    assert max(sizes) <= CHUNK and sum(sizes) == 2 * steps
    stored = await store.get_trial(trial.id)
    assert (stored.last_step, stored.value) == (steps - 1, 1.0 / steps)
    assert len(await store.metrics(trial.id)) == 2 * steps


async def test_a_flush_cancelled_midway_leaves_the_rest_to_the_next_one(store, make_trial):
    # The back-pressure flush runs in a trial's reader, which is cancelled when the trial's pipe
    # will not drain: the points not yet written, and every trial's progress, were dropped.
    from hpod.ingest import CHUNK, MetricSink

    trial = await make_trial(TrialState.RUNNING)
    sink = MetricSink(store, interval=60.0)
    for step in range(CHUNK * 2 + 5):
        sink.add(trial.id, step, {"loss": float(step)}, "loss")
    add_metrics, calls = store.add_metrics, []
    stuck, reached = asyncio.Event(), asyncio.Event()

    async def second_call_hangs(points, progress):
        calls.append(len(points))
        if len(calls) == 2:
            reached.set()
            await stuck.wait()  # a slow disk: the reader is given up on meanwhile
        await add_metrics(points, progress)

    store.add_metrics = second_call_hangs
    flushing = asyncio.create_task(sink.flush())
    await asyncio.wait_for(reached.wait(), 30)
    flushing.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await flushing
    store.add_metrics = add_metrics
    await sink.flush()
    steps = [point.step for _id, point in await store.metrics(trial.id)]
    assert steps == list(range(CHUNK * 2 + 5))  # each once, none lost
    assert (await store.get_trial(trial.id)).last_step == CHUNK * 2 + 4
