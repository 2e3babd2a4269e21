"""WarmExecutor with real spare processes: a warm trial is indistinguishable from a cold one.

Each parity test runs the same script twice in the same trial folder — cold through
LocalExecutor, then warm in a ready spare of WarmExecutor — and compares everything the daemon
sees: the pid is the spare's, the messages, the TrialExit (reason and stderr tail included) and
every file the trial left. Most spares preload `json` (fast); one test preloads TensorFlow.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from hpod.decision import Decision
from hpod.errors import StudySpecError
from hpod.executor import LocalExecutor
from hpod.executor.base import TrialExit
from hpod.executor.leftovers import find_leftovers
from hpod.executor.local import LocalTrial
from hpod.executor.warm import WarmExecutor, base_environment
from hpod.executor.process import priority_restorable
from hpod.spec_fields import Fields
from hpod.spec_sections import parse_trial
from hpod.wire import Message, Report

from helpers import alive, wait_until_async as wait_until

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="warm starts are Linux-only (PR_SET_PDEATHSIG, /proc)")

TRIALS = Path(__file__).parents[1] / "fixtures" / "trials"
WAIT = 60.0  # bounds a broken build; conditions end every wait
SLOT = "cpu:0"

# Everything a trial can observe about how it was started, written to info.json.
PROBE = r'''
import sys
modules_at_start = sorted(sys.modules)
import ctypes, fcntl, json, os, signal, threading
import hpod.trial as trial

def fd_facts():
    facts = {}
    for fd in sorted(os.listdir("/proc/self/fd"), key=int):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
            flags = fcntl.fcntl(int(fd), fcntl.F_GETFL)
            inheritable = os.get_inheritable(int(fd))
        except OSError:
            continue  # the descriptor listdir itself used
        facts[fd] = ["pipe" if target.startswith("pipe:") else target, flags, inheritable]
    return facts

def thread_nice():
    return sorted(int(open(f"/proc/self/task/{t}/stat").read().rsplit(")", 1)[1].split()[16])
                  for t in os.listdir("/proc/self/task"))

def autogroup():
    try:
        return open("/proc/self/autogroup").read().split()[-1]
    except OSError:
        return None

main = sys.modules["__main__"]
libc = ctypes.CDLL(None)
libc.getenv.restype = ctypes.c_char_p
params = trial.params()
info = {
    "dunders": {k: type(v).__name__ for k, v in vars(main).items() if k.startswith("__")},
    "name": __name__, "file": __file__, "argv": sys.argv, "orig_argv": sys.orig_argv,
    "path": sys.path, "cwd": os.getcwd(), "environ": dict(os.environ),
    "c_cuda": (libc.getenv(b"CUDA_VISIBLE_DEVICES") or b"<unset>").decode(),
    "fds": fd_facts(), "nice": thread_nice(), "threads": threading.active_count(),
    "autogroup_nice": autogroup(),
    "leader": [os.getpgid(0) == os.getpid(), os.getsid(0) == os.getpid()],
    "ppid": os.getppid(), "umask": os.umask(0o22),
    "signals": {s: str(signal.getsignal(getattr(signal, s)))
                for s in ("SIGINT", "SIGTERM", "SIGPIPE", "SIGHUP", "SIGCHLD", "SIGUSR1")},
    "stdio": [(s.encoding, s.errors, s.line_buffering, s.write_through)
              for s in (sys.stdout, sys.stderr)],
    "stdin": os.readlink("/proc/self/fd/0"), "flags": list(sys.flags),
    "main_thread": threading.current_thread() is threading.main_thread(),
    "params": params, "executable": sys.executable,
}
print("to stdout", params)
print("to stderr", file=sys.stderr)
decisions = [trial.report(step, loss=1.0 / (step + 1)) for step in range(3)]
(trial.trial_dir() / "info.json").write_text(json.dumps(info, indent=1, sort_keys=True))
(trial.trial_dir() / "modules.json").write_text(json.dumps(modules_at_start))
(trial.trial_dir() / "decisions.txt").write_text(" ".join(decisions))
sys.exit(int(params.get("exit", 0)))
'''


@dataclass
class Run:
    pid: int
    messages: list[Message]
    exit: TrialExit
    files: dict[str, bytes]


Drive = Callable[[LocalTrial], Awaitable[list[Message]]]


async def answer_all(trial: LocalTrial) -> list[Message]:
    messages = []
    async with asyncio.timeout(WAIT):
        async for message in trial.messages():
            messages.append(message)
            if isinstance(message, Report):
                trial.decide(Decision.CONTINUE, message.step)
    return messages


def trial_env(trial_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HPOD_")}
    env.update(HPOD_DECISION_TIMEOUT="60", HPOD_TRIAL_DIR=str(trial_dir), HPOD_TRIAL_ID="7",
               HPOD_PARAMS='{"lr": 0.1}', PYTHONUNBUFFERED="1", CUDA_VISIBLE_DEVICES="3")
    env.update(extra)
    return env


async def run(executor: LocalExecutor | WarmExecutor, argv: list[str], env: dict[str, str],
              cwd: Path, trial_dir: Path, drive: Drive = answer_all, **warm: object) -> Run:
    trial = await executor.launch(argv, env=env, cwd=cwd, trial_dir=trial_dir, **warm)
    async with trial:
        messages = await drive(trial)
        exit_ = await asyncio.wait_for(trial.wait(), WAIT)
    files = {p.relative_to(trial_dir).as_posix(): p.read_bytes()
             for p in sorted(trial_dir.rglob("*")) if p.is_file()}
    return Run(trial.pid, messages, exit_, files)


async def cold_and_warm(tmp_path: Path, warm: WarmExecutor, argv_tail: list[str],
                        drive: Drive = answer_all, preload: tuple[str, ...] = ("json",),
                        **extra_env: str) -> tuple[Run, Run]:
    """The same trial cold, then warm, in the same folder (paths in its files stay equal)."""
    argv = [sys.executable, *argv_tail]
    trial_dir = tmp_path / "trial"
    env = trial_env(trial_dir, **extra_env)
    cold = await run(LocalExecutor(), argv, env, tmp_path, trial_dir, drive)
    shutil.rmtree(trial_dir)
    assert warm.prepare(argv, env=env, cwd=tmp_path, preload=preload, slot=SLOT)
    spare = await asyncio.wait_for(warm.wait_ready(SLOT), WAIT)
    hot = await run(warm, argv, env, tmp_path, trial_dir, drive, preload=preload, slot=SLOT)
    assert hot.pid == spare, "the trial must run in the spare"
    return cold, hot


def assert_same(cold: Run, hot: Run) -> None:
    assert hot.messages == cold.messages
    assert hot.exit == cold.exit
    assert hot.files.keys() == cold.files.keys()
    for name in cold.files.keys() - {"modules.json"}:  # preloading is the point
        if name.endswith(".json"):
            assert json.loads(hot.files[name]) == json.loads(cold.files[name]), name
        assert hot.files[name] == cold.files[name], name


def nice_of(pid: int) -> int:
    with open(f"/proc/{pid}/stat", "rb") as f:
        return int(f.read().rsplit(b")", 1)[1].split()[16])


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
async def warm(tmp_path: Path):
    # running=None: the gate counts only these tests' own processes, not the box's other load.
    executor = WarmExecutor(spare_dir=tmp_path / "spares", cores=2, running=None)
    yield executor
    await executor.aclose()


# -- parity: what the trial sees and what the daemon sees ----------------------------------


@pytest.mark.parametrize("locale", ["inherited", "C"])
async def test_a_warm_trial_sees_and_leaves_exactly_what_a_cold_one_does(tmp_path, warm,
                                                                        monkeypatch,
                                                                        locale) -> None:
    if locale == "C":  # then the interpreter adds LC_CTYPE to its own environment (PEP 538)
        for name in ("LANG", "LC_ALL", "LC_CTYPE", "LANGUAGE"):
            monkeypatch.delenv(name, raising=False)
    script = write(tmp_path / "scripts" / "probe.py", PROBE)
    cold, hot = await cold_and_warm(tmp_path, warm, [str(script), "--flag", "x y"])
    assert cold.exit.ok, cold.exit.describe()
    assert [m.step for m in cold.messages] == [0, 1, 2]  # type: ignore[union-attr]
    info = json.loads(hot.files["info.json"])
    assert info["environ"]["CUDA_VISIBLE_DEVICES"] == "3" and info["c_cuda"] == "3"
    assert info["argv"] == [str(script), "--flag", "x y"] and info["name"] == "__main__"
    assert info["path"][0] == str(script.parent) and info["cwd"] == str(tmp_path)
    assert info["fds"]["3"][0] == info["fds"]["4"][0] == "pipe"
    assert info["stdin"] == "/dev/null" and info["leader"] == [True, True]
    assert_same(cold, hot)


async def test_a_spare_imports_only_the_standard_library_and_its_modules(tmp_path, warm) -> None:
    script = write(tmp_path / "scripts" / "probe.py", PROBE)
    cold, hot = await cold_and_warm(tmp_path, warm, [str(script)], preload=("json", "csv"))
    extra = set(json.loads(hot.files["modules.json"])) - set(json.loads(cold.files["modules.json"]))
    assert {"json", "csv"} <= extra
    foreign = {m for m in extra if m.split(".")[0] not in sys.stdlib_module_names}
    assert foreign == {"hpod"}, "only the package itself, for `python -m hpod.spare`"


CRASHES = {
    "exception": "def f():\n    raise RuntimeError('boom')\nprint('x')\nf()\n",
    "chained": "try:\n    1 / 0\nexcept ZeroDivisionError as e:\n    raise ValueError('v') from e\n",
    "exit code": "import sys\nsys.exit(3)\n",
    "exit message": "import sys\nsys.exit('going away')\n",
    "syntax error": "x = (\n",
    "keyboard interrupt": "raise KeyboardInterrupt\n",
    "segfault": "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n",
    "custom excepthook": ("import sys\nsys.excepthook = lambda t, v, tb: print('hook', t.__name__, "
                          "tb.tb_frame.f_code.co_filename == __file__, file=sys.stderr)\n"
                          "raise OSError('x')\n"),
    "annotations": "from typing import get_type_hints\nx: 'undefined'\nimport sys\n"
                   "print(sys.modules['__main__'].__annotations__)\n",
}


@pytest.mark.parametrize("name", list(CRASHES))
async def test_exits_and_tracebacks_are_those_of_a_cold_start(tmp_path, warm, name) -> None:
    script = write(tmp_path / "scripts" / "t.py", CRASHES[name])
    cold, hot = await cold_and_warm(tmp_path, warm, [str(script)])
    assert_same(cold, hot)
    if name not in ("exit code", "segfault", "annotations"):
        assert hot.exit.stderr_tail, "the explanation is in the tail"
    assert "hpod" not in hot.files["stderr.log"].decode(), "no frame of the spare's own"


@pytest.mark.parametrize("body", ["crash", "missing"])
async def test_a_relative_script_path(tmp_path, warm, body) -> None:
    if body == "crash":
        write(tmp_path / "scripts" / "t.py", CRASHES["exception"] + "print(__file__)\n")
    cold, hot = await cold_and_warm(tmp_path, warm, ["scripts/t.py", "a"])
    assert not cold.exit.ok and str(tmp_path) in cold.exit.stderr_tail, "__file__ is absolute"
    assert_same(cold, hot)


async def test_a_script_that_does_not_exist_fails_as_it_would_cold(tmp_path, warm) -> None:
    cold, hot = await cold_and_warm(tmp_path, warm, [str(tmp_path / "scripts" / "missing.py")])
    assert cold.exit.returncode == 2 and "can't open file" in cold.exit.stderr_tail
    assert_same(cold, hot)


async def test_a_crash_with_reports_first(tmp_path, warm) -> None:
    cold, hot = await cold_and_warm(tmp_path, warm, [str(TRIALS / "crash.py")])
    assert "RuntimeError: boom at step 2" in hot.exit.stderr_tail
    assert_same(cold, hot)


async def test_a_stop_decision_is_obeyed_the_same_way(tmp_path, warm) -> None:
    async def stop_at_3(trial: LocalTrial) -> list[Message]:
        messages = []
        async with asyncio.timeout(WAIT):
            async for message in trial.messages():
                messages.append(message)
                trial.decide(Decision.STOP if message.step == 3 else Decision.CONTINUE,
                             message.step)  # type: ignore[union-attr]
        return messages

    cold, hot = await cold_and_warm(tmp_path, warm, [str(TRIALS / "emit.py"), "1000",
                                                      "--obey-stop"], stop_at_3)
    assert hot.files["stdout.log"] == b"stop at step 3\n"
    assert_same(cold, hot)


async def test_a_hung_trial_is_stopped_by_sigterm(tmp_path, warm) -> None:
    async def stop(trial: LocalTrial) -> list[Message]:
        await asyncio.wait_for(trial.stop(grace=30), WAIT)
        return [m async for m in trial.messages()]

    cold, hot = await cold_and_warm(tmp_path, warm, [str(TRIALS / "hang.py")], stop)
    assert hot.exit.reason == "stopped by SIGTERM from hpod"
    assert_same(cold, hot)


async def test_a_trial_ignoring_sigterm_is_killed_after_the_grace(tmp_path, warm) -> None:
    async def stop(trial: LocalTrial) -> list[Message]:
        stream = trial.messages()
        first = await asyncio.wait_for(anext(stream), WAIT)
        await asyncio.wait_for(trial.stop(grace=0.2), WAIT)
        return [first, *[m async for m in stream]]

    cold, hot = await cold_and_warm(tmp_path, warm, [str(TRIALS / "ignore_term.py")], stop)
    assert hot.exit.signal == signal.SIGKILL and "after SIGTERM" in hot.exit.reason
    assert_same(cold, hot)


async def test_stop_kills_what_a_warm_trial_forked(tmp_path, warm) -> None:
    argv = [sys.executable, str(TRIALS / "fork_child.py")]
    env = trial_env(tmp_path / "t", HPOD_DECISION_TIMEOUT="0")
    warm.prepare(argv, env=env, cwd=tmp_path, preload=["json"], slot=SLOT)
    spare = await asyncio.wait_for(warm.wait_ready(SLOT), WAIT)
    trial = await warm.launch(argv, env=env, cwd=tmp_path, trial_dir=tmp_path / "t",
                              preload=["json"], slot=SLOT)
    assert trial.pid == spare
    async with trial:
        stream = trial.messages()
        report = await asyncio.wait_for(anext(stream), WAIT)
        child = int(report.metrics["child_pid"])  # type: ignore[union-attr]
        await asyncio.wait_for(trial.stop(grace=0.2), WAIT)
        assert [m async for m in stream] == []
    await wait_until(lambda: not alive(child) and not alive(spare), "the group to be gone")


async def test_what_a_warm_trial_forks_is_found_as_its_leftover(tmp_path, warm) -> None:
    # After a kill -9 of the daemon, leftovers are found by HPOD_TRIAL_DIR in the environment
    # the kernel shows (/proc/PID/environ): a forked child shows its parent's exec-time one.
    argv = [sys.executable, str(TRIALS / "fork_child.py")]
    trial_dir = tmp_path / "t"
    env = trial_env(trial_dir, HPOD_DECISION_TIMEOUT="0")
    warm.prepare(argv, env=env, cwd=tmp_path, preload=["json"], slot=SLOT)
    spare = await asyncio.wait_for(warm.wait_ready(SLOT), WAIT)
    assert find_leftovers(trial_dir) == []
    trial = await warm.launch(argv, env=env, cwd=tmp_path, trial_dir=trial_dir,
                              preload=["json"], slot=SLOT)
    async with trial:
        report = await asyncio.wait_for(anext(trial.messages()), WAIT)
        child = int(report.metrics["child_pid"])  # type: ignore[union-attr]
        assert sorted(find_leftovers(trial_dir)) == sorted([spare, child])
        with open(f"/proc/{child}/environ", "rb") as f:
            entries = f.read().split(b"\0")
        assert f"HPOD_TRIAL_DIR={trial_dir}".encode() in entries
        await asyncio.wait_for(trial.stop(grace=0.2), WAIT)


# -- the spares' life ----------------------------------------------------------------------


@pytest.mark.parametrize("noticed", [False, True], ids=["at-once", "after-it-noticed"])
async def test_a_spare_killed_before_use_changes_nothing_for_the_trial(tmp_path, warm,
                                                                      noticed) -> None:
    argv = [sys.executable, str(TRIALS / "emit.py"), "3"]
    trial_dir = tmp_path / "trial"
    env = trial_env(trial_dir)
    cold = await run(LocalExecutor(), argv, env, tmp_path, trial_dir)
    shutil.rmtree(trial_dir)
    warm.prepare(argv, env=env, cwd=tmp_path, preload=["json"], slot=SLOT)
    spare = await asyncio.wait_for(warm.wait_ready(SLOT), WAIT)
    os.kill(spare, signal.SIGKILL)
    if noticed:  # the executor has seen it die and started a replacement, which takes it
        await wait_until(lambda: warm.spare_pid(SLOT) not in (None, spare), "a replacement")
    # else: killed just before the hand-off; the launch finds a dead pipe and starts it cold
    hot = await run(warm, argv, env, tmp_path, trial_dir, preload=["json"], slot=SLOT)
    assert hot.pid != spare
    assert_same(cold, hot)
    assert (warm.cold_starts, warm.warm_starts) == ((0, 1) if noticed else (1, 0))
    replacement = await asyncio.wait_for(warm.wait_ready(SLOT), WAIT)
    assert replacement not in (spare, hot.pid)


async def test_a_spare_that_dies_while_waiting_is_replaced(tmp_path, warm) -> None:
    argv = [sys.executable, str(TRIALS / "emit.py"), "3"]
    warm.prepare(argv, env=trial_env(tmp_path / "t"), cwd=tmp_path, preload=["json"],
                 slot=SLOT)
    first = await asyncio.wait_for(warm.wait_ready(SLOT), WAIT)
    os.kill(first, signal.SIGKILL)
    await wait_until(lambda: warm.spare_pid(SLOT) not in (None, first), "a new spare")
    second = await asyncio.wait_for(warm.wait_ready(SLOT), WAIT)
    assert second != first and alive(second)


async def test_a_spare_is_replaced_after_use_while_the_trial_runs(tmp_path, warm) -> None:
    argv = [sys.executable, str(TRIALS / "hang.py")]
    env = trial_env(tmp_path / "t")
    warm.prepare(argv, env=env, cwd=tmp_path, preload=["json"], slot=SLOT)
    spare = await asyncio.wait_for(warm.wait_ready(SLOT), WAIT)
    async with await warm.launch(argv, env=env, cwd=tmp_path, trial_dir=tmp_path / "t",
                                 preload=["json"], slot=SLOT) as trial:
        assert trial.pid == spare
        behind = await asyncio.wait_for(warm.wait_ready(SLOT), WAIT)
        assert behind != spare and alive(trial.pid)
        await trial.stop(grace=5)
    assert warm.warm_starts == 1


async def test_aclose_ends_every_spare(tmp_path) -> None:
    executor = WarmExecutor(spare_dir=tmp_path / "spares", cores=4, running=None)
    argv = [sys.executable, str(TRIALS / "emit.py"), "3"]
    env = trial_env(tmp_path / "t")
    pids = []
    for slot in ("cpu:0", "cpu:1"):
        executor.prepare(argv, env=env, cwd=tmp_path, preload=["json"], slot=slot)
        pids.append(await asyncio.wait_for(executor.wait_ready(slot), WAIT))
    await executor.aclose()
    assert all(not alive(pid) for pid in pids)
    assert executor.spare_pid("cpu:0") is None
    assert list((tmp_path / "spares").iterdir()) == []
    late = await run(executor, argv, env, tmp_path, tmp_path / "t", preload=["json"],
                     slot="cpu:0")
    assert late.exit.ok, "a launch after aclose still works, cold"
    assert executor.spare_pid("cpu:0") is None and executor.cold_starts == 1
    await executor.aclose()


async def test_trials_running_at_once_on_one_slot_keep_a_spare_each(tmp_path) -> None:
    # The daemon passes the study's name as the slot: each of its running trials is a key.
    executor = WarmExecutor(spare_dir=tmp_path / "spares", cores=4, running=None)
    argv = [sys.executable, str(TRIALS / "hang.py")]
    env = trial_env(tmp_path / "t")

    async def launch(name: str) -> LocalTrial:
        return await executor.launch(argv, env=env, cwd=tmp_path, trial_dir=tmp_path / name,
                                     preload=["json"], slot="study")

    try:
        first, second = await launch("t1"), await launch("t2")
        behind_first = await asyncio.wait_for(executor.wait_ready("study"), WAIT)
        behind_second = await asyncio.wait_for(executor.wait_ready("study#2"), WAIT)
        async with first:
            await first.stop(grace=5)
        # The lowest key no running trial holds: the first one's, and its spare.
        async with await launch("t3") as third:
            assert third.pid == behind_first
            assert executor.spare_pid("study#2") == behind_second
            behind_third = await asyncio.wait_for(executor.wait_ready("study"), WAIT)
            await executor.retire("study")  # the study is over: every key's spare goes
            assert not alive(behind_second) and not alive(behind_third)
            assert alive(third.pid) and alive(second.pid), "trials are not spares"
            await third.stop(grace=5)
        async with second:
            await second.stop(grace=5)
        assert (executor.warm_starts, executor.cold_starts) == (1, 2)
    finally:
        await executor.aclose()


@pytest.mark.parametrize("how", ["idle timeout", "retire"])
async def test_an_unused_spare_is_ended_and_not_replaced(tmp_path, how) -> None:
    executor = WarmExecutor(spare_dir=tmp_path / "spares", cores=2, running=None,
                            idle_timeout=0.1 if how == "idle timeout" else None)
    argv = [sys.executable, str(TRIALS / "emit.py"), "3"]
    try:
        executor.prepare(argv, env=trial_env(tmp_path / "t"), cwd=tmp_path, preload=["json"],
                         slot=SLOT)
        spare = await asyncio.wait_for(executor.wait_ready(SLOT), WAIT)
        if how == "retire":
            await executor.retire(SLOT)
        await wait_until(lambda: not alive(spare) and executor.spare_pid(SLOT) is None,
                         "the spare to be ended")
        with pytest.raises(LookupError, match="no spare is wanted"):
            await executor.wait_ready(SLOT)
    finally:
        await executor.aclose()


async def test_a_spare_starts_only_when_a_core_is_free(tmp_path) -> None:
    executor = WarmExecutor(spare_dir=tmp_path / "spares", cores=1, running=None)
    argv = [sys.executable, str(TRIALS / "hang.py")]
    env = trial_env(tmp_path / "t")
    try:
        trial = await executor.launch(argv, env=env, cwd=tmp_path, trial_dir=tmp_path / "t",
                                      preload=["json"], slot=SLOT)
        async with trial:
            assert executor.spare_pid(SLOT) is None, "the only core is the trial's"
            await trial.stop(grace=5)
        spare = await asyncio.wait_for(executor.wait_ready(SLOT), WAIT)
        assert spare != trial.pid
    finally:
        await executor.aclose()


async def test_no_spare_starts_while_other_work_takes_the_cores(tmp_path) -> None:
    elsewhere = [2]  # what else wants a CPU right now (the machine's instantaneous load)
    executor = WarmExecutor(spare_dir=tmp_path / "spares", cores=2,
                            running=lambda: elsewhere[0])
    argv = [sys.executable, str(TRIALS / "emit.py"), "2"]
    env = trial_env(tmp_path / "t")
    try:
        assert executor.prepare(argv, env=env, cwd=tmp_path, preload=["json"], slot=SLOT)
        assert executor.spare_pid(SLOT) is None
        elsewhere[0] = 1
        executor.prepare(argv, env=env, cwd=tmp_path, preload=["json"], slot=SLOT)
        assert await asyncio.wait_for(executor.wait_ready(SLOT), WAIT)
    finally:
        await executor.aclose()


async def test_a_launch_for_another_configuration_is_cold_and_renews_the_spare(tmp_path,
                                                                             warm) -> None:
    argv = [sys.executable, str(TRIALS / "emit.py"), "2"]
    env = trial_env(tmp_path / "t", SOME_SETTING="a")
    warm.prepare(argv, env=env, cwd=tmp_path, preload=["json"], slot=SLOT)
    old = await asyncio.wait_for(warm.wait_ready(SLOT), WAIT)
    # Placement and trial variables may differ: they are applied at the hand-off.
    placed = {**env, "CUDA_VISIBLE_DEVICES": "1", "HPOD_TRIAL_ID": "8"}
    hot = await run(warm, argv, placed, tmp_path, tmp_path / "t", preload=["json"], slot=SLOT)
    assert hot.pid == old
    current = await asyncio.wait_for(warm.wait_ready(SLOT), WAIT)
    # Anything else may have changed what the imports did: that spare is not used.
    other = {**env, "SOME_SETTING": "b"}
    cold = await run(warm, argv, other, tmp_path, tmp_path / "t2", preload=["json"], slot=SLOT)
    assert cold.pid != current and cold.exit.ok
    await wait_until(lambda: not alive(current), "the mismatched spare to be ended")
    assert await asyncio.wait_for(warm.wait_ready(SLOT), WAIT) not in (current, cold.pid)
    assert (warm.warm_starts, warm.cold_starts) == (1, 1)


@pytest.mark.parametrize("argv", [["sh", "-c", "exit 0"], [sys.executable, "-c", "pass"],
                                  ["/usr/bin/env", "python3", "x.py"]], ids=["sh", "-c", "env"])
async def test_no_spare_for_what_is_not_python_script_py(tmp_path, warm, argv) -> None:
    env = trial_env(tmp_path / "t")
    assert not warm.prepare(argv, env=env, cwd=tmp_path, preload=["json"], slot=SLOT)
    trial = await warm.launch(argv, env=env, cwd=tmp_path, trial_dir=tmp_path / "t",
                              preload=["json"], slot=SLOT)
    async with trial:
        await asyncio.wait_for(trial.wait(), WAIT)
    assert warm.spare_pid(SLOT) is None and warm.cold_starts == 1


async def test_a_module_that_cannot_be_preloaded_leaves_trials_cold(tmp_path, warm,
                                                                    caplog) -> None:
    argv = [sys.executable, str(TRIALS / "emit.py"), "2"]
    env = trial_env(tmp_path / "t")
    warm.prepare(argv, env=env, cwd=tmp_path, preload=["hpod_no_such_module"], slot=SLOT)
    with pytest.raises(LookupError, match="ModuleNotFoundError"):
        await asyncio.wait_for(warm.wait_ready(SLOT), WAIT)
    assert "could not preload hpod_no_such_module" in caplog.text
    hot = await run(warm, argv, env, tmp_path, tmp_path / "t", preload=["hpod_no_such_module"],
                    slot=SLOT)
    assert hot.exit.ok and warm.spare_pid(SLOT) is None, "no endless restarts"


async def test_spares_wait_at_low_priority_and_trials_run_at_normal(tmp_path, warm) -> None:
    # A preloaded module from the script's folder that starts a thread at import: it must
    # be found (sys.path[0] is the script's folder) and its thread must get its priority back.
    write(tmp_path / "scripts" / "threads_at_import.py",
          "import threading, time\nthreading.Thread(target=time.sleep, args=(3600,), "
          "daemon=True).start()\n")
    script = write(tmp_path / "scripts" / "probe.py", PROBE)
    argv = [sys.executable, str(script)]
    env = trial_env(tmp_path / "t")
    warm.prepare(argv, env=env, cwd=tmp_path, preload=["threads_at_import"], slot=SLOT)
    spare = await asyncio.wait_for(warm.wait_ready(SLOT), WAIT)
    base = os.getpriority(os.PRIO_PROCESS, 0)
    lowered = False
    if priority_restorable():
        assert nice_of(spare) == base + 10
        lowered = True
    if os.path.exists(f"/proc/{spare}/autogroup"):
        with open(f"/proc/{spare}/autogroup") as f:
            assert f.read().split()[-1] == "10", "an autogroup of its own, at nice 10"
        lowered = True
    if not lowered:
        pytest.skip("neither knob can be undone here: spares keep the normal priority")
    hot = await run(warm, argv, env, tmp_path, tmp_path / "t", preload=["threads_at_import"],
                    slot=SLOT)
    info = json.loads(hot.files["info.json"])
    assert hot.pid == spare and info["threads"] == 2
    assert info["nice"] == [base, base]
    assert info["autogroup_nice"] in (None, "0")


LAUNCHER = """
import asyncio, os, sys
from pathlib import Path
from hpod.executor.warm import WarmExecutor

