"""LocalExecutor with real subprocesses running the scripts in tests/fixtures/trials/."""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import sys
from pathlib import Path
from typing import AsyncIterator, Awaitable, Callable

import pytest

from hpod.decision import Decision
from hpod.errors import LaunchError
from hpod.executor import LocalExecutor, LocalTrial
from hpod.wire import CheckpointNote, Declaration, Message, Report, WireProblem

from helpers import alive, wait_until_async as wait_until

TRIALS = Path(__file__).parents[1] / "fixtures" / "trials"
WAIT = 60.0  # generous bound for a loaded 2-core box; conditions end the waits, not this


def base_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HPOD_")}
    env.update(extra)
    return env


@pytest.fixture
async def launch(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[LocalTrial]]]:
    executor = LocalExecutor()
    started: list[LocalTrial] = []

    async def create(script: str, *args: str, timeout: str = "60", **env: str) -> LocalTrial:
        trial_dir = tmp_path / f"trial-{len(started)}"
        trial = await executor.launch(
            [sys.executable, str(TRIALS / script), *args],
            env=base_env(HPOD_DECISION_TIMEOUT=timeout, HPOD_TRIAL_DIR=str(trial_dir), **env),
            cwd=tmp_path, trial_dir=trial_dir)
        started.append(trial)
        return trial

    yield create
    for trial in started:  # aclose is idempotent: tests that closed already are fine
        await trial.aclose()


async def collect(trial: LocalTrial) -> list[Message]:
    async with asyncio.timeout(WAIT):
        return [m async for m in trial.messages()]


async def next_message(stream, what: str) -> Message:
    async with asyncio.timeout(WAIT):
        message = await anext(stream)
    assert message is not None, what
    return message


async def test_reports_stream_and_exit_is_ok(launch, tmp_path) -> None:
    async with await launch("emit.py", "5", "--checkpoint", timeout="0") as trial:
        messages = await collect(trial)
        exit_ = await asyncio.wait_for(trial.wait(), WAIT)
    reports = [m for m in messages if isinstance(m, Report)]
    assert [r.step for r in reports] == [0, 1, 2, 3, 4]
    assert reports[1].metrics == {"loss": 0.5, "acc": 0.2}
    notes = [m for m in messages if isinstance(m, CheckpointNote)]
    assert notes[-1].path == str(tmp_path / "trial-0" / "ckpt-4.txt")
    assert exit_.ok and exit_.returncode == 0 and exit_.signal is None
    assert exit_.reason == "exit code 0"
    assert (tmp_path / "trial-0" / "stdout.log").exists()


async def test_nan_and_infinity_arrive(launch) -> None:
    async with await launch("emit.py", "2", "--nan", timeout="0") as trial:
        reports = [m for m in await collect(trial) if isinstance(m, Report)]
    assert math.isnan(reports[0].metrics["nan_loss"])
    assert reports[0].metrics["inf_loss"] == math.inf


async def test_garbage_becomes_problems_and_good_reports_still_arrive(launch) -> None:
    async with await launch("garbage.py") as trial:
        messages = await collect(trial)
        assert (await asyncio.wait_for(trial.wait(), WAIT)).ok
    kinds = [type(m).__name__ for m in messages]
    assert kinds == ["Report", "WireProblem", "WireProblem", "WireProblem", "WireProblem",
                     "WireProblem", "WireProblem", "WireProblem", "Report", "CheckpointNote",
                     "Report"]
    problems = [m for m in messages if isinstance(m, WireProblem)]
    assert "longer than" in problems[1].reason and len(problems[1].line_preview) < 200
    reports = [m for m in messages if isinstance(m, Report)]
    assert [r.step for r in reports] == [0, 1, 2]
    assert math.isnan(reports[2].metrics["loss"])


async def test_decide_round_trip_with_a_trial_that_obeys_stop(launch, tmp_path) -> None:
    async with await launch("emit.py", "1000", "--obey-stop", timeout="60") as trial:
        steps = []
        async for message in trial.messages():
            assert isinstance(message, Report)
            steps.append(message.step)
            trial.decide(Decision.STOP if message.step == 3 else Decision.CONTINUE,
                         message.step)
        exit_ = await asyncio.wait_for(trial.wait(), WAIT)
    assert steps == [0, 1, 2, 3]
    assert exit_.ok
    assert (tmp_path / "trial-0" / "stdout.log").read_text() == "stop at step 3\n"


