"""StoreReader.metric_values: one metric's rows as plain tuples, for a reader following a trial."""

from __future__ import annotations

import math

from hpod.store import MetricPoint, StoreReader, TrialState


async def test_metric_values_are_one_metrics_new_rows_in_report_order(
    store, db_path, make_trial
) -> None:
    trial = await make_trial(TrialState.RUNNING)
    other = await make_trial(TrialState.RUNNING, study_id=trial.study_id)
    points = [MetricPoint(trial.id, 0, "loss", 2.0, 1.0),
              MetricPoint(trial.id, 0, "acc", 0.1, 1.0),
              MetricPoint(other.id, 0, "loss", 9.0, 1.0),
              MetricPoint(trial.id, 1, "loss", 1.5, 2.0),
              MetricPoint(trial.id, 2, "loss", math.nan, 3.0)]  # fmt: skip
    await store.add_metrics(points, {trial.id: (2, 1.5), other.id: (0, 9.0)})
    with StoreReader(db_path) as reader:
        rows = reader.metric_values(trial.id, "loss")
        assert [(step, value) for _, step, value in rows[:2]] == [(0, 2.0), (1, 1.5)]
        assert rows[2][1] == 2 and math.isnan(rows[2][2])  # a NaN report reads back as NaN
        # The row ids are those of metrics(): a cursor works with either.
        loss_ids = [row_id for row_id, p in reader.metrics(trial.id) if p.name == "loss"]
        assert [row_id for row_id, _, _ in rows] == loss_ids
        assert [value for _, _, value in reader.metric_values(trial.id, "acc")] == [0.1]
        assert reader.metric_values(trial.id, "loss", since_id=rows[1][0])[0][1] == 2
        assert reader.metric_values(trial.id, "loss", since_id=rows[-1][0]) == []
        assert reader.metric_values(trial.id, "missing") == []
        assert reader.metric_values(other.id, "loss")[0][1:] == (0, 9.0)


async def test_values_at_step_are_each_trials_latest_report_at_that_step_in_one_study(
    store, db_path, make_trial
) -> None:
    trial = await make_trial(TrialState.RUNNING)
    retried = await make_trial(TrialState.RUNNING, study_id=trial.study_id)
    silent = await make_trial(TrialState.RUNNING, study_id=trial.study_id)
    elsewhere = await make_trial(TrialState.RUNNING)  # another study
    points = [MetricPoint(trial.id, 3, "loss", 0.5, 1.0),
              MetricPoint(trial.id, 3, "acc", 0.9, 1.0),
              MetricPoint(trial.id, 4, "loss", 0.4, 2.0),
              MetricPoint(retried.id, 3, "loss", 0.8, 1.0),
              MetricPoint(retried.id, 3, "loss", math.nan, 5.0),  # its retry, reported later
              MetricPoint(silent.id, 2, "loss", 0.1, 1.0),
              MetricPoint(elsewhere.id, 3, "loss", 0.2, 1.0)]  # fmt: skip
    await store.add_metrics(points, {})
    with StoreReader(db_path) as reader:
        at3 = reader.values_at_step(trial.study_id, "loss", 3)
        assert set(at3) == {trial.id, retried.id}
        assert at3[trial.id] == 0.5 and math.isnan(at3[retried.id])
        assert reader.values_at_step(trial.study_id, "acc", 3) == {trial.id: 0.9}
        assert reader.values_at_step(trial.study_id, "loss", 7) == {}


async def test_steps_reported_count_each_trial_once_per_step_and_settled_ones_apart(
    store, db_path, make_trial
) -> None:
    stopped = await make_trial(TrialState.RUNNING)
    paused = await make_trial(TrialState.RUNNING, study_id=stopped.study_id)
    running = await make_trial(TrialState.RUNNING, study_id=stopped.study_id)
    elsewhere = await make_trial(TrialState.RUNNING)  # another study
    points = [MetricPoint(stopped.id, 1, "loss", 0.5, 1.0),
              MetricPoint(stopped.id, 1, "loss", 0.4, 2.0),  # a retried step: one trial
              MetricPoint(stopped.id, 3, "loss", 0.3, 3.0),
              MetricPoint(paused.id, 1, "loss", 0.6, 1.0),
              MetricPoint(paused.id, 1, "acc", 0.6, 1.0),
              MetricPoint(running.id, 0, "loss", 0.9, 1.0),
              MetricPoint(elsewhere.id, 1, "loss", 0.2, 1.0)]  # fmt: skip
    await store.add_metrics(points, {})
    await store.transition(stopped.id, TrialState.STOPPED)
    await store.transition(paused.id, TrialState.PAUSED)
    with StoreReader(db_path) as reader:
        assert reader.steps_reported(stopped.study_id, "loss") == {0: 1, 1: 2, 3: 1}
        # A trial still running is left out: it may be just below a rung.
        assert reader.steps_reported(stopped.study_id, "loss", settled=True) == {1: 2, 3: 1}
        assert reader.steps_reported(stopped.study_id, "acc") == {1: 1}
