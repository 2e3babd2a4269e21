"""A trial's recorded reason, whole and in one line."""

from __future__ import annotations

from hpod.executor.base import TrialExit
from hpod.reasons import reason_in_one_line, with_stderr_tail

TRACEBACK = ('Traceback (most recent call last):\n  File "train.py", line 3, in <module>\n'
             '    main()\nValueError: lr must be positive\n\n')


def test_a_crash_in_one_line_ends_with_the_last_line_of_its_stderr() -> None:
    reason = with_stderr_tail("exit code 3", TRACEBACK)
    assert reason.startswith("exit code 3") and TRACEBACK in reason  # stored whole
    assert reason_in_one_line(reason) == ("exit code 3; stderr ended with: ValueError: lr must "
                                          "be positive")


def test_other_reasons_in_one_line_are_their_first_line() -> None:
    assert reason_in_one_line("timed out after 5 s") == "timed out after 5 s"
    assert reason_in_one_line("first\nsecond") == "first"
    assert reason_in_one_line(with_stderr_tail("exit code 1", "\n \n")) == "exit code 1"
    assert with_stderr_tail("exit code 1", "") == "exit code 1"


def test_a_long_last_line_is_cut() -> None:
    line = reason_in_one_line(with_stderr_tail("exit code 1", "x" * 1000), width=50)
    assert line.endswith("…") and len(line) == len("exit code 1; stderr ended with: ") + 50


def test_a_trial_exit_records_its_stderr_tail() -> None:
    exit_ = TrialExit(returncode=3, signal=None, stderr_tail="boom\n", reason="exit code 3")
    assert reason_in_one_line(exit_.describe()) == "exit code 3; stderr ended with: boom"