async def test_unsolicited_stop_reaches_the_trial(launch) -> None:
    async with await launch("emit.py", "1000", "--obey-stop", timeout="60") as trial:
        stream = trial.messages()
        first = await next_message(stream, "step 0")
        trial.decide(Decision.STOP)  # the user pressed stop; the answer to step 0 comes later
        trial.decide(Decision.CONTINUE, first.step)  # type: ignore[union-attr]
        rest = [m async for m in stream]
        assert (await asyncio.wait_for(trial.wait(), WAIT)).ok
    assert rest == []


async def test_a_crash_has_its_stderr_tail_in_the_exit(launch) -> None:
    async with await launch("crash.py", timeout="0") as trial:
        reports = await collect(trial)
        exit_ = await asyncio.wait_for(trial.wait(), WAIT)
    assert len(reports) == 2
    assert not exit_.ok and exit_.returncode == 1 and exit_.reason == "exit code 1"
    assert "RuntimeError: boom at step 2" in exit_.stderr_tail
    assert "Traceback" in exit_.stderr_tail
    assert "noise line 0\n" not in exit_.stderr_tail, "only the last lines are kept"
    assert len(exit_.stderr_tail.splitlines()) <= 20
    assert "boom at step 2" in exit_.describe()


@pytest.mark.parametrize("code, returncode, signum, reason", [
    ("import sys; sys.exit(3)", 3, None, "exit code 3"),
    ("import os, signal; os.kill(os.getpid(), signal.SIGSEGV)", None, signal.SIGSEGV,
     "killed by SIGSEGV"),
    ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", None, signal.SIGKILL,
     "killed by SIGKILL (out of memory? see dmesg)"),
    ("import sys; sys.exit(137)", 137, None, "exit code 137 (128+9: a child killed by SIGKILL?)"),
])
async def test_exits_are_explained_in_words(tmp_path, code, returncode, signum, reason) -> None:
    async with await LocalExecutor().launch([sys.executable, "-c", code], env=base_env(),
                                            cwd=tmp_path, trial_dir=tmp_path / "t") as trial:
        exit_ = await asyncio.wait_for(trial.wait(), WAIT)
    assert (exit_.returncode, exit_.signal, exit_.reason) == (returncode, signum, reason)
    assert not exit_.ok


async def test_the_stderr_tail_is_bounded_and_from_this_run_only(tmp_path) -> None:
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "stderr.log").write_text("from an earlier run\n")
    code = "import sys; [print('x' * 1000, file=sys.stderr) for _ in range(50)]; sys.exit(1)"
    async with await LocalExecutor().launch([sys.executable, "-c", code], env=base_env(),
                                            cwd=tmp_path, trial_dir=tmp_path / "t") as trial:
        exit_ = await asyncio.wait_for(trial.wait(), WAIT)
    assert 0 < len(exit_.stderr_tail) <= 4096
    assert set(exit_.stderr_tail.splitlines()) == {"x" * 1000}

    code = "import sys; sys.exit(2)"  # a run that writes nothing gets no old lines
    async with await LocalExecutor().launch([sys.executable, "-c", code], env=base_env(),
                                            cwd=tmp_path, trial_dir=tmp_path / "t") as trial:
        exit_ = await asyncio.wait_for(trial.wait(), WAIT)
    assert exit_.stderr_tail == "" and exit_.describe() == "exit code 2"
    assert (tmp_path / "t" / "stderr.log").read_text().startswith("from an earlier run\n")


async def test_stop_escalates_to_sigkill_after_grace(launch) -> None:
    async with await launch("ignore_term.py", timeout="0") as trial:
        stream = trial.messages()
        await next_message(stream, "the trial ignores SIGTERM from now on")
        await asyncio.wait_for(trial.stop(grace=0.2), WAIT)
        exit_ = await trial.wait()
    assert exit_.signal == signal.SIGKILL and exit_.returncode is None
    assert "SIGKILL from hpod" in exit_.reason and "after SIGTERM" in exit_.reason


async def test_stop_of_a_hung_trial_is_a_sigterm(launch) -> None:
    async with await launch("hang.py") as trial:
        await asyncio.wait_for(trial.stop(grace=30), WAIT)
        exit_ = await trial.wait()
        assert await collect(trial) == []
    assert exit_.signal == signal.SIGTERM
    assert exit_.reason == "stopped by SIGTERM from hpod"


