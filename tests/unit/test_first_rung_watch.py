"""The warning for a study whose trials keep dying at the first rung (hpod.first_rung_watch)."""

from __future__ import annotations

from hpod.first_rung_watch import STREAK, FirstRungWatch, watch_for
from hpod.schedule import make_scheduler
from hpod.store.records import TrialRecord, TrialState


def _trial(state: TrialState, last_step: float | None, number: int = 0) -> TrialRecord:
    return TrialRecord(
        id=number + 1, study_id=1, number=number, params={}, state=state, attempt=0,
        value=1.0, last_step=last_step, reason=None, exit_code=None, checkpoint=None,
        placement=None, created_at=0.0, started_at=0.0, finished_at=0.0,
    )


def _watch(streak: int = 4) -> FirstRungWatch:
    return FirstRungWatch("night", "asha", first_level=1, next_level=3, streak=streak)


def test_a_streak_of_first_rung_stops_warns_once_naming_the_rung_and_the_fixes():
    watch = _watch()
    said = [watch.on_end(_trial(TrialState.STOPPED, 1)) for _ in range(9)]
    assert [text is not None for text in said] == [False, False, False, True] + [False] * 5
    text = said[3]
    assert "study night: the last 4 trials were all stopped at the first rung (resource 1)" in text
    assert "hpod simulate" in text and "min_resource" in text and "async-hyperband" in text


def test_a_trial_past_the_first_rung_ends_the_streak_and_a_failure_does_not():
    watch = _watch()
    for _ in range(3):
        assert watch.on_end(_trial(TrialState.STOPPED, 1)) is None
    assert watch.on_end(_trial(TrialState.STOPPED, 3)) is None  # stopped at the second rung
    for _ in range(3):
        assert watch.on_end(_trial(TrialState.STOPPED, 1)) is None
    assert watch.on_end(_trial(TrialState.FAILED, 1)) is None  # says nothing about the rung
    assert watch.on_end(_trial(TrialState.STOPPED, 1)) is not None
    assert watch.on_end(_trial(TrialState.COMPLETE, 9)) is None
    assert [watch.on_end(_trial(TrialState.STOPPED, 1)) is not None for _ in range(4)] == \
        [False, False, False, True]  # a new streak warns again


def test_only_schedulers_with_rungs_are_watched():
    asha = watch_for("s", "asha", make_scheduler("asha", max_resource=27, min_resource=1))
    assert asha is not None and (asha.first_level, asha.next_level, asha.streak) == (1, 3, STREAK)
    one_rung = watch_for("s", "asha", make_scheduler("asha", max_resource=3, min_resource=1))
    assert one_rung is not None and one_rung.next_level == 3  # the end of training
    assert watch_for("s", "median", make_scheduler("median", max_resource=27)) is None
    assert watch_for("s", "fifo", make_scheduler("fifo")) is None
    assert watch_for("s", "fifo", None) is None
