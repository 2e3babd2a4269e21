"""`retries`: a failure that looks transient (a crash, a kill) runs the same trial again, after a
backoff that doubles with each attempt; a failure that is the trial's own fault is not retried.

The backoff is checked from the times the trial itself wrote: the next attempt starts no sooner
than `retry_delay * 2**attempt` after the previous one ended. That is a lower bound, which a
slow machine can only make larger, never a threshold a noisy machine could miss.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import write_study
from hpod.store import TrialState
from robustness_support import fault_study, trials_of

pytestmark = pytest.mark.slow

RETRY_DELAY = 0.4


def _times(folder: Path, study: str, number: int) -> list[tuple[str, float]]:
    path = folder / ".hpod" / "trials" / study / f"{number:05d}" / "times"
    return [(word, float(value)) for word, value in
            (line.split() for line in path.read_text().splitlines())]


def test_a_transient_failure_is_retried_with_the_same_params(tmp_path: Path,
                                                             start_daemon) -> None:
    write_study(tmp_path, "flaky", fault_study(
        "transient", trials=2, trial=f"retries = 2\nretry_delay = {RETRY_DELAY}"))
    write_study(tmp_path, "own_fault", fault_study(
        "close_exit", trials=1, trial=f"retries = 2\nretry_delay = {RETRY_DELAY}"))
    daemon = start_daemon(tmp_path, "--exit-when-idle")
    assert daemon.wait(timeout=120) == 1, daemon.log()  # own_fault ends with no result

    trials = trials_of(tmp_path, "flaky")
    # Still two trials: a retry is the same trial (same number, same params), not a new one.
    assert [(t.number, t.state, t.attempt) for t in trials] == [
        (0, TrialState.COMPLETE, 2), (1, TrialState.COMPLETE, 2)]
    for trial in trials:
        assert trial.value == trial.params["x"]
        words = [word for word, _ in _times(tmp_path, "flaky", trial.number)]
        assert words == ["start", "end", "start", "end", "start"]

    # Never reporting the objective is not transient: retrying would fail the same way.
    (own,) = trials_of(tmp_path, "own_fault")
    assert (own.state, own.attempt) == (TrialState.FAILED, 0)


def test_retries_back_off(tmp_path: Path, start_daemon) -> None:
    write_study(tmp_path, "flaky", fault_study(
        "transient", trials=1, trial=f"retries = 2\nretry_delay = {RETRY_DELAY}"))
    daemon = start_daemon(tmp_path, "--exit-when-idle")
    assert daemon.wait(timeout=120) == 0, daemon.log()

    times = _times(tmp_path, "flaky", 0)
    ends = [t for word, t in times if word == "end"]
    starts = [t for word, t in times if word == "start"]
    assert len(ends) == 2 and len(starts) == 3
    for attempt, (ended, next_start) in enumerate(zip(ends, starts[1:])):
        assert next_start - ended >= RETRY_DELAY * 2**attempt, (attempt, times)