async def test_stop_kills_what_the_trial_forked(launch) -> None:
    async with await launch("fork_child.py", timeout="0") as trial:
        stream = trial.messages()
        report = await next_message(stream, "the child's pid")
        child = int(report.metrics["child_pid"])  # type: ignore[union-attr]
        assert alive(child)
        await asyncio.wait_for(trial.stop(grace=0.2), WAIT)
        # The child held the report pipe open: the stream ends only because it is dead too.
        assert [m async for m in stream] == []
    await wait_until(lambda: not alive(child), f"forked child {child} to be gone")


async def test_a_stray_child_is_killed_when_the_trial_exits(launch) -> None:
    async with await launch("fork_child.py", "--exit", timeout="0") as trial:
        messages = await collect(trial)
        child = int(messages[0].metrics["child_pid"])  # type: ignore[union-attr]
        assert (await asyncio.wait_for(trial.wait(), WAIT)).ok
    await wait_until(lambda: not alive(child), f"stray child {child} to be gone")


async def test_what_left_the_group_is_killed_when_the_trial_is_closed(launch) -> None:
    # A helper in a session of its own is out of reach of the group kill; it carries the
    # trial's HPOD_TRIAL_DIR, and closing the trial ends it (not only the folder's next use).
    trial = await launch("fork_child.py", "--exit", "--setsid", timeout="0")
    async with trial:
        messages = await collect(trial)
        child = int(messages[0].metrics["child_pid"])  # type: ignore[union-attr]
        assert (await asyncio.wait_for(trial.wait(), WAIT)).ok
        assert os.getsid(child) == child and alive(child)  # the group kill at the exit did not reach it
    await wait_until(lambda: not alive(child), f"helper {child} in its own session to be gone")


async def test_async_with_kills_the_group_on_the_way_out(launch) -> None:
    trial = await launch("fork_child.py", timeout="0")
    async with trial:
        report = await next_message(trial.messages(), "the child's pid")
        child = int(report.metrics["child_pid"])  # type: ignore[union-attr]
    exit_ = await trial.wait()
    assert exit_.signal == signal.SIGKILL and "from hpod" in exit_.reason
    await wait_until(lambda: not alive(trial.pid) and not alive(child), "the group to be gone")
    trial.decide(Decision.STOP)  # after close: ignored, not an error


async def test_a_trial_that_never_reads_control_does_not_block_decide(launch) -> None:
    async with await launch("deaf.py") as trial:
        await next_message(trial.messages(), "deaf trial ready")

        def flood() -> None:
            for step in range(10_000):
                trial.decide(Decision.CONTINUE, step)

        # In a thread so that a blocking write would show up as a timeout, not a hung test.
        await asyncio.wait_for(asyncio.to_thread(flood), WAIT)
        assert trial.dropped_decisions > 0
        assert trial.pid and alive(trial.pid)
        await asyncio.wait_for(trial.stop(grace=5), WAIT)


async def test_decide_after_the_trial_exited_is_dropped_quietly(launch) -> None:
    async with await launch("emit.py", "1", timeout="0") as trial:
        await collect(trial)
        await asyncio.wait_for(trial.wait(), WAIT)
        trial.decide(Decision.STOP, 0)
        assert trial.dropped_decisions == 1


async def test_messages_can_be_read_only_once(launch) -> None:
    async with await launch("emit.py", "1", timeout="0") as trial:
        await collect(trial)
        with pytest.raises(RuntimeError):
            await anext(trial.messages())


@pytest.mark.parametrize("argv, match", [
    (["/nonexistent/trainer"], "not found"),
    (["hpod-no-such-command-anywhere"], "not found on PATH"),
    ([], "empty"),
])
async def test_launch_failures_are_launch_errors(tmp_path, argv, match) -> None:
    with pytest.raises(LaunchError, match=match):
        await LocalExecutor().launch(argv, env=base_env(), cwd=tmp_path,
                                     trial_dir=tmp_path / "t")


async def test_launch_of_a_file_that_is_not_executable(tmp_path) -> None:
    script = tmp_path / "train.sh"
    script.write_text("echo hi\n")
    with pytest.raises(LaunchError, match="not executable"):
        await LocalExecutor().launch([str(script)], env=base_env(), cwd=tmp_path,
                                     trial_dir=tmp_path / "t")


