"""The feed's watches against a real database: they read only what is new and say only what
changed. No app runs here: a watch's poll() returns the messages the feed would post."""

from __future__ import annotations

import pytest
from conftest import SPEC, Seeded, curve
from hpod.store import (
    CommandAction,
    CommandState,
    Direction,
    EventLevel,
    MetricPoint,
    StoreReader,
    TrialState,
    open_store,
    submit_command,
)
from hpod.tui import watch_study
from hpod.tui.messages import (
    CommandsUpdated,
    CurvesUpdated,
    EventsAppended,
    StepValues,
    StudiesUpdated,
    StudyUpdated,
    TrialEvents,
    TrialLog,
    TrialMetrics,
    TrialsUpdated,
    TrialUpdated,
)
from hpod.tui.watch_events import CommandsInterest, EventsInterest
from hpod.tui.watch_overview import OverviewInterest
from hpod.tui.watch_study import StudyInterest
from hpod.tui.watch_trial import LogFollower, TrialInterest


def of(messages, kind):
    return [m for m in messages if isinstance(m, kind)]


async def test_the_study_watch_sends_everything_once_then_only_changes(seeded: Seeded) -> None:
    watch = StudyInterest(seeded.study_id).open()
    with StoreReader(seeded.db_path) as reader:
        first = watch.poll(reader, changed=True)
        (summary,) = of(first, StudyUpdated)
        assert summary.summary.counts.running == 4
        (trials,) = of(first, TrialsUpdated)
        assert sorted(t.number for t in trials.trials) == list(range(12))
        best_of_11 = min(curve(11, s) for s in range(12))
        assert trials.stats[seeded.trials[11].id].best == pytest.approx(best_of_11)
        assert not trials.loading
        assert watch.poll(reader, changed=False) == []
        assert watch.poll(reader, changed=True) == []  # nothing new was written

        running = seeded.trials[10]
        async with open_store(seeded.db_path, clock=seeded.clock) as store:
            await store.add_metrics([MetricPoint(running.id, 9, "loss", -1.0, 0.0)],
                                    {running.id: (9, -1.0)})  # fmt: skip
            await store.transition(running.id, TrialState.COMPLETE)
            done = await store.create_trial(seeded.study_id, {"lr": 0.1}, state=TrialState.COMPLETE)
        update = watch.poll(reader, changed=True)
        (trials,) = of(update, TrialsUpdated)
        assert {t.number for t in trials.trials} == {10, done.number}
        assert trials.stats == {running.id: watch_study.TrialStats(-1.0, 9, 10)}
        (summary,) = of(update, StudyUpdated)
        assert summary.summary.best.number == 10


async def test_curves_are_sent_whole_once_then_point_by_point(seeded: Seeded) -> None:
    trial = seeded.trials[11]
    watch = StudyInterest(seeded.study_id).open()
    with StoreReader(seeded.db_path) as reader:
        watch.poll(reader, changed=True)
        watch.retarget(StudyInterest(seeded.study_id, frozenset({trial.id})))
        (curves,) = of(watch.poll(reader, changed=False), CurvesUpdated)
        assert curves.reset == {trial.id}
        assert [p.x for p in curves.points[trial.id]] == list(range(12))

        async with open_store(seeded.db_path, clock=seeded.clock) as store:
            await store.add_metrics([MetricPoint(trial.id, 12, "loss", 0.5, 0.0),
                                     MetricPoint(trial.id, 12, "acc", 0.5, 0.0)],
                                    {trial.id: (12, 0.5)})  # fmt: skip
        (curves,) = of(watch.poll(reader, changed=True), CurvesUpdated)
        assert curves.reset == frozenset()
        assert [(p.x, p.y) for p in curves.points[trial.id]] == [(12, 0.5)]


async def test_a_huge_history_is_read_over_several_polls(seeded: Seeded, monkeypatch) -> None:
    monkeypatch.setattr(watch_study, "BACKFILL_ROWS_PER_POLL", 10)
    watch = StudyInterest(seeded.study_id).open()
    stats = {}
    polls = 0
    with StoreReader(seeded.db_path) as reader:
        messages = watch.poll(reader, changed=True)
        while True:
            polls += 1
            (trials,) = of(messages, TrialsUpdated)
            stats.update(trials.stats)
            if not watch.busy:
                assert not trials.loading
                break
            assert trials.loading
            messages = watch.poll(reader, changed=False)
    assert polls > 3
    assert set(stats) == {t.id for t in seeded.trials.values()}


