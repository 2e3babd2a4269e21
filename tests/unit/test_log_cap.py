"""A trial's logs kept under [trial] max_log_mb."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hpod.executor.process import stderr_tail
from hpod.log_cap import (LOG_CHECK_EVERY, LOG_CHECK_SOONEST, log_sizes, look_at_logs, next_check,
                           trim_log, trim_logs)


def _lines(n: int) -> bytes:
    return b"".join(f"line {i:06d}\n".encode() for i in range(n))


def test_a_log_over_the_limit_keeps_its_newest_lines_behind_a_note(tmp_path: Path) -> None:
    log = tmp_path / "stdout.log"
    log.write_bytes(_lines(10_000))  # 120 000 bytes
    assert trim_log(log, 40_000)
    text = log.read_text()
    first, *kept = text.splitlines()
    assert first.startswith("[hpod: the first ") and "max_log_mb" in first
    assert kept[-1] == "line 009999" and kept[0].startswith("line ")  # whole lines only
    assert len(text) <= 20_000 + len(first) + 1
    assert int(first.split()[3]) == 120_000 - (len(text) - len(first) - 1)


def test_a_log_under_the_limit_or_missing_is_left_alone(tmp_path: Path) -> None:
    log = tmp_path / "stderr.log"
    log.write_bytes(_lines(10))
    assert not trim_log(log, 1_000)
    assert log.read_bytes() == _lines(10)
    assert not trim_log(tmp_path / "gone.log", 10)
    assert trim_logs(tmp_path, 0) == []  # 0: no limit


def test_the_trial_appends_after_the_cut_and_its_stderr_tail_is_still_read(
        tmp_path: Path) -> None:
    log = tmp_path / "stderr.log"
    log.write_bytes(_lines(10_000))
    start = log.stat().st_size  # where this run's output began, before the cut
    with open(log, "ab") as trial:  # the trial's own O_APPEND descriptor, open across the cut
        trial.write(b"Traceback (most recent call last):\n")
        trim_logs(tmp_path, 60_000 / 1024 / 1024)
        trial.write(b"ValueError: boom\n")
        trial.flush()
        os.fsync(trial.fileno())
    assert log.read_bytes().endswith(b"Traceback (most recent call last):\nValueError: boom\n")
    assert stderr_tail(log, start).splitlines()[-2:] == ["Traceback (most recent call last):",
                                                         "ValueError: boom"]


def test_a_log_growing_fast_is_looked_at_sooner() -> None:
    mib = 1024 * 1024
    assert next_check(0, 10.0, mib) == LOG_CHECK_EVERY  # quiet
    assert next_check(1000, 10.0, 64 * mib) == LOG_CHECK_EVERY  # a progress line now and then
    # 100 MiB in 10 s against 1 MiB of room: as often as it may be.
    assert next_check(100 * mib, 10.0, mib) == LOG_CHECK_SOONEST
    # 1 MiB/s with 8 MiB left: half the room fills in 4 s.
    assert next_check(10 * mib, 10.0, 8 * mib) == pytest.approx(4.0)
    assert next_check(10 * mib, 10.0, -5) == LOG_CHECK_SOONEST  # already over


def test_log_sizes_count_a_missing_log_as_empty(tmp_path) -> None:
    (tmp_path / "stderr.log").write_bytes(b"x" * 10)
    assert log_sizes(tmp_path) == [0, 10]


def test_one_look_says_what_the_logs_held_what_was_cut_and_what_is_left(tmp_path) -> None:
    (tmp_path / "stdout.log").write_bytes(_lines(200_000))  # 2.6 MB
    (tmp_path / "stderr.log").write_bytes(b"x\n")
    held, trimmed, sizes = look_at_logs(tmp_path, 1.0)
    assert held == len(_lines(200_000)) + 2 and trimmed == ["stdout.log"]
    assert sizes == [os.path.getsize(tmp_path / "stdout.log"), 2] and sizes[0] < 1024 * 1024
    assert look_at_logs(tmp_path, 1.0) == (sum(sizes), [], sizes)  # nothing more to cut
