"""Synchronous successive halving and Hyperband: cohorts, exact top-1/eta, Li et al.'s table."""

from __future__ import annotations

import math

import pytest

from hpod import make_scheduler
from hpod.decision import Decision
from hpod.schedule.hyperband import hyperband_brackets
from hpod.schedule.simulate import Curve, simulate

C, S, P = Decision.CONTINUE, Decision.STOP, Decision.PAUSE


def cohort(n: int, **options):
    scheduler = make_scheduler("sh", **{"max_resource": 9, "cohort_size": n, **options})
    for trial_id in range(n):
        scheduler.on_start(trial_id)
    return scheduler


def test_cohort_waits_then_keeps_exactly_the_top_third():
    scheduler = cohort(9)
    values = [5, 4, 6, 3, 7, 2, 8, 1, 9]
    decisions = [scheduler.on_report(t, 1, v) for t, v in enumerate(values)]
    assert decisions == [P] * 8 + [S]  # the last member gets its verdict at once: a loser
    assert sorted(scheduler.take_stopped()) == [0, 1, 2, 4, 6]
    assert scheduler.take_stopped() == []
    assert [scheduler.next_resume() for _ in range(4)] == [7, 5, 3, None]  # best first


def test_the_member_that_completes_the_rung_goes_on_in_place_when_it_wins():
    scheduler = cohort(3)
    assert [scheduler.on_report(t, 1, v) for t, v in [(0, 3.0), (1, 2.0), (2, 1.0)]] == [P, P, C]
    assert scheduler.next_resume() is None
    assert sorted(scheduler.take_stopped()) == [0, 1]


def test_ties_at_the_cut_go_by_arrival_so_exactly_keep_trials_go_on():
    scheduler = cohort(6)
    decisions = [scheduler.on_report(t, 1, 1.0) for t in range(6)]
    assert decisions == [P] * 5 + [S]
    assert [scheduler.next_resume() for _ in range(3)] == [0, 1, None]


def test_winners_are_judged_again_at_the_next_rung():
    scheduler = cohort(9)
    for t, v in enumerate([5, 4, 6, 3, 7, 2, 8, 1, 9]):
        scheduler.on_report(t, 1, v)
    scheduler.take_stopped()
    for _ in range(3):
        scheduler.on_start(scheduler.next_resume())
    assert scheduler.on_report(7, 1, 1.0) == C  # a re-reported step after a restart: ignored
    assert [scheduler.on_report(t, 3, v) for t, v in [(7, 3.0), (5, 1.0), (3, 2.0)]] == [P, P, S]
    assert scheduler.next_resume() == 5
    assert scheduler.take_stopped() == [7]
    scheduler.on_start(5)
    assert scheduler.on_report(5, 8, 0.5) == C
    assert scheduler.on_report(5, 9, 0.4) == C  # max_resource: it completes
    assert scheduler.rungs_snapshot()[3] == [(5, 1.0), (3, 2.0), (7, 3.0)]


def test_a_member_that_ends_early_no_longer_holds_the_cohort_back():
    scheduler = cohort(3)
    assert scheduler.on_report(0, 1, 2.0) == P
    assert scheduler.on_report(1, 1, 1.0) == P
    scheduler.on_complete(2)  # crashed before its first rung: enters no rung
    assert scheduler.next_resume() == 1  # 2 entries: keep max(1, floor(2/3)) = 1
    assert scheduler.next_resume() is None
    assert scheduler.take_stopped() == [0]
    assert scheduler.rungs_snapshot()[1] == [(1, 1.0), (0, 2.0)]


def test_no_more_trials_judges_an_unfilled_cohort():
    scheduler = cohort(2, cohort_size=81)
    assert [scheduler.on_report(t, 1, v) for t, v in [(0, 2.0), (1, 1.0)]] == [P, P]
    assert scheduler.next_resume() is None
    scheduler.on_no_more_trials()
    assert scheduler.next_resume() == 1
    assert scheduler.take_stopped() == [0]


def test_nan_never_goes_on():
    scheduler = cohort(3)
    assert [scheduler.on_report(t, 1, math.nan) for t in range(3)] == [P, P, S]
    assert scheduler.next_resume() is None
    assert sorted(scheduler.take_stopped()) == [0, 1]