async def test_values_at_a_step_are_sent_only_when_asked_and_at_most_every_few_seconds(
        seeded: Seeded) -> None:
    now = [0.0]
    watch = watch_study.StudyWatch(StudyInterest(seeded.study_id), clock=lambda: now[0])
    with StoreReader(seeded.db_path) as reader:
        assert of(watch.poll(reader, changed=True), StepValues) == []  # not asked for
        watch.retarget(StudyInterest(seeded.study_id, step_values=True))
        (at,) = of(watch.poll(reader, changed=False), StepValues)
        # Every trial reported steps 0 to 2, fewer went further: the furthest of those.
        assert at.step == 2
        assert at.values == {t.id: pytest.approx(curve(n, 2)) for n, t in seeded.trials.items()}

        running = seeded.trials[11]
        async with open_store(seeded.db_path, clock=seeded.clock) as store:
            await store.add_metrics([MetricPoint(running.id, 2, "loss", -1.0, 0.0)],
                                    {running.id: (2, -1.0)})  # a retried step: the latest counts
        assert of(watch.poll(reader, changed=True), StepValues) == []  # too soon after the last
        now[0] += watch_study.STEP_VALUES_EVERY_S
        (at,) = of(watch.poll(reader, changed=False), StepValues)  # late, but not lost
        assert at.values[running.id] == -1.0
        now[0] += watch_study.STEP_VALUES_EVERY_S
        assert watch.poll(reader, changed=False) == []  # nothing was written since

        watch.retarget(StudyInterest(seeded.study_id))
        now[0] += watch_study.STEP_VALUES_EVERY_S
        async with open_store(seeded.db_path, clock=seeded.clock) as store:
            await store.add_metrics([MetricPoint(running.id, 2, "loss", -2.0, 0.0)],
                                    {running.id: (2, -2.0)})
        assert of(watch.poll(reader, changed=True), StepValues) == []  # no longer asked for


async def test_values_at_a_step_are_read_only_when_this_study_changed_and_sent_once(
        seeded: Seeded) -> None:
    now = [0.0]
    watch = watch_study.StudyWatch(StudyInterest(seeded.study_id, step_values=True),
                                   clock=lambda: now[0])
    with StoreReader(seeded.db_path) as reader:
        (first,) = of(watch.poll(reader, changed=True), StepValues)
        async with open_store(seeded.db_path, clock=seeded.clock) as store:
            other = await store.create_study(  # another study: nothing of this one changed
                "other", str(seeded.db_path.parent.parent / "other.toml"), spec=SPEC,
                identity="z", direction=Direction.MINIMIZE, metric="loss")
            await store.create_trial(other.id, {"lr": 0.01, "depth": 2, "opt": "adam"})
        now[0] += watch_study.STEP_VALUES_EVERY_S
        assert of(watch.poll(reader, changed=True), StepValues) == []

        running = seeded.trials[11]
        async with open_store(seeded.db_path, clock=seeded.clock) as store:
            await store.add_metrics([MetricPoint(running.id, 12, "loss", 0.5, 0.0)],
                                    {running.id: (12, 0.5)})  # nothing new at step 2
        now[0] += watch_study.STEP_VALUES_EVERY_S
        assert of(watch.poll(reader, changed=True), StepValues) == []  # the same values

        watch.retarget(StudyInterest(seeded.study_id))
        watch.retarget(StudyInterest(seeded.study_id, step_values=True))
        # Asked again: the screen kept what was sent, and nothing changed since: no read.
        assert of(watch.poll(reader, changed=False), StepValues) == []
        async with open_store(seeded.db_path, clock=seeded.clock) as store:
            await store.add_metrics([MetricPoint(running.id, 2, "loss", -3.0, 0.0)],
                                    {running.id: (2, -3.0)})
        assert of(watch.poll(reader, changed=True), StepValues) == []  # due, not yet
        now[0] += watch_study.STEP_VALUES_EVERY_S
        (again,) = of(watch.poll(reader, changed=False), StepValues)
        assert again.values[running.id] == -3.0 and again != first


def count_reads(reader: StoreReader, monkeypatch, now: list[float] | None = None,
                seconds: float = 0.0) -> list[int]:
    """Count the reads of values at a step (each `seconds` long on the clock `now`)."""
    reads = [0]
    real = reader.values_at_step

    def counted(*args, **kwargs):
        reads[0] += 1
        if now is not None:
            now[0] += seconds
        return real(*args, **kwargs)

    monkeypatch.setattr(reader, "values_at_step", counted)
    return reads


