"""The daemon's side of a trial running on a Ray node (implements executor.base.RunningTrial).

One task long-polls the node's actor (executor/ray_host.py): each answer brings the reports
that arrived since the last one, the trial's new output, which is appended to `stdout.log` /
`stderr.log` in the trial folder here, and in the end how the process exited. Answers to reports
are gathered for one turn of the event loop and sent in one call. When the actor dies — its
worker process killed, its node lost — the trial ends as *lost* (`TrialExit.lost`): the runner
records it interrupted and the controller requeues it, as after a daemon restart.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpod.decision import Decision
from hpod.executor.base import TrialExit
from hpod.log_cap import STDERR_LOG, STDOUT_LOG
from hpod.wire import Message

if TYPE_CHECKING:
    from hpod.executor.ray import Host

logger = logging.getLogger(__name__)

#: How long one poll waits on the node when nothing happens: bounds how late output arrives.
POLL_WAIT = 0.5
#: How long an actor Ray calls "temporarily unavailable" (a network blip) may stay so before
#: its trial counts as lost.
UNAVAILABLE_PATIENCE = 30.0
#: At close, how long the node gets to end a trial the runner did not stop (normally it did).
CLOSE_TIMEOUT = 10.0


def actor_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean "the actor (its worker process or its node) is gone"."""
    import ray.exceptions

    return (ray.exceptions.RayActorError,)


def _unavailable() -> type[BaseException]:
    import ray.exceptions

    return ray.exceptions.ActorUnavailableError


class RayTrial:
    def __init__(self, host: Host, pid: int, trial_dir: Path,
                 give_back: Callable[..., None]) -> None:
        self._host = host
        self._actor = host.actor
        self._pid = pid
        self._give_back = give_back
        self._queue: asyncio.Queue[list[Message] | None] = asyncio.Queue()
        loop = asyncio.get_running_loop()
        self._exit: asyncio.Future[TrialExit] = loop.create_future()
        self._answers: list[tuple[Decision, int | None]] = []
        self._flush_due = False
        self._reading = False
        self._done = False  # the node said everything has arrived
        self._lost: str | None = None
        self._closed = False
        # Appending keeps a resumed trial's earlier output, as the local executor does.
        self._outputs = (open(trial_dir / STDOUT_LOG, "ab"), open(trial_dir / STDERR_LOG, "ab"))
        self._relay = loop.create_task(self._pump(), name=f"hpod-ray-relay-{pid}")

    def __repr__(self) -> str:
        state = "lost" if self._lost else "done" if self._done else "running"
        return f"<RayTrial pid={self._pid} on {self._host.label} {state}>"

    @property
    def pid(self) -> int:
        """The trial's pid on its node (not on this machine)."""
        return self._pid

    @property
    def node(self) -> str:
        return self._host.placement.node

    async def _pump(self) -> None:
        unavailable_since: float | None = None
        loop = asyncio.get_running_loop()
        try:
            while True:
                try:
                    relay = await self._actor.poll.remote(POLL_WAIT)
                except _unavailable() as e:
                    now = loop.time()
                    unavailable_since = unavailable_since or now
                    if now - unavailable_since > UNAVAILABLE_PATIENCE:
                        raise
                    logger.debug("trial pid %d: its actor is unavailable (%s)", self._pid, e)
                    await asyncio.sleep(1.0)
                    continue
                unavailable_since = None
                for data, f in zip((relay.stdout, relay.stderr), self._outputs):
                    if data:
                        f.write(data)
                        f.flush()
                if relay.messages:
                    self._queue.put_nowait(relay.messages)
                if relay.exit is not None and not self._exit.done():
                    self._exit.set_result(relay.exit)
                if relay.done:
                    self._done = True
                    return
        except actor_errors() as e:
            self._lost = _summary(e)
            logger.warning("trial pid %d on %s: its Ray worker is gone (%s)", self._pid,
                           self._host.label, self._lost)
        except Exception as e:  # noqa: BLE001 - any other failure of the relay ends it as lost
            self._lost = _summary(e)
            logger.exception("trial pid %d on %s: the relay failed", self._pid, self._host.label)
        finally:
            self._queue.put_nowait(None)
            if not self._exit.done():
                why = self._lost or "the relay was closed"
                self._exit.set_result(TrialExit(
                    None, None, "", f"its Ray worker on {self.node} was lost ({why})",
                    lost=True))

    async def batches(self) -> AsyncIterator[list[Message]]:
        if self._reading:
            raise RuntimeError("the reports of a trial can be read only once")
        self._reading = True
        while (batch := await self._queue.get()) is not None:
            yield batch

    async def messages(self) -> AsyncIterator[Message]:
        async for batch in self.batches():
            for message in batch:
                yield message

    def decide(self, decision: Decision, step: int | None = None) -> None:
        """Queue the answer; this turn's answers go to the node in one call. Never blocks."""
        if self._done or self._lost is not None or self._closed:
            return
        self._answers.append((decision, step))
        if not self._flush_due:
            self._flush_due = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_due = False
        answers, self._answers = self._answers, []
        if answers and not self._closed:
            # Awaited by nobody: a failure means the actor is gone, which the relay reports.
            task = asyncio.ensure_future(self._actor.decide.remote(answers))
            task.add_done_callback(_ignore)

    async def stop(self, grace: float) -> None:
        """SIGTERM the trial's process group on its node, SIGKILL after `grace` seconds."""
        if grace < 0:
            raise ValueError(f"grace must be >= 0 seconds, got {grace}")
        if self._done or self._lost is not None or self._closed:
            return
        try:
            await self._actor.stop.remote(grace)
        except actor_errors():
            pass  # the relay sees it too and ends the trial as lost

    async def wait(self) -> TrialExit:
        return await asyncio.shield(self._exit)

    async def aclose(self) -> None:
        """End what is left of the trial and hand its actor back. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        clean = False
        try:
            if not self._relay.done():
                gone: tuple[type[BaseException], ...] = (TimeoutError, *actor_errors())
                try:
                    await asyncio.wait_for(self._actor.stop.remote(0), CLOSE_TIMEOUT)
                    await asyncio.wait_for(asyncio.shield(self._relay), CLOSE_TIMEOUT)
                except gone:
                    pass
            clean = self._done and self._lost is None
        finally:
            if not self._relay.done():
                self._relay.cancel()
            for f in self._outputs:
                f.close()
            # A trial that ended cleanly leaves its actor ready for the next one.
            self._give_back(self._host, reusable=clean)

    async def __aenter__(self) -> RayTrial:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def _summary(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def _ignore(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()
