"""Finding what an earlier run of a trial left behind, by the trial folder in its environment."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from helpers import wait_until
from hpod.executor.leftovers import find_leftovers, kill_leftovers
from robustness_support import alive


def test_leftovers_are_found_by_their_trial_folder_and_killed(tmp_path: Path) -> None:
    trial_dir = tmp_path / "trials" / "s" / "00001"
    other = tmp_path / "trials" / "s" / "000012"  # a prefix of the path, not a folder in it
    started = [subprocess.Popen(["sleep", "600"], env={**os.environ, "HPOD_TRIAL_DIR": str(d)})
               for d in (trial_dir, other)]
    try:
        mine, theirs = (p.pid for p in started)
        # Popen returns once exec has closed its error pipe, which (as far as the kernel's exec
        # path reads) is before the new program's environment is in place: /proc shows it empty
        # for a moment. Asserting on `theirs` after waiting for `mine` failed once on CI.
        wait_until(lambda: sorted(find_leftovers(tmp_path / "trials", under=True))
                   == sorted([mine, theirs]), what="both sleeps to exec")
        assert find_leftovers(trial_dir) == [mine]
        assert find_leftovers(tmp_path / "trials") == []  # exact match only without `under`
        assert kill_leftovers(trial_dir) == [mine]
        started[0].wait(timeout=30)
        assert not alive(mine) and alive(theirs)
    finally:
        for process in started:
            process.kill()
            process.wait(timeout=30)