async def test_loading_an_old_study_is_not_a_change_that_reads_values_again(
        seeded: Seeded, monkeypatch) -> None:
    monkeypatch.setattr(watch_study, "BACKFILL_ROWS_PER_POLL", 10)
    now = [0.0]
    watch = watch_study.StudyWatch(StudyInterest(seeded.study_id, step_values=True),
                                   clock=lambda: now[0])
    with StoreReader(seeded.db_path) as reader:
        reads = count_reads(reader, monkeypatch)
        assert of(watch.poll(reader, changed=True), StepValues)
        while watch.busy:  # the finished trials' old reports, a few per poll
            now[0] += watch_study.STEP_VALUES_EVERY_S
            watch.poll(reader, changed=False)
        now[0] += watch_study.STEP_VALUES_EVERY_S
        watch.poll(reader, changed=False)
        assert reads[0] == 1


async def test_coming_back_to_the_chart_reads_nothing_until_the_study_changes(
        seeded: Seeded, monkeypatch) -> None:
    now = [0.0]
    watch = watch_study.StudyWatch(StudyInterest(seeded.study_id, step_values=True),
                                   clock=lambda: now[0])
    with StoreReader(seeded.db_path) as reader:
        reads = count_reads(reader, monkeypatch, now, seconds=2.0)  # five million rows
        watch.poll(reader, changed=True)
        for _ in range(5):  # params -> curves -> params, nothing written
            now[0] += 1.0
            watch.retarget(StudyInterest(seeded.study_id))
            watch.retarget(StudyInterest(seeded.study_id, step_values=True))
            watch.poll(reader, changed=True)  # the feed marks a retargeted watch fresh
        assert reads[0] == 1


async def test_a_report_that_is_no_new_best_still_makes_values_due(seeded: Seeded) -> None:
    now = [0.0]
    watch = watch_study.StudyWatch(StudyInterest(seeded.study_id, step_values=True),
                                   clock=lambda: now[0])
    with StoreReader(seeded.db_path) as reader:
        assert of(watch.poll(reader, changed=True), StepValues)
        running = seeded.trials[11]
        async with open_store(seeded.db_path, clock=seeded.clock) as store:
            await store.add_metrics([MetricPoint(running.id, 2, "loss", 99.0, 0.0)],
                                    {running.id: (2, 99.0)})
        now[0] += watch_study.STEP_VALUES_EVERY_S
        (at,) = of(watch.poll(reader, changed=True), StepValues)
        assert at.values[running.id] == 99.0


async def test_a_trial_just_started_does_not_move_the_step_compared(seeded: Seeded) -> None:
    now = [0.0]
    watch = watch_study.StudyWatch(StudyInterest(seeded.study_id, step_values=True),
                                   clock=lambda: now[0])
    with StoreReader(seeded.db_path) as reader:
        (at,) = of(watch.poll(reader, changed=True), StepValues)
        assert at.step == 2
        async with open_store(seeded.db_path, clock=seeded.clock) as store:
            trials = [await store.create_trial(seeded.study_id, {"lr": 0.01, "depth": 2,
                                                                 "opt": "adam"})
                      for _ in range(2)]
            for trial in trials:
                await store.transition(trial.id, TrialState.RUNNING)
                await store.add_metrics([MetricPoint(trial.id, 0, "loss", 0.9, 0.0)],
                                        {trial.id: (0, 0.9)})  # their first reports
        now[0] += watch_study.STEP_VALUES_EVERY_S
        # Step 0 now has the most reports (14 against 12 at step 2), two of them from trials
        # still running: counted over the settled trials, the step stays where it was, and its
        # values did not change, so nothing is sent.
        assert of(watch.poll(reader, changed=True), StepValues) == []
        async with open_store(seeded.db_path, clock=seeded.clock) as store:
            await store.add_metrics([MetricPoint(trials[0].id, 2, "loss", 0.7, 0.0)],
                                    {trials[0].id: (2, 0.7)})
        now[0] += watch_study.STEP_VALUES_EVERY_S
        (at,) = of(watch.poll(reader, changed=True), StepValues)
        assert at.step == 2 and at.values[trials[0].id] == 0.7


async def test_the_overview_watch_reports_changed_summaries(seeded: Seeded) -> None:
    watch = OverviewInterest().open()
    with StoreReader(seeded.db_path) as reader:
        (first,) = watch.poll(reader, changed=True)
        assert isinstance(first, StudiesUpdated)
        by_name = {s.study.name: s for s in first.summaries}
        assert by_name["broken"].study.error is not None
        assert by_name["demo"].placements == ("gpu:1", "gpu:0")
        assert watch.poll(reader, changed=True) == []