async def main(folder):
    executor = WarmExecutor(spare_dir=folder / "spares", cores=2, running=None)
    argv = [sys.executable, {hang!r}]
    env = dict(os.environ)
    executor.prepare(argv, env=env, cwd=folder, preload=["json"], slot="s")
    spare = await executor.wait_ready("s")
    trial = await executor.launch(argv, env=env, cwd=folder, trial_dir=folder / "t",
                                  preload=["json"], slot="s")
    assert trial.pid == spare
    print(trial.pid, await executor.wait_ready("s"), flush=True)
    await asyncio.Event().wait()

asyncio.run(main(Path(sys.argv[1])))
"""


async def test_trial_and_spare_die_with_a_kill_9_daemon(tmp_path) -> None:
    launcher = write(tmp_path / "launcher.py", LAUNCHER.format(hang=str(TRIALS / "hang.py")))
    env = {k: v for k, v in os.environ.items() if not k.startswith("HPOD_")}
    daemon = await asyncio.create_subprocess_exec(
        sys.executable, str(launcher), str(tmp_path), stdout=asyncio.subprocess.PIPE, env=env)
    try:
        line = await asyncio.wait_for(daemon.stdout.readline(), WAIT)  # type: ignore[union-attr]
        trial_pid, spare_pid = map(int, line.split())
        assert alive(trial_pid) and alive(spare_pid)
    finally:
        daemon.kill()
        await daemon.wait()
    await wait_until(lambda: not alive(trial_pid) and not alive(spare_pid),
                     "the trial and the spare to die with their daemon")


def test_the_base_environment_leaves_out_what_only_the_trial_sees() -> None:
    env = {"PATH": "/bin", "HPOD_PARAMS": "{}", "CUDA_VISIBLE_DEVICES": "0",
           "CUDA_DEVICE_ORDER": "PCI_BUS_ID", "TF_FORCE_GPU_ALLOW_GROWTH": "true",
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    assert base_environment(env) == {"PATH": "/bin", "TF_CPP_MIN_LOG_LEVEL": "2"}


# -- TensorFlow: the spare imports it without touching a GPU -------------------------------

FAKE_LIBCUDA = r"""
#include <stdio.h>
#include <stdlib.h>
/* Records each cuInit with the CUDA_VISIBLE_DEVICES the driver would read and the memory
   setting TensorFlow reads when it then creates the GPU devices, then says "no device" (100),
   as a machine without a GPU does. */
