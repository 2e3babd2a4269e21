"""Hooks: real subprocesses fed the study summary on stdin; failures come back as results."""

from __future__ import annotations

import asyncio
import json
import math
import os
import sys
import time
from pathlib import Path

import pytest

from hpod.executor.leftovers import find_leftovers
from hpod.executor.process import group_alive
from hpod.hooks import OUTPUT_TAIL_BYTES, hook_for, run_hook, run_study_hook, study_summary
from hpod.spec import parse_study
from hpod.store import open_store
from hpod.store.records import (
    Direction,
    EventLevel,
    StudyRecord,
    StudyState,
    TrialRecord,
    TrialState,
)

SUMMARY = {"name": "demo", "state": "complete", "best": {"value": 0.5}}


def script(folder: Path, name: str, body: str) -> Path:
    path = folder / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def wait_until(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.02)


async def test_the_hook_reads_the_summary_on_stdin(tmp_path: Path) -> None:
    hook = script(tmp_path, "hook.sh", 'cat > "$1"\necho done\necho note >&2\n')
    result = await run_hook([str(hook), str(tmp_path / "got.json")], SUMMARY, cwd=tmp_path)
    assert result.ok and result.exit_code == 0 and result.reason == "exit code 0"
    assert json.loads((tmp_path / "got.json").read_text()) == SUMMARY
    assert (result.stdout, result.stderr) == ("done\n", "note\n")


async def test_the_hook_runs_in_cwd_with_the_given_env(tmp_path: Path) -> None:
    hook = script(tmp_path, "hook.sh", 'pwd\necho "$GREETING"\n')
    (tmp_path / "work").mkdir()
    result = await run_hook([str(hook)], SUMMARY, cwd=tmp_path / "work",
                            env={"GREETING": "hello", "PATH": os.environ["PATH"]})
    assert result.stdout.splitlines() == [str((tmp_path / "work").resolve()), "hello"]


async def test_a_failing_hook_is_a_result_with_its_stderr(tmp_path: Path) -> None:
    hook = script(tmp_path, "fail.sh", 'echo "smtp refused" >&2\nexit 3\n')
    result = await run_hook([str(hook)], SUMMARY, cwd=tmp_path)
    assert not result.ok and result.exit_code == 3 and result.reason == "exit code 3"
    assert result.describe("on_finish") == "on_finish (fail.sh): exit code 3: smtp refused"


async def test_a_hook_killed_by_a_signal(tmp_path: Path) -> None:
    hook = script(tmp_path, "die.sh", "kill -TERM $$\n")
    result = await run_hook([str(hook)], SUMMARY, cwd=tmp_path)
    assert not result.ok and result.exit_code is None and result.reason == "killed by SIGTERM"


