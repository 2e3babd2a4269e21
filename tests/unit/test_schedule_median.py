"""The median stopping rule (Vizier's definition): best so far vs others' running averages."""

from __future__ import annotations

import math

import pytest

from hpod import make_scheduler
from hpod.decision import Decision

C, S = Decision.CONTINUE, Decision.STOP

CURVES = {0: [1.0, 0.9, 0.8], 1: [2.0, 1.8, 1.6], 2: [3.0, 2.7, 2.4]}


def with_history(sign: float = 1.0, **options):
    scheduler = make_scheduler("median", **options)
    for trial_id, values in CURVES.items():
        scheduler.on_start(trial_id)
        for step, value in enumerate(values, start=1):
            assert scheduler.on_report(trial_id, step, sign * value) == C
    return scheduler


def test_stops_a_trial_whose_best_is_worse_than_the_median_of_running_averages():
    scheduler = with_history()
    scheduler.on_start(3)
    assert scheduler.on_report(3, 1, 2.5) == S  # median of 1, 2, 3 is 2
    assert scheduler.on_report(3, 2, 0.1) == S  # told again
    scheduler.on_start(4)
    assert scheduler.on_report(4, 1, 1.5) == C
    # At step 2 others' running averages are 0.95, 1.9, 2.85 (trial 3 never reached step 2):
    # the median is 1.9 and trial 4's best so far, 1.5, is not worse although 1.95 is.
    assert scheduler.on_report(4, 2, 1.95) == C
    assert scheduler.on_report(4, 3, 2.0) == C  # median 1.8; best 1.5


def test_maximize_mirrors_minimize():
    low, high = with_history(), with_history(sign=-1.0, direction="maximize")
    for scheduler, sign in ((low, 1.0), (high, -1.0)):
        scheduler.on_start(3)
        scheduler.on_start(4)
    script = [(3, 1, 2.5), (4, 1, 1.5), (4, 2, 1.95), (4, 3, 2.0)]
    assert [low.on_report(t, s, v) for t, s, v in script] == [
        high.on_report(t, s, -v) for t, s, v in script
    ]


def test_grace_protects_early_steps():
    scheduler = with_history(grace=2)
    scheduler.on_start(3)
    assert scheduler.on_report(3, 1, 100.0) == C
    assert scheduler.on_report(3, 2, 100.0) == S


def test_needs_min_trials_others_at_that_step():
    scheduler = with_history(min_trials=4)
    scheduler.on_start(3)
    assert scheduler.on_report(3, 1, 100.0) == C  # only 3 others reached step 1
    scheduler.on_start(4)
    assert scheduler.on_report(4, 1, 100.0) == S  # now 4 others (trial 3 counts)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_diverged_trial_counts_as_worst(bad):
    scheduler = with_history()
    scheduler.on_start(3)
    assert scheduler.on_report(3, 1, 0.1) == C
    assert scheduler.on_report(3, 2, bad) == S  # its earlier best does not rescue it


def test_reaching_max_resource_continues():
    scheduler = with_history(max_resource=3)
    scheduler.on_start(3)
    assert scheduler.on_report(3, 3, 100.0) == C


@pytest.mark.parametrize(
    ("options", "match"),
    [({"grace": -1}, "`grace`"), ({"min_trials": 0}, "`min_trials`"),
     ({"max_resource": 0}, "`max_resource`"), ({"direction": "down"}, "`direction`")],
)
def test_options_are_validated(options, match):
    with pytest.raises(ValueError, match=match):
        make_scheduler("median", **options)