int cuInit(unsigned int flags) {
    const char *log = getenv("FAKE_CUDA_LOG");
    const char *visible = getenv("CUDA_VISIBLE_DEVICES");
    const char *growth = getenv("TF_FORCE_GPU_ALLOW_GROWTH");
    FILE *f = log ? fopen(log, "a") : NULL;
    if (f) { fprintf(f, "cuInit CUDA_VISIBLE_DEVICES=%s TF_FORCE_GPU_ALLOW_GROWTH=%s\n",
                     visible ? visible : "<unset>", growth ? growth : "<unset>");
             fclose(f); }
    return 100;
}
int cuGetErrorName(int error, const char **name) { *name = "CUDA_ERROR_NO_DEVICE"; return 0; }
int cuGetErrorString(int error, const char **text) { *text = "no CUDA device"; return 0; }
"""

GETENV_SPY = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
/* LD_PRELOADed: logs every getenv (and secure_getenv) of a variable hpod sets only at the
   hand-off, so that reading one while the spare imports would show. */
static char *(*real_getenv)(const char *);
static void note(const char *name, const char *value) {
    static const char *late[] = {"CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER",
                                 "TF_FORCE_GPU_ALLOW_GROWTH", NULL};
    for (int i = 0; late[i]; i++) {
        if (strcmp(name, late[i]) != 0) continue;
        const char *log = real_getenv("GETENV_SPY_LOG");
        FILE *f = log ? fopen(log, "a") : NULL;
        if (f) { fprintf(f, "%s=%s\n", name, value ? value : "<unset>"); fclose(f); }
    }
}
char *getenv(const char *name) {
    if (!real_getenv) real_getenv = (char *(*)(const char *))dlsym(RTLD_NEXT, "getenv");
    char *value = real_getenv(name);
    if (name) note(name, value);
    return value;
}
char *secure_getenv(const char *name) { return getenv(name); }
"""

