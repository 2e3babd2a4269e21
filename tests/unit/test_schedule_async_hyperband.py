"""Async Hyperband: deterministic bracket assignment and per-bracket rung ladders."""

from __future__ import annotations

from collections import Counter

import pytest

from hpod import make_scheduler
from hpod.decision import Decision
from hpod.schedule.async_hyperband import bracket_probabilities

C, S = Decision.CONTINUE, Decision.STOP


def brackets(n: int, **options) -> list[int]:
    scheduler = make_scheduler("async-hyperband", **{"max_resource": 81, **options})
    for trial_id in range(n):
        scheduler.on_start(trial_id)
    return [scheduler.bracket_of(t) for t in range(n)]


def test_bracket_probabilities_follow_synchronous_hyperband_bracket_sizes():
    probabilities = bracket_probabilities((1, 3, 9, 27), 81, 5)
    sizes = [81, 34, 15, 8, 5]  # Li et al.'s n per bracket for eta = 3, R = 81
    assert probabilities == pytest.approx([n / sum(sizes) for n in sizes], abs=0.01)
    assert sum(probabilities) == pytest.approx(1.0)


def test_assignment_is_deterministic_and_seeded():
    assert brackets(60) == brackets(60)
    assert brackets(60, seed=3) == brackets(60, seed=3)
    assert brackets(60, seed=3) != brackets(60)


def test_assignment_depends_on_arrival_order_not_on_trial_ids():
    scheduler = make_scheduler("async-hyperband", max_resource=81)
    for trial_id in (1000, 7, 42):
        scheduler.on_start(trial_id)
    assert [scheduler.bracket_of(t) for t in (1000, 7, 42)] == brackets(3)


def test_assignment_tracks_the_target_proportions_closely():
    # The golden-ratio sequence is low-discrepancy: counts stay within 2 of n * P(s).
    scheduler = make_scheduler("async-hyperband", max_resource=81)
    for n in (20, 50, 143):
        counts = Counter(brackets(n))
        for s, p in enumerate(scheduler.probabilities):
            assert abs(counts[s] - n * p) <= 2, (n, s, counts)


def test_resumes_keep_their_bracket_and_do_not_shift_new_assignments():
    scheduler = make_scheduler("async-hyperband", max_resource=81, mode="pause")
    for trial_id in range(6):
        scheduler.on_start(trial_id)
    paused = [t for t in range(6) if scheduler.on_report(t, 1, float(t)) is Decision.PAUSE]
    assert paused  # bracket-0 trials pause at level 1 (warm-up: nobody promotable)
    before = [scheduler.bracket_of(t) for t in range(6)]
    for trial_id in paused:
        scheduler.on_start(trial_id)
    for trial_id in range(6, 12):
        scheduler.on_start(trial_id)
    assert [scheduler.bracket_of(t) for t in range(6)] == before
    assert [scheduler.bracket_of(t) for t in range(12)] == brackets(12)


def test_each_bracket_judges_its_own_trials_from_its_own_first_rung():
    scheduler = make_scheduler("async-hyperband", max_resource=81, brackets=2)
    ids = {0: [], 1: []}
    trial_id = 0
    while min(len(v) for v in ids.values()) < 4:
        scheduler.on_start(trial_id)
        ids[scheduler.bracket_of(trial_id)].append(trial_id)
        trial_id += 1
    # Bracket 1 starts at level 3: a step-1 report is between rungs there.
    assert scheduler.on_report(ids[1][0], 1, 100.0) == C
    # Bracket 0's rung 1 fills with bracket 0 trials only.
    decisions = [scheduler.on_report(t, 1, v) for t, v in zip(ids[0], [1.0, 2.0, 3.0, 4.0])]
    assert decisions == [C, C, S, S]
    decisions = [scheduler.on_report(t, 3, v) for t, v in zip(ids[1], [9.0, 8.0, 7.0, 10.0])]
    assert decisions == [C, C, C, S]
    assert sorted(t for t, _ in scheduler.rungs_snapshot()[3]) == sorted(ids[1])


def test_brackets_option_is_validated():
    with pytest.raises(ValueError, match="at most 5"):
        make_scheduler("async-hyperband", max_resource=81, brackets=6)
    with pytest.raises(ValueError, match="`brackets`"):
        make_scheduler("async-hyperband", max_resource=81, brackets=0)
    with pytest.raises(ValueError, match="`seed`"):
        make_scheduler("async-hyperband", max_resource=81, seed="x")


def test_one_bracket_is_asha():
    values = [5, 4, 6, 3, 7, 2, 8, 1, 9]
    results = []
    for kind, extra in (("asha", {}), ("async-hyperband", {"brackets": 1})):
        scheduler = make_scheduler(kind, max_resource=27, **extra)
        for t in range(len(values)):
            scheduler.on_start(t)
        results.append([scheduler.on_report(t, 1, v) for t, v in enumerate(values)])
    assert results[0] == results[1]
