"""DaemonConfig's defaults that depend on the machine."""

from __future__ import annotations

import os

import pytest

from hpod.config import default_slots


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="Linux only")
def test_the_default_slots_are_the_cores_this_process_may_run_on() -> None:
    # `taskset -c 0 hpod serve` (or a container's cpuset) got one slot per core of the machine.
    allowed = os.sched_getaffinity(0)
    try:
        os.sched_setaffinity(0, {min(allowed)})
        assert default_slots() == 1
    finally:
        os.sched_setaffinity(0, allowed)
    assert default_slots() == len(allowed)