TF_TRIAL = r'''
import sys
preloaded = "tensorflow" in sys.modules
import json, os
import tensorflow as tf
from tensorflow.python.eager import context
import hpod.trial as trial

# The eager context creates the devices; it must not exist before this script runs.
untouched = context._context is None
trial.report(0, preloaded=preloaded, untouched=untouched)
gpus = tf.config.list_physical_devices("GPU")
(trial.trial_dir() / "tf.json").write_text(json.dumps({
    "visible": os.environ.get("CUDA_VISIBLE_DEVICES"), "gpus": len(gpus),
    "initialised_after": context._context is not None}))
'''


@pytest.mark.tensorflow
@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None,
                    reason="TensorFlow is not installed")
async def test_tensorflow_is_preloaded_and_sees_the_trials_gpu_settings(tmp_path) -> None:
    script = write(tmp_path / "scripts" / "tf_trial.py", TF_TRIAL)
    argv = [sys.executable, str(script)]
    # The placement of a trial on half a GPU: set at the hand-off, never seen by the spare.
    extra = {"TF_CPP_MIN_LOG_LEVEL": "2", "TF_FORCE_GPU_ALLOW_GROWTH": "true"}
    log = tmp_path / "cuda.log"
    reads = tmp_path / "getenv.log"
    if shutil.which("gcc"):
        # A stand-in CUDA driver: TensorFlow loads libcuda.so.1 from LD_LIBRARY_PATH when it
        # first looks for devices, and calls cuInit — which shows when, and with what setting.
        # And a getenv spy: what TensorFlow's C++ reads while it is imported, it may keep.
        lib = tmp_path / "fakecuda"
        for name, code in (("libcuda.so.1", FAKE_LIBCUDA), ("libspy.so", GETENV_SPY)):
            source = write(lib / f"{name}.c", code)
            subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(lib / name), str(source),
                            "-ldl"], check=True, timeout=120)
        extra.update(LD_LIBRARY_PATH=str(lib), FAKE_CUDA_LOG=str(log),
                     LD_PRELOAD=str(lib / "libspy.so"), GETENV_SPY_LOG=str(reads))
    env = trial_env(tmp_path / "t", HPOD_DECISION_TIMEOUT="0", **extra)
    assert "TF_FORCE_GPU_ALLOW_GROWTH" not in base_environment(env)
    executor = WarmExecutor(spare_dir=tmp_path / "spares", cores=2, running=None)
    try:
        executor.prepare(argv, env=env, cwd=tmp_path, preload=["tensorflow"], slot=SLOT)
        spare = await asyncio.wait_for(executor.wait_ready(SLOT), 300)
        assert not log.exists(), "importing TensorFlow must not initialise the CUDA driver"
        assert not reads.exists(), "nor read a placement variable (it would keep the spare's)"
        hot = await run(executor, argv, env, tmp_path, tmp_path / "t", preload=["tensorflow"],
                        slot=SLOT)
    finally:
        await executor.aclose()
    assert hot.pid == spare and hot.exit.ok, hot.exit.describe()
    report = hot.messages[0]
    assert isinstance(report, Report)
    # Structural proof of the saving: TensorFlow was imported before the script started.
    assert report.metrics == {"preloaded": 1.0, "untouched": 1.0}
    seen = json.loads(hot.files["tf.json"])
    assert seen == {"visible": "3", "gpus": 0, "initialised_after": True}
    if shutil.which("gcc"):
        assert log.read_text().splitlines() == [
            "cuInit CUDA_VISIBLE_DEVICES=3 TF_FORCE_GPU_ALLOW_GROWTH=true"]
        assert "CUDA_VISIBLE_DEVICES=3" in reads.read_text().splitlines()