async def test_a_hanging_hook_is_killed_with_its_group_at_the_timeout(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    hook = script(tmp_path, "hang.sh", f'sleep 1000 &\necho $! > {pids}.tmp\nmv {pids}.tmp {pids}\n'
                                       "exec sleep 1000\n")
    # The timeout may come before a loaded machine has run the hook as far as writing the pid
    # of its child: every process of the hook is also found by a variable in its environment.
    marker = tmp_path / "hook"
    result = await run_hook([str(hook)], SUMMARY, cwd=tmp_path, timeout=0.5,
                            env={**os.environ, "HPOD_TRIAL_DIR": str(marker)})
    assert not result.ok and result.exit_code is None
    assert result.reason == "killed after the 0.5 s timeout"
    wait_until(lambda: find_leftovers(marker) == [])
    if pids.exists():
        child = int(pids.read_text())
        wait_until(lambda: not _alive(child))


async def test_what_a_hook_leaves_behind_is_killed(tmp_path: Path) -> None:
    # A background child keeps stdout open: the hook must still return, and the child die.
    pids = tmp_path / "pids"
    hook = script(tmp_path, "bg.sh", f"sleep 1000 &\necho $! > {pids}\necho started\n")
    result = await run_hook([str(hook)], SUMMARY, cwd=tmp_path, timeout=60)
    assert result.ok and result.stdout == "started\n"
    wait_until(lambda: not _alive(int(pids.read_text())))


async def test_a_cancelled_hook_takes_its_group_with_it(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    hook = script(tmp_path, "hang.sh", f"echo $$ > {pids}.tmp\nmv {pids}.tmp {pids}\nexec sleep 1000\n")
    task = asyncio.create_task(run_hook([str(hook)], SUMMARY, cwd=tmp_path, timeout=600))
    while not pids.exists():
        await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    pgid = int(pids.read_text())
    wait_until(lambda: not group_alive(pgid))


@pytest.mark.parametrize("argv, fragment", [
    (["/no/such/hook"], "cannot start: command '/no/such/hook' not found"),
    (["hpod-no-such-hook-program"], "cannot start: command 'hpod-no-such-hook-program' not found"),
    ([], "cannot start: the command is empty"),
])
async def test_a_missing_command_is_a_failed_result(tmp_path: Path, argv, fragment) -> None:
    result = await run_hook(argv, SUMMARY, cwd=tmp_path)
    assert not result.ok and result.exit_code is None and result.reason == fragment


async def test_a_file_that_is_not_executable(tmp_path: Path) -> None:
    hook = tmp_path / "hook.sh"
    hook.write_text("#!/bin/sh\n")
    result = await run_hook([str(hook)], SUMMARY, cwd=tmp_path)
    assert not result.ok and "not executable" in result.reason


async def test_a_missing_working_directory(tmp_path: Path) -> None:
    result = await run_hook(["true"], SUMMARY, cwd=tmp_path / "gone")
    assert not result.ok and "does not exist" in result.reason


async def test_output_is_bounded_and_a_hook_may_ignore_stdin(tmp_path: Path) -> None:
    big = {"blob": "x" * 1_000_000}  # more than a pipe holds: the hook never reads it
    code = "import sys; sys.stdout.write('a' * 100000 + 'END'); sys.stderr.write('e' * 100000)"
    result = await run_hook([sys.executable, "-c", code], big, cwd=tmp_path)
    assert result.ok
    assert len(result.stdout) == OUTPUT_TAIL_BYTES and result.stdout.endswith("END")
    assert len(result.stderr) == OUTPUT_TAIL_BYTES


# -- the summary ---------------------------------------------------------------------------------

def study(state: StudyState = StudyState.COMPLETE, **changes) -> StudyRecord:
    fields = dict(id=1, name="digits", path="/s/digits.toml", state=state, spec=None,
                  identity="x", direction=Direction.MINIMIZE, metric="loss", error=None,
                  created_at=1000.0, updated_at=1000.0, finished_at=1900.0)
    fields.update(changes)
    return StudyRecord(**fields)


def trial(number: int, state: TrialState, value: float | None = None,
          started: float | None = 1100.0) -> TrialRecord:
    return TrialRecord(id=number + 1, study_id=1, number=number, params={"lr": number / 10},
                       state=state, attempt=0, value=value, last_step=None, reason=None,
                       exit_code=None, checkpoint=None, placement=None, created_at=1050.0,
                       started_at=started, finished_at=None)


def test_summary_counts_best_and_times() -> None:
    trials = [trial(0, TrialState.COMPLETE, 0.3, started=1200.0),
              trial(1, TrialState.COMPLETE, 0.1),
              trial(2, TrialState.COMPLETE, 0.1),  # a tie: the earlier trial wins
              trial(3, TrialState.STOPPED, 0.01),  # stopped early: never the best
              trial(4, TrialState.FAILED, None),
              trial(5, TrialState.COMPLETE, math.nan)]
    summary = study_summary(study(), trials, db_path=Path("/s/.hpod/hpod.db"))
    assert json.loads(json.dumps(summary, allow_nan=False)) == summary
    assert summary["name"] == "digits" and summary["state"] == "complete"
    assert summary["database"] == "/s/.hpod/hpod.db" and summary["study_file"] == "/s/digits.toml"
    assert summary["trials"] == 6
    assert summary["counts"] == {"queued": 0, "running": 0, "paused": 0, "complete": 4,
                                 "stopped": 1, "failed": 1, "interrupted": 0}
    assert summary["best"] == {"trial": 1, "value": 0.1, "params": {"lr": 0.1}}
    assert (summary["started_at"], summary["finished_at"], summary["elapsed_s"]) == (1100.0, 1900.0, 800.0)
    assert summary["started"] == "1970-01-01T00:18:20+00:00"


def test_summary_of_a_failed_study_without_trials() -> None:
    failed = study(StudyState.FAILED, error="5 trials failed in a row", direction=Direction.MAXIMIZE,
                   finished_at=None)
    summary = study_summary(failed, [], db_path="/db", now=1500.0)
    assert summary["state"] == "failed" and summary["error"] == "5 trials failed in a row"
    assert summary["best"] is None and summary["trials"] == 0
    assert (summary["started_at"], summary["finished_at"], summary["elapsed_s"]) == (1000.0, 1500.0, 500.0)
    open_summary = study_summary(failed, [], db_path="/db")
    assert open_summary["finished_at"] is None and open_summary["elapsed_s"] is None


def test_maximize_picks_the_largest() -> None:
    trials = [trial(0, TrialState.COMPLETE, 0.3), trial(1, TrialState.COMPLETE, 0.9)]
    assert study_summary(study(direction=Direction.MAXIMIZE), trials, db_path="/db")["best"]["trial"] == 1


# -- for the controller ----------------------------------------------------------------------------

def spec_with_hooks(tmp_path: Path, **hooks):
    data = {"command": ["python", "train.py"], "objective": {"metric": "loss", "direction": "min"},
            "budget": {"trials": 5}, "space": {"x": {"type": "float", "low": 0.0, "high": 1.0}},
            "env": {"WHO": "tester"}, **hooks}
    return parse_study(data, path=tmp_path / "s.toml")


def test_hook_for_picks_by_state(tmp_path: Path) -> None:
    spec = spec_with_hooks(tmp_path, on_finish=["true"])
    assert hook_for(spec, StudyState.COMPLETE)[0] == "on_finish"
    assert hook_for(spec, StudyState.FAILED) is None
    assert hook_for(spec, StudyState.STOPPED) is None


async def test_run_study_hook_against_a_real_store(tmp_path: Path) -> None:
    script(tmp_path, "notify.sh", 'cat > got.json\necho "$WHO $HPOD_HOOK" > env.txt\n')
    script(tmp_path, "broken.sh", "echo no mail server >&2\nexit 1\n")
    spec = spec_with_hooks(tmp_path, on_finish=["./notify.sh"], on_failure=["./broken.sh"])
    db = tmp_path / "hpod.db"
    async with open_store(db) as store:
        record = await store.create_study(spec.name, str(spec.path), spec=spec.to_dict(),
                                          identity=spec.identity(), direction=Direction.MINIMIZE,
                                          metric="loss")
        made = await store.create_trial(record.id, {"x": 0.5})
        await store.transition(made.id, TrialState.RUNNING)
        await store.transition(made.id, TrialState.COMPLETE, value=0.25)
        done = await store.update_study(record.id, state=StudyState.COMPLETE)
        result = await run_study_hook(spec, done, store, db_path=db)
        assert result is not None and result.ok
        got = json.loads((tmp_path / "got.json").read_text())
        assert got["best"] == {"trial": 0, "value": 0.25, "params": {"x": 0.5}}
        assert got["database"] == str(db) and got["counts"]["complete"] == 1
        assert (tmp_path / "env.txt").read_text() == "tester on_finish\n"

        failed = await store.update_study(record.id, state=StudyState.FAILED, error="boom")
        result = await run_study_hook(spec, failed, store, db_path=db)
        assert result is not None and not result.ok
        events = await store.list_events(study_id=record.id)
        assert [(e.level, e.message) for e in events] == [
            (EventLevel.INFO, "study s: on_finish (notify.sh): exit code 0"),
            (EventLevel.WARNING, "study s: on_failure (broken.sh): exit code 1: no mail server"),
        ]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rfind(b")") + 2:].split()[0] != b"Z"


