"""A stand-in daemon for tests/daemon/test_fast_spawn.py, run as its own process.

    python spawn_probe.py fds|errors|orphan|warm fast|preexec WORKDIR

Started by a test with close_fds, so that descriptors 3 and 4 are free to claim (under pytest
they are not). It claims them as `hpod serve` does, builds a LocalExecutor on the fast path
(ChildFdSlots + setpriv) or the preexec path, runs its probe and prints one JSON line; `orphan`
then waits to be killed.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import sys
from pathlib import Path

from hpod.decision import Decision
from hpod.errors import LaunchError
from hpod.executor.child_watcher import pidfd_child_watcher
from hpod.executor.fd_slots import ChildFdSlots
from hpod.executor.local import LocalExecutor
from hpod.executor.spawn import find_setpriv
from hpod.executor.warm import WarmExecutor
from hpod.wire import Declaration, Report

WAIT = 60.0

LIST_FDS = """\
import json, os
fds = {}
for fd in os.listdir("/proc/self/fd"):
    try:
        fds[fd] = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        pass  # the descriptor listdir used
print(json.dumps({"env": [os.environ["HPOD_REPORT_FD"], os.environ["HPOD_CONTROL_FD"]],
                  "fds": fds, "ppid": os.getppid()}))
"""

# dash takes only one-digit descriptors in `>&"$HPOD_REPORT_FD"`.
SH_ROUND_TRIP = ('for step in 1 2 3; do printf \'{"step": %d, "loss": 0.5}\\n\' "$step" '
                 '>&"$HPOD_REPORT_FD"; read -r answer <&"$HPOD_CONTROL_FD"; '
                 'case $answer in *stop*) exit 0;; esac; done; exit 9')

# Reports once, then waits for a signal: it never exits by itself, not even when the pipes'
# other ends close with its daemon.
ORPHAN = """\
import os, signal
os.write(int(os.environ["HPOD_REPORT_FD"]), b'{"step": 0, "loss": 1.0}\\n')
while True:
    signal.pause()
"""

WARM_TRIAL = """\
import json, os, sys
import hpod.trial as trial
trial.report(0, loss=1.0)
print(json.dumps({"fds": sorted(os.listdir("/proc/self/fd")),
                  "preloaded": "colorsys" in sys.modules}))
"""


def env(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("HPOD_")}
    base.update(extra)
    return base


def executor(path: str, fd_slots: ChildFdSlots | None) -> LocalExecutor:
    if path == "fast":
        return LocalExecutor(fd_slots=fd_slots, setpriv=find_setpriv())
    return LocalExecutor()


def watcher() -> str | None:
    """The class of asyncio's child watcher on Python 3.11 (3.12 deprecated the API)."""
    if sys.version_info >= (3, 12):
        return None
    return type(asyncio.get_child_watcher()).__name__


async def probe_fds(local: LocalExecutor, work: Path) -> dict[str, object]:
    trial = await local.launch([sys.executable, "-c", LIST_FDS], env=env(), cwd=work,
                               trial_dir=work / "fds")
    async with trial:
        exit_ = await asyncio.wait_for(trial.wait(), WAIT)
    seen = json.loads((work / "fds" / "stdout.log").read_text())
    steps = []
    trial = await local.launch(["sh", "-c", SH_ROUND_TRIP], env=env(HPOD_DECISION_TIMEOUT="60"),
                               cwd=work, trial_dir=work / "sh")
    async with trial:
        async with asyncio.timeout(WAIT):
            async for message in trial.messages():
                if isinstance(message, Report):
                    steps.append(message.step)
                    trial.decide(Decision.STOP if message.step == 2 else Decision.CONTINUE,
                                 message.step)
        sh_exit = await asyncio.wait_for(trial.wait(), WAIT)
    return {"fast_starts": local.fast_starts, "ok": exit_.ok, "child": seen,
            "me": os.getpid(),
            "sh_steps": steps, "sh_ok": sh_exit.ok, "watcher": watcher(),
            "after": {fd: os.readlink(f"/proc/self/fd/{fd}") for fd in ("3", "4")}}


