"""The worker's side of a Ray trial: an actor that runs trials on its node and relays them.

`TrialHost` is a plain class; hpod/executor/ray.py makes it a Ray actor (`ray.remote`), so this
module never imports Ray and a worker unpickles the class by its name. On its node it starts the
trial exactly as the local executor does (hpod/executor/local.py: own process group, pipes on
descriptors 3 and 4, PR_SET_PDEATHSIG to the worker process), with stdout/stderr spooled to a
node-local folder. The daemon long-polls `poll()`: each answer carries every report that arrived
since the last one, the new output and, at the end, how the process ended. Answers to reports
come back in batches through `decide()`.

An actor that outlives its trial can take the next one (`start()` again): the daemon keeps a
placed actor for a moment after a trial so that the next trial of the same shape skips Ray's
worker start-up.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from hpod.decision import Decision
from hpod.errors import LaunchError
from hpod.executor.base import TrialExit
from hpod.executor.leftovers import kill_leftovers
from hpod.executor.local import LocalExecutor, LocalTrial
from hpod.lock import process_exists
from hpod.wire import Message

#: Output bytes per stream in one answer; more follows in the next one at once.
OUTPUT_CHUNK = 1 << 20
#: Reports held for the daemon before the trial's report pipe is left to fill up (back-pressure).
MAX_HELD_MESSAGES = 50_000
#: Node-local folders for the output of running trials: <tmp>/hpod-ray-<worker pid>-<random>.
SPOOL_PREFIX = "hpod-ray-"


@dataclass(frozen=True, slots=True)
class Placement:
    """Where Ray put the actor: the node and the GPUs it was given ("" for none)."""

    node: str
    node_ip: str
    gpus: str
    worker_pid: int


@dataclass(frozen=True, slots=True)
class Relay:
    """One answer to `poll()`. `done`: the trial has ended and everything it wrote is here."""

    messages: list[Message]
    stdout: bytes
    stderr: bytes
    exit: TrialExit | None
    done: bool


class TrialHost:
    """Runs one trial at a time on its Ray worker (an async actor: calls overlap)."""

    def __init__(self, num_gpus: float = 0.0) -> None:
        # Ray sets CUDA_VISIBLE_DEVICES for an actor that asked for GPUs; one that asked for
        # none must not touch the node's GPUs at all.
        self._gpus = os.environ.get("CUDA_VISIBLE_DEVICES", "") if num_gpus > 0 else ""
        self._executor = LocalExecutor()
        self._trial: LocalTrial | None = None
        self._spool: Path | None = None
        self._outputs: list[BinaryIO] = []
        self._messages: list[Message] = []
        self._eof = False
        self._exit: TrialExit | None = None
        self._more_output = False
        self._changed: asyncio.Event | None = None
        self._drained: asyncio.Event | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def placement(self) -> Placement:
        try:
            import ray

            node_ip = ray.util.get_node_ip_address()
        except Exception:  # noqa: BLE001 - only a label; the hostname says enough
            node_ip = ""
        return Placement(socket.gethostname(), node_ip, self._gpus, os.getpid())

    async def start(self, argv: Sequence[str], env: Mapping[str, str], cwd: str,
                    trial_dir: str) -> int | str:
        """Start the trial; its pid, or what went wrong in words (a LaunchError's text)."""
        await self._finish()
        changed, drained = self._reset()
        child_env = dict(env)
        child_env["CUDA_VISIBLE_DEVICES"] = self._gpus
        try:
            # HPOD_TRIAL_DIR is where the trial writes checkpoints: it must exist on this node
            # too (a shared file system makes it the daemon's folder; see docs/cluster.md).
            os.makedirs(trial_dir, exist_ok=True)
        except OSError as e:
            return f"cannot create the trial folder {trial_dir!r} on {socket.gethostname()}: {e}"
        # What an earlier run of this trial forked on this node (before its worker was lost)
        # must not share the node with the run that starts now.
        await asyncio.to_thread(kill_leftovers, Path(trial_dir))
        await asyncio.to_thread(_sweep_spools)
        self._spool = Path(tempfile.mkdtemp(prefix=f"{SPOOL_PREFIX}{os.getpid()}-"))
        try:
            self._trial = await self._executor.launch(argv, env=child_env, cwd=Path(cwd),
                                                      trial_dir=self._spool)
        except LaunchError as e:
            shutil.rmtree(self._spool, ignore_errors=True)
            self._spool = None
            return str(e)
        self._trial.sweeps(Path(trial_dir))  # its processes carry the trial's folder
        self._outputs = [open(self._spool / "stdout.log", "rb"),
                         open(self._spool / "stderr.log", "rb")]
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._pump(self._trial, changed, drained)),
                       loop.create_task(self._reap(self._trial, changed))]
        return self._trial.pid

    def _reset(self) -> tuple[asyncio.Event, asyncio.Event]:
        self._messages = []
        self._eof = False
        self._exit = None
        self._more_output = False
        self._changed, self._drained = asyncio.Event(), asyncio.Event()
        return self._changed, self._drained

    async def _pump(self, trial: LocalTrial, changed: asyncio.Event,
                    drained: asyncio.Event) -> None:
        try:
            async for batch in trial.batches():
                self._messages.extend(batch)
                changed.set()
                if len(self._messages) >= MAX_HELD_MESSAGES:
                    # The daemon is behind: stop reading, so the trial's writes block.
                    drained.clear()
                    await drained.wait()
        finally:
            self._eof = True
            changed.set()

    async def _reap(self, trial: LocalTrial, changed: asyncio.Event) -> None:
        self._exit = await trial.wait()
        changed.set()

    async def poll(self, wait: float) -> Relay:
        """What happened since the last poll; waits up to `wait` seconds for something."""
        changed, drained = self._changed, self._drained
        if changed is None or drained is None:
            return Relay([], b"", b"", None, True)  # no trial started
        if not self._more_output:
            try:
                await asyncio.wait_for(changed.wait(), wait)
            except TimeoutError:
                pass
        changed.clear()
        messages, self._messages = self._messages, []
        drained.set()
        out, err = [f.read(OUTPUT_CHUNK) or b"" for f in self._outputs] or [b"", b""]
        self._more_output = len(out) == OUTPUT_CHUNK or len(err) == OUTPUT_CHUNK
        done = self._exit is not None and self._eof and not self._more_output
        relay = Relay(messages, out, err, self._exit, done)
        if done:
            await self._finish()
        return relay

    async def decide(self, answers: Sequence[tuple[Decision, int | None]]) -> None:
        trial = self._trial
        if trial is not None:
            for decision, step in answers:
                trial.decide(decision, step)

    async def stop(self, grace: float) -> None:
        if self._trial is not None:
            await self._trial.stop(grace)

    async def _finish(self) -> None:
        """Close what the last trial left: its process group, pipes, spool and tasks."""
        trial, self._trial = self._trial, None
        if trial is not None:
            await trial.aclose()
        for task in self._tasks:
            task.cancel()
        self._tasks = []
        for f in self._outputs:
            f.close()
        self._outputs = []
        if self._spool is not None:
            shutil.rmtree(self._spool, ignore_errors=True)
            self._spool = None


def _sweep_spools() -> None:
    """Remove the spools of workers that died (a lost worker cannot clean up after itself)."""
    root = Path(tempfile.gettempdir())
    for spool in root.glob(f"{SPOOL_PREFIX}*-*"):
        pid = spool.name[len(SPOOL_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not process_exists(int(pid)):
            shutil.rmtree(spool, ignore_errors=True)