# -- the study file: [trial] preload ---------------------------------------------------------


def parse(raw: object, command: list[str] | None = None):
    return parse_trial(Fields(path="s.toml"), raw, command)


def test_preload_is_a_list_of_module_names() -> None:
    command = [sys.executable, "/abs/train.py", "--epochs", "3"]
    assert parse({"preload": ["tensorflow", "sklearn.datasets"]}, command).preload == (
        "tensorflow", "sklearn.datasets")
    assert parse({}, command).preload == ()
    assert parse(None).preload == ()


@pytest.mark.parametrize("raw, match", [
    ("tensorflow", "must be a list"),
    ([1], "must be a string"),
    (["tensor flow"], "not a module name"),
    (["a..b"], "not a module name"),
    (["import"], "not a module name"),
    (["json", "json"], "listed twice"),
])
def test_bad_preload_values_are_refused(raw, match) -> None:
    with pytest.raises(StudySpecError, match=match) as info:
        parse({"preload": raw}, [sys.executable, "/abs/train.py"])
    assert info.value.field.startswith("trial.preload")


@pytest.mark.parametrize("command", [["/bin/sh", "train.sh"], [sys.executable, "-m", "train"],
                                     [sys.executable], ["/usr/bin/python3-other", "train.py"]])
def test_preload_needs_python_running_a_script(command) -> None:
    with pytest.raises(StudySpecError, match="only works for a Python script") as info:
        parse({"preload": ["tensorflow"]}, command)
    assert info.value.field == "trial.preload" and "remove preload" in (info.value.fix or "")


async def test_a_module_fixed_after_it_failed_to_preload_gets_spares_again(
        tmp_path, warm, monkeypatch) -> None:
    # Its config stayed "broken" until the daemon restarted: every trial after the fix cold.
    from hpod.executor import spare_pool

    module = tmp_path / "flaky_import.py"
    module.write_text("raise ImportError('not yet')\n")
    script = tmp_path / "x.py"
    script.write_text("import sys\n")
    argv = [sys.executable, str(script)]
    env = trial_env(tmp_path / "t")
    warm.prepare(argv, env=env, cwd=tmp_path, preload=["flaky_import"], slot=SLOT)
    with pytest.raises(LookupError, match="not yet"):
        await asyncio.wait_for(warm.wait_ready(SLOT), WAIT)
    module.write_text("FIXED = True\n")
    monkeypatch.setattr(spare_pool, "BROKEN_RETRY", 0.0)  # the retry's wait, shortened
    warm.prepare(argv, env=env, cwd=tmp_path, preload=["flaky_import"], slot=SLOT)
    assert await asyncio.wait_for(warm.wait_ready(SLOT), WAIT) > 0