async def test_the_trial_watch_follows_record_metrics_events_and_logs(
    seeded: Seeded, tmp_path
) -> None:
    trial = seeded.trials[11]
    log_dir = tmp_path / "logs"
    log_dir.mkdir()
    watch = TrialInterest(trial.id, seeded.study_id, log_dir).open()
    with StoreReader(seeded.db_path) as reader:
        first = watch.poll(reader, changed=True)
        assert of(first, TrialUpdated)[0].trial == trial
        (metrics,) = of(first, TrialMetrics)
        assert metrics.reset and len(metrics.points) == 24  # loss and acc, 12 steps
        assert of(first, TrialLog) == []  # no log file yet
        (log_dir / "stdout.log").write_text("hello\n")
        async with open_store(seeded.db_path, clock=seeded.clock) as store:
            await store.record_event(EventLevel.WARNING, "garbage on the pipe",
                                     study_id=seeded.study_id, trial_id=trial.id)  # fmt: skip
        update = watch.poll(reader, changed=True)
        assert [e.message for e in of(update, TrialEvents)[0].events] == ["garbage on the pipe"]
        assert of(update, TrialMetrics) == []
        assert [(m.stream, m.text, m.reset) for m in of(update, TrialLog)] == [
            ("stdout", "hello\n", True)
        ]


def test_a_log_follower_sends_the_tail_then_appends_and_notices_truncation(tmp_path) -> None:
    path = tmp_path / "out.log"
    follower = LogFollower(path, max_bytes=16)
    assert follower.read() is None
    path.write_bytes(b"line one\nline two\nline three\n")
    text, reset = follower.read()
    assert reset and text == "line three\n"  # the tail, from the first whole line
    assert follower.read() is None
    with path.open("ab") as f:
        f.write("é".encode()[:1])  # half of a two-byte character
    assert follower.read() == ("", False)
    with path.open("ab") as f:
        f.write("é".encode()[1:] + b"\n")
    assert follower.read() == ("é\n", False)
    path.write_bytes(b"new\n")  # truncated and rewritten
    assert follower.read() == ("new\n", True)


async def test_events_arrive_in_pages_with_names(seeded: Seeded, monkeypatch) -> None:
    from hpod.tui import watch_events

    monkeypatch.setattr(watch_events, "EVENT_PAGE", 2)
    watch = EventsInterest().open()
    rows = []
    with StoreReader(seeded.db_path) as reader:
        for _ in range(5):
            for message in watch.poll(reader, changed=False):
                rows += of([message], EventsAppended)[0].rows
            if not watch.busy:
                break
    assert [(r.study, r.trial_number) for r in rows] == [("demo", 2), ("demo", 6), (None, None)]


async def test_commands_are_reported_when_sent_and_when_finished(seeded: Seeded) -> None:
    watch = CommandsInterest().open()
    with StoreReader(seeded.db_path) as reader:
        assert watch.poll(reader, changed=True) == []
        first = submit_command(seeded.db_path, CommandAction.STOP_TRIAL, "demo", 11)
        second = submit_command(seeded.db_path, CommandAction.PAUSE_STUDY, "demo")
        (sent,) = watch.poll(reader, changed=True)
        assert isinstance(sent, CommandsUpdated)
        assert [(c.id, c.state) for c in sent.commands] == [
            (first, CommandState.PENDING), (second, CommandState.PENDING)
        ]
        async with open_store(seeded.db_path) as store:
            await store.finish_command(second, CommandState.APPLIED, "paused")
        (done,) = watch.poll(reader, changed=True)
        assert [(c.id, c.state) for c in done.commands] == [(second, CommandState.APPLIED)]
        assert watch.poll(reader, changed=True) == []
        async with open_store(seeded.db_path) as store:
            await store.finish_command(first, CommandState.REJECTED, "no such trial")
        (done,) = watch.poll(reader, changed=True)
        assert [(c.id, c.result) for c in done.commands] == [(first, "no such trial")]
        assert watch.poll(reader, changed=True) == []


async def test_a_trial_seen_running_before_its_first_report_gets_its_stats(seeded: Seeded) -> None:
    watch = StudyInterest(seeded.study_id).open()
    with StoreReader(seeded.db_path) as reader:
        async with open_store(seeded.db_path, clock=seeded.clock) as store:
            fresh = await store.create_trial(seeded.study_id, {"lr": 0.1})
            fresh = await store.transition(fresh.id, TrialState.RUNNING)
        watch.poll(reader, changed=True)  # running, no report yet
        async with open_store(seeded.db_path, clock=seeded.clock) as store:
            await store.add_metrics([MetricPoint(fresh.id, 1, "loss", 0.25, 0.0)],
                                    {fresh.id: (1, 0.25)})  # fmt: skip
            await store.transition(fresh.id, TrialState.STOPPED)
        (trials,) = of(watch.poll(reader, changed=True), TrialsUpdated)
        assert [t.state for t in trials.trials] == [TrialState.STOPPED]
        assert trials.stats[fresh.id].best == 0.25