def test_cohorts_overlap_new_trials_open_the_next_one():
    scheduler = cohort(3)
    assert scheduler.should_start_new()
    scheduler.on_start(3)  # the first cohort is full: trial 3 is in the second
    assert scheduler.on_report(3, 1, 0.1) == P
    assert [scheduler.on_report(t, 1, v) for t, v in [(0, 3.0), (1, 2.0), (2, 1.0)]] == [P, P, C]


def test_default_cohort_size_trains_one_member_to_max_resource():
    scheduler = make_scheduler("sh", max_resource=81)
    assert scheduler.cohort_size == 81


def test_hyperband_brackets_match_li_et_al_table_1():
    assert hyperband_brackets(1, 81, 3) == [(81, 1), (34, 3), (15, 9), (8, 27), (5, 81)]


def _reached(result, trial_ids, level):
    return sum(1 for t in result.trials if t.trial_id in trial_ids and t.last_step >= level)


def test_hyperband_runs_each_bracket_as_in_the_paper():
    # Li et al. (JMLR 2018) Table 1, eta = 3, R = 81: (n_i, r_i) per bracket.
    expected = [
        [(81, 1), (27, 3), (9, 9), (3, 27), (1, 81)],
        [(34, 3), (11, 9), (3, 27), (1, 81)],
        [(15, 9), (5, 27), (1, 81)],
        [(8, 27), (2, 81)],
        [(5, 81)],
    ]
    n_trials = sum(rows[0][0] for rows in expected)
    # Non-crossing curves: trial t ends at 1 + t/1000 in a shuffled order.
    finals = [((t * 37) % n_trials) / 1000 for t in range(n_trials)]
    curves = [Curve.from_function(lambda s, f=f: f + 1.0 / s, 81) for f in finals]
    result = simulate(make_scheduler("hyperband", max_resource=81), curves, workers=4)
    first = 0
    for rows in expected:
        members = set(range(first, first + rows[0][0]))
        assert [(_reached(result, members, r), r) for _, r in rows] == rows
        first += rows[0][0]
    assert result.best == pytest.approx(min(finals) + 1 / 81)  # the best trial was kept


@pytest.mark.parametrize("kind", ["sh", "hyperband"])
def test_synchronous_kinds_need_max_resource(kind):
    with pytest.raises(ValueError, match="`max_resource` is required"):
        make_scheduler(kind)


# --- trials that start again: a restart's requeue, a retry of a failed run ------------------


def test_a_member_told_to_stop_that_runs_again_is_told_again():
    scheduler = cohort(3)
    assert [scheduler.on_report(t, 1, v) for t, v in [(0, 1.0), (1, 2.0), (2, 3.0)]] == [P, P, S]
    scheduler.on_start(2)  # requeued by a restart before it exited
    assert scheduler.on_report(2, 2, 0.0) == S


def test_a_retried_member_rejoins_the_rung_its_cohort_is_filling():
    scheduler = cohort(3)
    assert scheduler.on_report(0, 1, 2.0) == P
    scheduler.on_complete(1)  # failed before its first rung; the cohort waits for 2 only
    scheduler.on_start(1)  # retried before the rung was judged: it owes it again
    assert scheduler.on_report(2, 1, 3.0) == P
    assert scheduler.on_report(1, 1, 1.0) == C  # completes the rung, and wins it
    assert scheduler.take_stopped() == [0, 2]


def test_a_retried_member_whose_rung_was_judged_without_it_is_stopped():
    scheduler = cohort(3)
    scheduler.on_complete(2)
    assert [scheduler.on_report(t, 1, v) for t, v in [(0, 2.0), (1, 1.0)]] == [P, C]
    scheduler.on_start(2)
    assert scheduler.on_report(2, 1, 0.5) == S
    assert scheduler.rungs_snapshot()[1] == [(1, 1.0), (0, 2.0)]


def test_a_retried_member_waiting_for_its_rung_waits_paused():
    scheduler = cohort(3)
    assert scheduler.on_report(0, 1, 1.0) == P
    scheduler.on_complete(0)  # e.g. its process crashed while exiting paused
    scheduler.on_start(0)
    assert scheduler.on_report(0, 2, 0.5) == P  # still waits for the rung's verdict
    assert [scheduler.on_report(t, 1, v) for t, v in [(1, 2.0), (2, 3.0)]] == [P, S]
    assert scheduler.next_resume() == 0
