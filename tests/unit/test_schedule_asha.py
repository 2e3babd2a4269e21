"""ASHA, stop and pause modes, as scripted rung scenarios (optuna's rung-check style)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hpod import make_scheduler
from hpod.decision import Decision

C, S, P = Decision.CONTINUE, Decision.STOP, Decision.PAUSE


def started(n: int, **options):
    scheduler = make_scheduler("asha", **{"max_resource": 27, **options})
    for trial_id in range(n):
        scheduler.on_start(trial_id)
    return scheduler


def first_rung(scheduler, values, step=1):
    return [scheduler.on_report(t, step, v) for t, v in enumerate(values)]


def test_stop_mode_keeps_top_third_of_the_rung_so_far_counting_the_newcomer():
    scheduler = started(9)
    # n:     1  2  3  4  5  6  7  8  9     keep = max(1, floor(n/3)), warm-up while n < 3
    values = [5, 4, 6, 3, 7, 2, 8, 1, 9]
    assert first_rung(scheduler, values) == [C, C, S, C, S, C, S, C, S]
    assert scheduler.rungs_snapshot()[1] == [(7, 1), (5, 2), (3, 3), (1, 4), (0, 5), (2, 6),
                                             (4, 7), (6, 8), (8, 9)]


def test_stop_mode_continues_unconditionally_while_the_rung_has_fewer_than_eta_entries():
    scheduler = started(2, reduction_factor=4)
    assert first_rung(scheduler, [1.0, 100.0]) == [C, C]
    scheduler = started(4, reduction_factor=4)
    assert first_rung(scheduler, [1.0, 2.0, 3.0, 100.0]) == [C, C, C, S]


def test_ties_continue():
    scheduler = started(5)
    assert first_rung(scheduler, [2.0, 2.0, 2.0, 2.0, 3.0]) == [C, C, C, C, S]


def test_reports_between_rungs_continue_and_each_rung_is_judged_once():
    scheduler = started(4)
    assert first_rung(scheduler, [1, 2, 3], step=0.5) == [C, C, C]  # below the first rung
    assert first_rung(scheduler, [1, 2, 3]) == [C, C, S]
    assert scheduler.on_report(0, 2, 50.0) == C  # between rungs 1 and 3
    assert scheduler.on_report(0, 1, 50.0) == C  # a re-reported step enters no rung
    assert scheduler.on_report(2, 2, 0.0) == S  # a stopped trial that goes on is told again
    assert len(scheduler.rungs_snapshot()[1]) == 3


def test_a_report_jumping_over_rungs_counts_for_the_highest_one_only():
    scheduler = started(1)
    assert scheduler.on_report(0, 10, 0.5) == C
    snapshot = scheduler.rungs_snapshot()
    assert snapshot[1] == [] and snapshot[3] == [] and snapshot[9] == [(0, 0.5)]
    assert scheduler.next_milestone(0) == 27


def test_reaching_max_resource_continues_and_enters_no_rung():
    scheduler = started(4)
    first_rung(scheduler, [1, 2, 3, 4])
    assert scheduler.on_report(0, 27, 99.0) == C
    assert all(v != 99.0 for entries in scheduler.rungs_snapshot().values() for _, v in entries)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_values_rank_worst_and_never_win_a_tie(bad):
    scheduler = started(4)
    assert first_rung(scheduler, [1.0, 2.0, 3.0, bad]) == [C, C, S, S]
    scheduler = started(3)
    assert first_rung(scheduler, [bad, bad, bad]) == [C, C, S]  # warm-up, then no tie credit
    scheduler = started(4, direction="maximize")
    assert first_rung(scheduler, [1.0, 2.0, 3.0, bad]) == [C, C, C, S]


def test_maximize_mirrors_minimize():
    values = [5, 4, 6, 3, 7, 2, 8, 1, 9, 2, 2, 0.5]
    low = first_rung(started(12), values)
    high = first_rung(started(12, direction="maximize"), [-v for v in values])
    assert low == high


def test_last_rung_quantile_exact_sequence():
    scheduler = started(6, max_resource=100)
    decisions = [scheduler.on_report(t, 81, v) for t, v in enumerate([1, 2, 3, 4, 5, 6])]
    # n=3: keep floor(2.43)=2, value 3 has 2 better -> stop; n=4: keep 3, value 4 has 3 better
    # -> stop; n=5: keep 4 -> value 5 has 4 better -> stop; n=6: keep 4 -> stop.
    assert decisions == [C, C, S, S, S, S]
    scheduler = started(6, max_resource=100)
    decisions = [scheduler.on_report(t, 81, v) for t, v in enumerate([6, 5, 4, 3, 2, 1])]
    assert decisions == [C, C, C, C, C, C]  # every newcomer is the best so far


def test_a_failed_trial_enters_no_rung_and_keeps_what_it_reported():
    scheduler = started(3)
    scheduler.on_complete(0)  # crashed before its first report
    assert scheduler.on_report(1, 1, 1.0) == C
    scheduler.on_complete(1)  # crashed after one report: the observation stays
    assert scheduler.rungs_snapshot()[1] == [(1, 1.0)]
    scheduler.on_start(1)  # retried: it trains on, and its rung-1 entry is not made twice
    assert scheduler.on_report(1, 1, 0.5) == C
    assert scheduler.rungs_snapshot()[1] == [(1, 1.0)]


def test_contract_errors_are_loud():
    scheduler = started(1)
    with pytest.raises(ValueError, match="before on_start"):
        scheduler.on_report(7, 1, 1.0)
    with pytest.raises(ValueError, match="before on_start"):
        scheduler.on_complete(7)


# --- pause (promotion) mode ---------------------------------------------------------------


def test_pause_mode_promotes_the_best_unpromoted_trial_of_the_top_third():
    scheduler = started(3, mode="pause")
    assert first_rung(scheduler, [5, 4, 6]) == [P, P, P]  # n=3: trial 1 promotable, not self
    assert scheduler.next_resume() == 1
    assert scheduler.next_resume() is None  # floor(3/3) = 1 slot, already used
    scheduler.on_start(1)
    assert scheduler.on_report(1, 1, 4.0) == C  # restarted from scratch: old step ignored
    assert scheduler.on_report(1, 2, 3.5) == C
    assert scheduler.on_report(1, 3, 3.0) == P  # rung 3 has 1 entry: nobody promotable
    scheduler.on_start(3)
    assert scheduler.on_report(3, 1, 1.0) == C  # n=4, keep 1: itself -> goes on in place
    assert scheduler.next_resume() is None
    for trial_id, value in [(4, 7.0), (5, 4.5)]:
        scheduler.on_start(trial_id)
        assert scheduler.on_report(trial_id, 1, value) == P
    # n=6, keep 2: trials 3 and 1 are promoted already; 0 (5.0) is third.
    assert scheduler.next_resume() is None
    scheduler.on_start(6)
    assert scheduler.on_report(6, 1, 0.5) == C  # n=7, keep 2: best, itself
    assert scheduler.rungs_snapshot()[1][:3] == [(6, 0.5), (3, 1.0), (1, 4.0)]


def test_pause_mode_prefers_the_highest_rung_then_the_best():
    scheduler = started(6, mode="pause")
    assert first_rung(scheduler, [5, 4, 6, 7, 8, 9]) == [P] * 6  # rung 1: top 2 are 1 and 0
    for trial_id in (2, 3, 4):  # resumed from outside (e.g. by a user): count as promoted
        scheduler.on_start(trial_id)
    assert [scheduler.on_report(t, 3, v) for t, v in [(2, 1.0), (3, 2.0), (4, 3.0)]] == [P] * 3
    # Rung 3 now has a candidate (trial 2) and rung 1 has two (1, then 0).
    assert [scheduler.next_resume() for _ in range(4)] == [2, 1, 0, None]


def test_once_no_trial_will_start_every_rung_promotes_at_least_its_best():
    # Two trials with eta 3: no rung ever holds 3 entries, so nobody was promoted and the
    # study ended with no trial trained to max_resource.
    scheduler = started(2, mode="pause")
    assert first_rung(scheduler, [5, 4]) == [P, P]
    assert scheduler.next_resume() is None
    scheduler.on_no_more_trials()
    assert scheduler.next_resume() == 1  # the best of rung 1
    assert scheduler.next_resume() is None  # max(1, floor(2/3)) = 1: the other stays paused
    scheduler.on_start(1)
    assert scheduler.on_report(1, 3, 3.0) == C  # alone at rung 3, and its best: goes on
    assert scheduler.on_report(1, 9, 2.0) == C  # rung 9 likewise, on to max_resource (27)


def test_pause_mode_never_resumes_a_trial_that_ended_while_paused():
    scheduler = started(3, mode="pause")
    first_rung(scheduler, [5, 4, 6])
    scheduler.on_complete(1)  # e.g. its checkpoint was lost
    assert scheduler.next_resume() is None


def test_pause_mode_treats_an_outside_resume_as_a_promotion():
    scheduler = started(3, mode="pause")
    first_rung(scheduler, [5, 4, 6])
    scheduler.on_start(1)  # resumed after a restart, without asking next_resume()
    assert scheduler.next_resume() is None
    assert scheduler.on_report(1, 3, 1.0) == P


def test_pause_mode_nan_is_never_promoted():
    scheduler = started(3, mode="pause")
    assert first_rung(scheduler, [math.nan, math.nan, math.nan]) == [P, P, P]
    assert scheduler.next_resume() is None


def test_stop_mode_never_asks_for_resumes():
    scheduler = started(3)
    first_rung(scheduler, [5, 4, 6])
    assert scheduler.next_resume() is None
    assert scheduler.should_start_new()
    assert scheduler.take_stopped() == []


def _reference_stop_rule(values: list[float], eta: int) -> list[Decision]:
    """The rule as written in the research notes, by brute force over the whole rung."""
    out = []
    scores = [math.inf if math.isnan(v) or math.isinf(v) else v for v in values]
    for i, mine in enumerate(scores):
        n = i + 1
        if n < eta:
            out.append(C)
            continue
        keep = max(1, n // eta)
        better = n - 1 if math.isinf(mine) else sum(1 for s in scores[:i] if s < mine)
        out.append(C if better < keep else S)
    return out


@given(
    values=st.lists(
        st.one_of(st.integers(0, 5).map(float), st.just(math.nan)), min_size=1, max_size=40
    ),
    eta=st.integers(2, 4),
)
@settings(max_examples=200, deadline=None)
def test_stop_rule_matches_a_brute_force_reference(values, eta):
    scheduler = started(len(values), max_resource=1000, reduction_factor=eta)
    assert first_rung(scheduler, values) == _reference_stop_rule(values, eta)
    mirrored = started(len(values), max_resource=1000, reduction_factor=eta, direction="maximize")
    assert first_rung(mirrored, [-v for v in values]) == _reference_stop_rule(values, eta)
