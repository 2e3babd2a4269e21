"""The queue of points a study runs before its suggester's own (hpod.enqueued_points)."""

from __future__ import annotations

from hpod.enqueue import file_origins, user_origin
from hpod.enqueued_points import EnqueuedPoints

FILE = [{"x": 0.3}, {"x": 0.9}]
FIRST, SECOND = file_origins(FILE)


def test_file_points_go_first_and_a_point_with_a_trial_never_waits_again() -> None:
    points = EnqueuedPoints()
    assert points.add_user({"x": 0.5}, 7)
    points.from_file(FILE)  # the file's come before the user's, as at a start
    assert [points.take(budget_spent=False) for _ in range(3)] == [
        (FIRST, {"x": 0.3}), (SECOND, {"x": 0.9}), (user_origin(7), {"x": 0.5})]
    assert points.take(budget_spent=False) is None
    points.from_file(FILE)  # a live edit that saves the file again
    assert len(points) == 0
    assert not points.add_user({"x": 0.5}, 7)  # the same command replayed after a restart


def test_a_spent_budget_leaves_the_file_points_and_takes_the_users() -> None:
    points = EnqueuedPoints()
    points.from_file(FILE)
    points.add_user({"x": 0.5}, 1)
    assert (points.file_waiting(), points.user_waiting()) == (2, True)
    assert points.take(budget_spent=True) == (user_origin(1), {"x": 0.5})
    assert points.take(budget_spent=True) is None
    assert (points.file_waiting(), points.user_waiting()) == (2, False)


def test_a_point_put_back_waits_first_and_is_not_made() -> None:
    points = EnqueuedPoints()
    points.from_file(FILE)
    taken = points.take(budget_spent=False)
    assert taken is not None
    points.from_file(FILE)  # saved while its suggestion was computed: not queued twice
    assert points.origins() == {SECOND}
    points.put_back(taken)  # no trial was made of it after all
    assert points.take(budget_spent=False) == (FIRST, {"x": 0.3})


def test_points_made_by_an_older_hpod_are_known_by_their_index() -> None:
    points = EnqueuedPoints()
    points.made(["file:0", None, "user:3"])
    points.from_file(FILE)
    assert points.origins() == {SECOND}
    assert not points.add_user({"x": 0.1}, 3)
