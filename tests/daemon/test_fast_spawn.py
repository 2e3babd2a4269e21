"""Starting trials without forking the daemon (executor/spawn.py, fd_slots.py, child_watcher.py).

The fast path needs descriptors 3 and 4 free at start-up, which they are not under pytest: the
tests that exercise it run tests/daemon/spawn_probe.py as a stand-in daemon, a real process
started with close_fds, once on the fast path and once on the preexec path, and expect the
same from both.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hpod.executor.child_watcher import pidfd_child_watcher
from hpod.executor.fd_slots import ChildFdSlots
from hpod.executor.spawn import direct_program, find_setpriv

from helpers import alive, wait_until_async as wait_until

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="the fast path is Linux's (setpriv, PR_SET_PDEATHSIG)")

PROBE = Path(__file__).with_name("spawn_probe.py")
WAIT = 60.0  # bounds a broken build; conditions end every wait
PATHS = ["fast", "preexec"]

needs_setpriv = pytest.mark.skipif(find_setpriv() is None,
                                   reason="no setpriv with --pdeathsig (util-linux 2.33+)")


def probe(kind: str, path: str, work: Path) -> dict[str, Any]:
    if path == "fast" and find_setpriv() is None:
        pytest.skip("no setpriv with --pdeathsig (util-linux 2.33+)")
    work.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([sys.executable, str(PROBE), kind, path, str(work)],
                          capture_output=True, text=True, timeout=WAIT, close_fds=True)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)




# -- both paths give the trial the same start ----------------------------------------------


@pytest.mark.parametrize("path", PATHS)
def test_the_trial_gets_its_pipes_on_3_and_4_and_nothing_else(tmp_path, path) -> None:
    result = probe("fds", path, tmp_path)
    # Two launches (a Python trial and a sh one), both on the path under test.
    assert result["fast_starts"] == (2 if path == "fast" else 0)
    assert result["ok"]
    child = result["child"]
    assert child["env"] == ["3", "4"]
    assert sorted(child["fds"]) == ["0", "1", "2", "3", "4"], child["fds"]
    assert child["fds"]["0"] == "/dev/null"
    assert child["fds"]["3"].startswith("pipe:") and child["fds"]["4"].startswith("pipe:")
    assert child["ppid"] == result["me"], "setpriv must exec the trial, not fork it"
    # dash takes the one-digit descriptors in its redirections.
    assert result["sh_ok"] and result["sh_steps"] == [1, 2]
    # The daemon's own 3 and 4 hold /dev/null again: no copy of a pipe end stays open.
    assert result["after"] == {"3": "/dev/null", "4": "/dev/null"}
    if sys.version_info < (3, 12) and hasattr(os, "pidfd_open"):
        assert result["watcher"] == "PidfdChildWatcher"


@pytest.mark.parametrize("path", PATHS)
async def test_the_trial_dies_with_a_kill_9_daemon(tmp_path, path) -> None:
    if path == "fast" and find_setpriv() is None:
        pytest.skip("no setpriv with --pdeathsig (util-linux 2.33+)")
    tmp_path.mkdir(exist_ok=True)
    daemon = await asyncio.create_subprocess_exec(
        sys.executable, str(PROBE), "orphan", path, str(tmp_path),
        stdout=asyncio.subprocess.PIPE)  # close_fds: 3 and 4 are free there
    try:
        line = await asyncio.wait_for(daemon.stdout.readline(), WAIT)  # type: ignore[union-attr]
        result = json.loads(line)
        assert result["first"] == "Report", "the trial runs its own code"
        assert result["fast_starts"] == (1 if path == "fast" else 0)
        trial = result["pid"]
        assert alive(trial)
    finally:
        daemon.send_signal(signal.SIGKILL)
        await daemon.wait()
    await wait_until(lambda: not alive(trial), f"trial {trial} to die with its daemon")


def test_launch_errors_read_the_same_on_both_paths(tmp_path) -> None:
    fast = probe("errors", "fast", tmp_path / "fast")
    slow = probe("errors", "preexec", tmp_path / "preexec")
    assert fast["leaked"] == [] and slow["leaked"] == []
    assert slow["fast_starts"] == 0
    # Only the two programs that run take the fast path; failures go the preexec way.
    assert fast["fast_starts"] == 2
    messages = {name: text.replace(str(tmp_path / "fast"), "WORK")
                for name, text in fast["messages"].items()}
    assert messages == {name: text.replace(str(tmp_path / "preexec"), "WORK")
                        for name, text in slow["messages"].items()}
    expected = {
        "missing": "command 'WORK/no-such-program' not found (no such file)",
        "missing on PATH": "not found on PATH",
        "relative missing": "command './nothing-here' not found (no such file)",
        "folder": "'WORK/folder' is not executable (permission denied)",
        "not executable": "'WORK/plain.sh' is not executable (permission denied)",
        "no #! line": "is not a program (exec format error)",
        "missing interpreter": "command 'WORK/gone.sh' not found",
        "CRLF #! line": "command 'WORK/crlf.sh' not found",
        "missing cwd": "working directory 'WORK/missing'",
        "missing cwd and program": "working directory 'WORK/missing'",
        "#! script": "started: exit code 3",
        "relative #! script": "started: exit code 3",
    }
    for name, text in expected.items():
        assert text in messages[name], (name, messages[name])


@needs_setpriv
def test_a_spare_started_on_the_fast_path_keeps_its_pipes_as_a_warm_trial(tmp_path) -> None:
    result = probe("warm", "fast", tmp_path)
    assert result["fast_starts"] >= 1, "the spare itself starts on the fast path"
    assert result["warm_starts"] == 1 and result["pid"] == result["spare"]
    assert result["preloaded"]
    assert result["ok"] and result["reports"] == [0]
    assert set(result["fds"]) - {"5"} == {"0", "1", "2", "3", "4"}, "5: listdir's own"


# -- the parts -------------------------------------------------------------------------------


def test_slots_are_claimed_only_when_3_and_4_are_free() -> None:
    before = set(os.listdir("/proc/self/fd"))
    slots = ChildFdSlots.claim()
    try:
        assert (slots is None) == ("3" in before or "4" in before)
    finally:
        if slots is not None:
            slots.close()
    assert set(os.listdir("/proc/self/fd")) == before


def executable(path: Path, text: str, mode: int = 0o755) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def test_direct_program_searches_path_as_exec_does(tmp_path) -> None:
    first = executable(tmp_path / "a" / "tool", "#!/bin/sh\n", 0o644)  # not executable: skipped
    second = executable(tmp_path / "b" / "tool", "#!/bin/sh\n")
    env = {"PATH": f"{first.parent}:{second.parent}"}
    assert direct_program("tool", env, tmp_path) == str(second)
    assert direct_program("tool", {"PATH": "b"}, tmp_path) == str(tmp_path / "b" / "tool")
    assert direct_program("./b/tool", {}, tmp_path) == os.path.join(tmp_path, "./b/tool")
    assert direct_program("nothing", env, tmp_path) is None
    assert direct_program(sys.executable, {}, tmp_path) == sys.executable  # an ELF file


@pytest.mark.parametrize("text, mode", [
    ("echo hi\n", 0o755),  # no #! line: execvp would run it with /bin/sh, Popen refused it
    ("#!/no/such/interpreter\n", 0o755),
    ("#!/bin/sh\r\n", 0o755),  # CRLF: the interpreter is "/bin/sh\r"
    ("#!\n", 0o755),
    ("#!/bin/sh\n", 0o644),
], ids=["no-shebang", "missing-interpreter", "crlf", "empty-shebang", "not-executable"])
def test_direct_program_leaves_doubtful_files_to_the_preexec_path(tmp_path, text, mode) -> None:
    program = executable(tmp_path / "train", text, mode)
    assert direct_program(str(program), {}, tmp_path) is None


def test_direct_program_follows_nested_interpreters(tmp_path) -> None:
    inner = executable(tmp_path / "inner", "#!/bin/sh\nexec \"$@\"\n")
    outer = executable(tmp_path / "outer", f"#! {inner} -x\necho hi\n")
    assert direct_program(str(outer), {}, tmp_path) == str(outer)
    (tmp_path / "inner").chmod(0o644)
    assert direct_program(str(outer), {}, tmp_path) is None


@pytest.mark.skipif(sys.version_info >= (3, 12) or not hasattr(os, "pidfd_open"),
                    reason="Python 3.12 waits with pidfds already")
async def test_the_pidfd_watcher_reaps_and_is_given_back() -> None:
    async with pidfd_child_watcher() as installed:
        assert installed
        assert type(asyncio.get_child_watcher()).__name__ == "PidfdChildWatcher"
        child = await asyncio.create_subprocess_exec(sys.executable, "-c", "raise SystemExit(7)")
        assert await asyncio.wait_for(child.wait(), WAIT) == 7
    assert type(asyncio.get_child_watcher()).__name__ != "PidfdChildWatcher"
    child = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
    assert await asyncio.wait_for(child.wait(), WAIT) == 0
