"""Rung arithmetic: levels, rounding, quantiles and snapping."""

from __future__ import annotations

import math

import pytest

from hpod.schedule.rungs import Ladder, keep_count, reached, rung_levels


@pytest.mark.parametrize(
    ("min_resource", "max_resource", "eta", "expected"),
    [
        (1, 81, 3, (1, 3, 9, 27)),  # max_resource is the end of training, not a rung
        (1, 100, 3, (1, 3, 9, 27, 81)),
        (1, 27, 3, (1, 3, 9)),
        (1, 16, 2, (1, 2, 4, 8)),
        (1, 10, 1.9, (1, 2, 4, 7)),  # 1.9 -> 2, 3.61 -> 4, 6.859 -> 7
        (2, 100, 2.5, (2, 5, 13, 31, 78)),  # half-up rounding: 5.0 -> 5, 12.5 -> 13
        (1, 10, 1.2, (1, 2, 3, 4, 5, 6, 7, 9)),  # 1.2, 1.44 round to 1: duplicates dropped
        (1, 2, 3, (1,)),
        (5, 6, 3, (5,)),
    ],
)
def test_integer_levels(min_resource, max_resource, eta, expected):
    levels = rung_levels(min_resource, max_resource, eta)
    assert levels == expected
    assert all(isinstance(level, int) for level in levels)
    assert all(a < b for a, b in zip(levels, levels[1:]))


def test_float_levels_keep_fractions_and_stop_short_of_max_despite_rounding_error():
    # 1/9 * 3**2 is 1.0000000000000002 in floats: it must not become a rung below max=1.0.
    assert rung_levels(1 / 9, 1.0, 3) == pytest.approx((1 / 9, 1 / 3))
    assert rung_levels(0.1, 1.0, 3) == pytest.approx((0.1, 0.3, 0.9))
    assert rung_levels(0.5, 4.0, 2) == (0.5, 1.0, 2.0)


def test_whole_number_floats_count_as_integer_resources():
    levels = rung_levels(1.0, 10.0, 1.9)  # as a study-file parser may hand them over
    assert levels == (1, 2, 4, 7) and all(isinstance(level, int) for level in levels)


def test_keep_count_is_floor_of_n_times_level_ratio_exactly():
    assert keep_count(9, 1, 3) == 3
    assert keep_count(8, 1, 3) == 2
    assert keep_count(2, 1, 3) == 0
    assert keep_count(100, 81, 100) == 81  # last rung of 1..100: q = 0.81, not 1/3
    assert keep_count(3, 0.1, 0.30000000000000004) == 1  # float ratio just under 1/3
    assert keep_count(6, 2, 6) == 2  # int arithmetic: no 0.999... floor


def test_reached_tolerates_float_error_only():
    assert reached(1.0, 1.0000000000000002)
    assert not reached(0.99, 1.0)
    assert reached(3, 3)


def test_ladder_snaps_the_first_report_at_or_past_a_rung_to_the_highest_rung_passed():
    ladder = Ladder((1, 3, 9), 27)
    ladder.add_trial(0)
    assert ladder.crossing(0, 0.5) is None
    assert ladder.crossing(0, 1) == 0
    ladder.record(0, 0, 0.5, 0.5)
    assert ladder.crossing(0, 1) is None  # already recorded at rung 0
    assert ladder.crossing(0, 2) is None
    assert ladder.crossing(0, 10) == 2  # jumped over level 3: counts for level 9 only
    ladder.record(0, 2, 0.4, 0.4)
    assert ladder.next_milestone(0) == 27
    assert ladder.crossing(0, 27) is None  # fully trained: no rung
    assert [len(rung) for rung in ladder] == [1, 0, 1]


def test_ladder_never_records_at_or_past_max_resource():
    ladder = Ladder((1, 3, 9), 27)
    ladder.add_trial(0)
    assert ladder.crossing(0, 30) is None
    assert ladder.next_milestone(0) == 1


def test_promotion_quantiles_are_level_ratios():
    ladder = Ladder(rung_levels(1, 100, 3), 100)
    ratios = [rung.level / rung.next_level for rung in ladder]
    assert ratios[:-1] == pytest.approx([1 / 3] * 4)
    assert math.isclose(ratios[-1], 0.81)