async def test_launch_in_a_missing_folder(tmp_path) -> None:
    with pytest.raises(LaunchError, match="working directory"):
        await LocalExecutor().launch([sys.executable, "-c", "pass"], env=base_env(),
                                     cwd=tmp_path / "missing", trial_dir=tmp_path / "t")


async def test_launch_failure_leaks_no_fds(tmp_path) -> None:
    before = set(os.listdir("/proc/self/fd"))
    for _ in range(5):
        with pytest.raises(LaunchError):
            await LocalExecutor().launch(["/nonexistent"], env=base_env(), cwd=tmp_path,
                                         trial_dir=tmp_path / "t")
    assert set(os.listdir("/proc/self/fd")) <= before


async def test_the_environment_is_exactly_what_was_given(tmp_path) -> None:
    code = "import os, json; print(json.dumps(sorted(os.environ)))"
    env = {"PATH": os.environ.get("PATH", "/usr/bin"), "HPOD_PARAMS": "{}"}
    async with await LocalExecutor().launch([sys.executable, "-c", code], env=env,
                                            cwd=tmp_path, trial_dir=tmp_path / "t") as trial:
        assert (await asyncio.wait_for(trial.wait(), WAIT)).ok
    names = set(json.loads((tmp_path / "t" / "stdout.log").read_text()))
    names.discard("LC_CTYPE")  # PEP 538: Python may coerce the C locale in its own environ
    assert names == {"PATH", "HPOD_PARAMS", "HPOD_REPORT_FD", "HPOD_CONTROL_FD"}


async def test_the_pipes_are_fds_3_and_4_and_nothing_else_leaks(tmp_path) -> None:
    code = ("import os, json; print(json.dumps([os.environ['HPOD_REPORT_FD'], "
            "os.environ['HPOD_CONTROL_FD'], sorted(map(int, os.listdir('/proc/self/fd')))]))")
    async with await LocalExecutor().launch([sys.executable, "-c", code], env=base_env(),
                                            cwd=tmp_path, trial_dir=tmp_path / "t") as trial:
        assert (await asyncio.wait_for(trial.wait(), WAIT)).ok
    report_fd, control_fd, fds = json.loads((tmp_path / "t" / "stdout.log").read_text())
    assert (report_fd, control_fd) == ("3", "4")
    assert set(fds) - {0, 1, 2, 3, 4} <= {5}, "only the fd listdir itself opened"


async def test_a_plain_posix_sh_trial_can_use_the_fd_variables(tmp_path) -> None:
    # dash takes only one-digit descriptors in redirections: the pipes must be 3 and 4.
    script = ('for step in 1 2 3; do printf \'{"step": %d, "loss": 0.5}\\n\' "$step" '
              '>&"$HPOD_REPORT_FD"; read -r answer <&"$HPOD_CONTROL_FD"; '
              'case $answer in *stop*) exit 0;; esac; done; exit 9')
    env = base_env(HPOD_DECISION_TIMEOUT="60")
    async with await LocalExecutor().launch(["sh", "-c", script], env=env, cwd=tmp_path,
                                            trial_dir=tmp_path / "t") as trial:
        steps = []
        async for message in trial.messages():
            if isinstance(message, Declaration):  # the quick example can be paused
                continue
            assert isinstance(message, Report), message
            steps.append(message.step)
            trial.decide(Decision.STOP if message.step == 2 else Decision.CONTINUE,
                         message.step)
        exit_ = await asyncio.wait_for(trial.wait(), WAIT)
    assert exit_.ok, exit_.describe()
    assert steps == [1, 2]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
async def test_the_trial_dies_with_a_kill_9_daemon(tmp_path) -> None:
    daemon = await asyncio.create_subprocess_exec(
        sys.executable, str(TRIALS / "launcher.py"), str(tmp_path / "t"),
        stdout=asyncio.subprocess.PIPE, env=base_env())
    try:
        line = await asyncio.wait_for(daemon.stdout.readline(), WAIT)  # type: ignore[union-attr]
        trial_pid = int(line)
        assert alive(trial_pid)
    finally:
        daemon.kill()
        await daemon.wait()
    await wait_until(lambda: not alive(trial_pid), f"trial {trial_pid} to die with its daemon")


EXAMPLES = Path(__file__).parents[2] / "examples"