async def probe_errors(local: LocalExecutor, work: Path) -> dict[str, object]:
    def script(name: str, text: str, mode: int) -> str:
        path = work / name
        path.write_text(text)
        path.chmod(mode)
        return str(path)

    executable = stat.S_IRWXU
    (work / "folder").mkdir()
    cases = {
        "missing": ([str(work / "no-such-program")], work),
        "missing on PATH": (["hpod-no-such-command-anywhere"], work),
        "relative missing": (["./nothing-here"], work),
        "folder": ([str(work / "folder")], work),
        "not executable": ([script("plain.sh", "echo hi\n", 0o644)], work),
        "no #! line": ([script("noline.sh", "echo hi\n", executable)], work),
        "missing interpreter": ([script("gone.sh", "#!/no/such/sh\necho hi\n", executable)],
                                work),
        "CRLF #! line": ([script("crlf.sh", "#!/bin/sh\r\necho hi\r\n", executable)], work),
        "missing cwd": ([sys.executable, "-c", "pass"], work / "missing"),
        "missing cwd and program": (["./nothing-here"], work / "missing"),
        "#! script": ([script("ok.sh", "#!/bin/sh\nexit 3\n", executable)], work),
        "relative #! script": (["./ok.sh"], work),
    }
    messages: dict[str, str] = {}
    before = set(os.listdir("/proc/self/fd"))
    for name, (argv, cwd) in cases.items():
        try:
            trial = await local.launch(argv, env=env(), cwd=cwd,
                                       trial_dir=work / "t" / name.replace(" ", "-"))
        except LaunchError as e:
            messages[name] = str(e)
            continue
        async with trial:
            messages[name] = "started: " + (await asyncio.wait_for(trial.wait(), WAIT)).reason
    leaked = sorted(set(os.listdir("/proc/self/fd")) - before)
    return {"fast_starts": local.fast_starts, "messages": messages, "leaked": leaked}


async def probe_orphan(local: LocalExecutor, work: Path) -> dict[str, object]:
    trial = await local.launch([sys.executable, "-c", ORPHAN], env=env(), cwd=work,
                               trial_dir=work / "orphan")
    stream = trial.messages()
    async with asyncio.timeout(WAIT):
        first = await anext(stream)  # the trial runs its own code: the exec is behind it
    return {"fast_starts": local.fast_starts, "pid": trial.pid,
            "first": type(first).__name__}


async def probe_warm(local: LocalExecutor, work: Path) -> dict[str, object]:
    warm = WarmExecutor(local, spare_dir=work / "spares", running=None, cores=2)
    script = work / "warm_trial.py"
    script.write_text(WARM_TRIAL)
    argv = [sys.executable, str(script)]
    trial_env = env(HPOD_DECISION_TIMEOUT="0", HPOD_TRIAL_DIR=str(work / "warm"))
    try:
        assert warm.prepare(argv, env=trial_env, cwd=work, preload=["colorsys"], slot="s")
        spare = await asyncio.wait_for(warm.wait_ready("s"), WAIT)
        trial = await warm.launch(argv, env=trial_env, cwd=work, trial_dir=work / "warm",
                                  preload=["colorsys"], slot="s")
        async with trial:
            async with asyncio.timeout(WAIT):
                messages = [m async for m in trial.messages()
                            if not isinstance(m, Declaration)]
            exit_ = await asyncio.wait_for(trial.wait(), WAIT)
    finally:
        await warm.aclose()
    seen = json.loads((work / "warm" / "stdout.log").read_text())
    return {"fast_starts": local.fast_starts, "spare": spare, "pid": trial.pid, "ok": exit_.ok,
            "reports": [m.step for m in messages if isinstance(m, Report)],
            "warm_starts": warm.warm_starts, **seen}


async def main(kind: str, local: LocalExecutor, work: Path) -> None:
    probes = {"fds": probe_fds, "errors": probe_errors, "orphan": probe_orphan,
              "warm": probe_warm}
    async with pidfd_child_watcher():
        result = await probes[kind](local, work)
        print(json.dumps(result), flush=True)
        if kind == "orphan":
            await asyncio.Event().wait()  # until the test kills us with SIGKILL


if __name__ == "__main__":
    # As `hpod serve`: before asyncio opens its own descriptors.
    slots = ChildFdSlots.claim()
    if slots is None:
        raise SystemExit("descriptors 3 and 4 are taken: start this probe with close_fds")
    try:
        asyncio.run(main(sys.argv[1], executor(sys.argv[2], slots), Path(sys.argv[3])))
    finally:
        slots.close()