@pytest.mark.parametrize("argv", [
    [sys.executable, str(EXAMPLES / "quick" / "train.py")],
    ["sh", str(EXAMPLES / "shell" / "train.sh")],
], ids=["quick", "shell"])
@pytest.mark.parametrize("timeout", ["0", "60"])
async def test_the_examples_report_every_epoch(tmp_path, argv, timeout) -> None:
    env = base_env(HPOD_PARAMS='{"lr": 0.01, "units": 32, "dropout": 0.3, "act": "tanh", '
                               '"epochs": 10}', HPOD_DECISION_TIMEOUT=timeout,
                   HPOD_TRIAL_DIR=str(tmp_path / "t"))
    async with await LocalExecutor().launch(argv, env=env, cwd=tmp_path,
                                            trial_dir=tmp_path / "t") as trial:
        reports = []
        async for message in trial.messages():
            if isinstance(message, Declaration):  # the quick example can be paused
                continue
            assert isinstance(message, Report), message
            reports.append(message)
            trial.decide(Decision.CONTINUE, message.step)
        exit_ = await asyncio.wait_for(trial.wait(), WAIT)
    assert exit_.ok, exit_.describe()
    assert [r.step for r in reports] == list(range(1, 11))
    assert all(set(r.metrics) == {"loss", "accuracy"} for r in reports)
    assert reports[-1].metrics["loss"] < reports[0].metrics["loss"]


@pytest.mark.parametrize("argv", [
    [sys.executable, str(EXAMPLES / "quick" / "train.py")],
    ["sh", str(EXAMPLES / "shell" / "train.sh")],
], ids=["quick", "shell"])
async def test_the_examples_obey_stop(tmp_path, argv) -> None:
    env = base_env(HPOD_PARAMS='{"epochs": 10}', HPOD_DECISION_TIMEOUT="60",
                   HPOD_TRIAL_DIR=str(tmp_path / "t"))
    async with await LocalExecutor().launch(argv, env=env, cwd=tmp_path,
                                            trial_dir=tmp_path / "t") as trial:
        steps = []
        async for message in trial.messages():
            if isinstance(message, Declaration):  # the quick example can be paused
                continue
            assert isinstance(message, Report), message
            steps.append(message.step)
            trial.decide(Decision.STOP if message.step == 3 else Decision.CONTINUE, message.step)
        assert (await asyncio.wait_for(trial.wait(), WAIT)).ok
    assert steps == [1, 2, 3]


async def test_the_quick_example_pauses_and_resumes_from_its_checkpoint(tmp_path) -> None:
    argv = [sys.executable, str(EXAMPLES / "quick" / "train.py")]
    env = base_env(HPOD_PARAMS='{"epochs": 6}', HPOD_DECISION_TIMEOUT="60",
                   HPOD_TRIAL_DIR=str(tmp_path / "t"))
    checkpoint = None
    async with await LocalExecutor().launch(argv, env=env, cwd=tmp_path,
                                            trial_dir=tmp_path / "t") as trial:
        async for message in trial.messages():
            if isinstance(message, Report):
                trial.decide(Decision.PAUSE if message.step == 2 else Decision.CONTINUE,
                             message.step)
            elif isinstance(message, CheckpointNote):
                checkpoint = message.path
        assert (await asyncio.wait_for(trial.wait(), WAIT)).ok
    assert checkpoint is not None
    env.update(HPOD_RESUME_FROM=checkpoint, HPOD_DECISION_TIMEOUT="0")
    async with await LocalExecutor().launch(argv, env=env, cwd=tmp_path,
                                            trial_dir=tmp_path / "t") as trial:
        steps = [m.step for m in await collect(trial) if isinstance(m, Report)]
        assert (await asyncio.wait_for(trial.wait(), WAIT)).ok
    assert steps == [3, 4, 5, 6]


def test_a_stderr_tail_shows_control_bytes_as_replacement_characters(tmp_path) -> None:
    # A NUL from a binary dump ended the reason early for C readers of the database.
    from hpod.executor.process import stderr_tail

    log = tmp_path / "stderr.log"
    log.write_bytes(b"noise\r\ncore dumped \x00\x01\x1b[31m here\nRuntimeError: boom\n")
    tail = stderr_tail(log)
    assert tail == "noise\ncore dumped \ufffd\ufffd\ufffd[31m here\nRuntimeError: boom"
