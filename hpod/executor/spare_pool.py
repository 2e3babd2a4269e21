"""The pool of spare processes behind warm starts: which are wanted, started, ready, or ended.

A spare is started like a cold trial (LocalExecutor: own process group, PR_SET_PDEATHSIG,
report/control pipes on fds 3/4), imports its configuration's modules, says it is ready and
waits for a trial (hpod/spare.py). The pool keeps at most one spare per key; which key a launch
uses, and the hand-off of a trial to a spare, are executor/warm.py's.

A wanted spare starts only while the machine has a free core (hpod's own trials and importing
spares, and whatever else wants a CPU right now, are fewer than the usable cores), and runs at
lower priority until it gets a trial or a launch waits for it (`set_priority`). A configuration
whose spares cannot preload is given up (`broken`): its launches are cold from then on.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpod.config import default_slots
from hpod.errors import LaunchError
from hpod.executor.local import LocalExecutor, LocalTrial
from hpod.executor.process import priority_restorable, set_autogroup_nice, set_thread_nice
from hpod.spare import READY, TRIAL_DIR_ROOM

logger = logging.getLogger(__name__)

#: Set per trial at the hand-off, so never part of a spare's environment: the daemon's own
#: HPOD_* and the GPU placement (hpod.resources). CUDA_VISIBLE_DEVICES is "" in a spare.
LATE_VARIABLES = frozenset({"CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER",
                            "TF_FORCE_GPU_ALLOW_GROWTH"})
MAX_DEATHS_BEFORE_READY = 3  # then the configuration is given up (a crash loop, not bad luck)


def base_environment(env: Mapping[str, str]) -> dict[str, str]:
    """The environment a spare is started with: the trial's, less what only the trial sees."""
    return {k: v for k, v in env.items() if not k.startswith("HPOD_") and k not in LATE_VARIABLES}


def runnable_elsewhere() -> int:
    """Tasks that want a CPU right now, besides ours (the instantaneous count in /proc/loadavg,
    unlike the load averages, which trail by a minute); 0 where it cannot be read."""
    try:
        with open("/proc/loadavg") as f:
            return max(0, int(f.read().split()[3].split("/")[0]) - 1)
    except (OSError, ValueError, IndexError):
        return 0


# After a spare failed to preload, how long its trials start cold before another try.
BROKEN_RETRY = 300.0


@dataclass(frozen=True, slots=True)
class SpareConfig:
    """What a spare has done that a trial depends on: a launch must match it to use the spare."""

    python: str
    preload: tuple[str, ...]
    path0: str  # the script's folder, first on sys.path while the modules were imported
    env: tuple[tuple[str, str], ...]  # base_environment, sorted


@dataclass(eq=False)
class Spare:
    slot: str  # the pool's key
    config: SpareConfig
    cwd: Path
    folder: Path
    ready: asyncio.Future[bool]
    process: LocalTrial | None = None
    role: str = "spare"  # "spare" -> "claimed" -> "trial" | "gone"
    idle_timer: asyncio.TimerHandle | None = None
    urgent: bool = False  # a launch waits for it: it imports at a trial's priority
    life: asyncio.Task[None] | None = field(default=None, repr=False)


class SparePool:
    """Spares by key, started with `cold`'s launches. Call `aclose()` at shutdown."""

    def __init__(self, cold: LocalExecutor, *, spare_dir: Path | None, cores: int | None,
                 nice: int, idle_timeout: float | None, start_timeout: float,
                 running: Callable[[], int] | None) -> None:
        self._cold = cold
        # A folder of its own: what a killed daemon's spares left there is removed (_folder).
        self._spare_dir = spare_dir
        self._swept = False
        self._own_dir: Path | None = None
        self._cores = cores if cores is not None else default_slots()  # usable cores
        self._running = running  # None: count only hpod's own processes (tests)
        self._nice = max(0, nice)
        # The niceness a cold trial gets (ours), and whether spares' threads may be lowered:
        # only when they can be restored, or the trial would run at low priority too.
        self._base_nice = os.getpriority(os.PRIO_PROCESS, 0)
        self._thread_nice = bool(self._nice) and priority_restorable()
        self._idle_timeout = idle_timeout
        self._start_timeout = start_timeout
        self._wanted: dict[str, tuple[SpareConfig, Path]] = {}
        self._spares: dict[str, Spare] = {}
        # Configs whose spare failed to preload: (why, when). Retried after BROKEN_RETRY, as a
        # fixed module would otherwise stay cold until the daemon restarts.
        self._broken: dict[SpareConfig, tuple[str, float]] = {}
        self._deaths: dict[str, int] = {}
        self.live = 0  # trials started by the executor that have not exited
        self._starting = 0  # spares still importing
        self._count = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Event()
        self.closed = False

    def __len__(self) -> int:
        return len(self._spares)

    def ready_count(self) -> int:
        return sum(s.ready.done() and s.ready.result() for s in self._spares.values())

    def spare(self, key: str) -> Spare | None:
        """The key's spare, importing or ready, while no launch has taken it."""
        return self._spares.get(key)

    def want(self, key: str, config: SpareConfig, cwd: Path) -> None:
        """Keep a spare of `config` for `key` (started when a core is free)."""
        if self.closed or self._is_broken(config):
            return
        self._wanted[key] = (config, cwd)
        self.fill()

    def _is_broken(self, config: SpareConfig) -> bool:
        failed = self._broken.get(config)
        if failed is not None and time.monotonic() - failed[1] >= BROKEN_RETRY:
            del self._broken[config]  # worth another try: the module may have been fixed
            failed = None
        return failed is not None

    def fill(self) -> None:
        """Start wanted spares while the machine has a free core."""
        for key, (config, cwd) in list(self._wanted.items()):
            if self.closed or not self._free_core():
                return
            if key not in self._spares and not self._is_broken(config):
                self._start(key, config, cwd)

    async def wait_ready(self, key: str) -> int:
        """Wait until `key` has a ready spare; its pid. LookupError when none will come."""
        while True:
            changed = self._changed
            spare = self._spares.get(key)
            if spare is not None and spare.role == "spare":
                if await asyncio.shield(spare.ready) and self._spares.get(key) is spare \
                        and spare.process is not None:
                    return spare.process.pid
                continue
            wanted = self._wanted.get(key)
            if self.closed or wanted is None:
                raise LookupError(f"no spare is wanted for slot {key!r}")
            if self._is_broken(wanted[0]):
                raise LookupError(f"spares for slot {key!r} failed: "
                                  f"{self._broken[wanted[0]][0]}")
            await changed.wait()

    async def retire(self, keys: Iterable[str] | None = None) -> None:
        """End the spares of `keys` (None: every key) and want none there."""
        if keys is None:
            keys = list(self._wanted.keys() | self._spares.keys())
        spares = []
        for key in keys:
            self._wanted.pop(key, None)
            spare = self._spares.get(key)
            if spare is not None:
                spares.append(spare)
                self.discard(spare)
        self._notify()
        await asyncio.gather(*(s.life for s in spares if s.life is not None),
                             return_exceptions=True)

    async def aclose(self) -> None:
        """End every spare and stop watching trials. Idempotent."""
        self.closed = True
        await self.retire()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._own_dir is not None:
            shutil.rmtree(self._own_dir, ignore_errors=True)
            self._own_dir = None

    # -- a launch's side ------------------------------------------------------------------

    def take(self, spare: Spare) -> None:
        """A launch hands its trial to `spare`: no other launch may, and it is no longer
        the key's spare."""
        spare.role = "claimed"
        self._drop(spare)

    def became_trial(self, spare: Spare) -> None:
        """The hand-off worked: the spare's process is a trial now, watched as one."""
        spare.role = "trial"
        if spare.life is not None:
            spare.life.cancel()
        shutil.rmtree(spare.folder, ignore_errors=True)  # its logs until now: import chatter

    def lost(self, spare: Spare) -> None:
        """The hand-off failed: the spare is ended (by the launch) and its life task reaps it."""
        spare.role = "gone"

    def watch(self, trial: LocalTrial, on_exit: Callable[[], None]) -> None:
        """Count the trial as busy until its process exits; then `on_exit()`."""
        self.live += 1

        async def until_exit() -> None:
            try:
                await trial.exited()
            finally:
                self.live -= 1
                on_exit()
            self.fill()

        self._spawn(until_exit(), f"hpod-watch-{trial.pid}")

    def discard(self, spare: Spare) -> None:
        """End a spare that no launch took; its life task reaps it."""
        if spare.role == "spare":
            spare.role = "gone"
        self._drop(spare)
        if not spare.ready.done():
            spare.ready.set_result(False)
        if spare.process is not None:
            self._spawn(spare.process.aclose(), None)

    async def set_priority(self, pid: int, *, low: bool) -> bool:
        """Lower a spare's priority by `nice`, or give it back a cold trial's; True when done.

        Done from here rather than inside the spare, so that a launch that starts waiting for
        a spare can raise it at once. Two knobs, because either may be the one in effect:
        - every thread's niceness (threads inherit it from their creator);
        - the session's autogroup niceness: with autogroup scheduling (processes in the root
          cgroup) CPU is shared between sessions first, and every trial and spare is one, so
          only this knob lowers a spare. A new session's autogroup starts at 0, as a cold
          trial's does.
        """
        if not self._nice:
            return True
        done = True
        if self._thread_nice:
            try:
                set_thread_nice(pid, self._base_nice + (self._nice if low else 0))
            except OSError:
                done = False
        for _attempt in range(100):
            try:
                if set_autogroup_nice(pid, self._nice if low else 0):
                    break
            except FileNotFoundError:  # no autogroups in this kernel, or the spare is gone
                break
            except OSError:
                done = False
                break
            # EAGAIN: the kernel allows one change per 100 ms machine-wide; there is no event
            # to wait for.
            await asyncio.sleep(0.01)
        else:
            done = False
        return done or low

    # -- a spare's life -------------------------------------------------------------------

    def _free_core(self) -> bool:
        """hpod's own busy processes (running trials, importing spares) leave a core free, and
        so does everything else that wants a CPU right now. Checked at each launch, trial exit
        and spare start or end; a spare that does not fit waits for the next of those."""
        busy = self.live + self._starting
        if self._running is not None:
            busy = max(busy, self._running())
        return busy < self._cores

    def _start(self, key: str, config: SpareConfig, cwd: Path) -> None:
        self._count += 1
        loop = asyncio.get_running_loop()
        spare = Spare(key, config, cwd, self._folder() / f"spare-{self._count}",
                      loop.create_future())
        self._spares[key] = spare
        self._starting += 1
        spare.life = self._spawn(self._spare_life(spare), f"hpod-spare-{key}")

    async def _spare_life(self, spare: Spare) -> None:
        try:
            ready = await self._bring_up(spare)
        finally:
            self._starting -= 1
        if not spare.ready.done():
            spare.ready.set_result(ready)
        self._notify()
        if not ready:
            self._drop(spare)
            self.fill()
            return
        self._deaths.pop(spare.slot, None)
        if self._idle_timeout is not None:
            spare.idle_timer = asyncio.get_running_loop().call_later(
                self._idle_timeout, self._expire, spare)
        self.fill()
        assert spare.process is not None
        try:
            await spare.process.exited()
        except asyncio.CancelledError:
            if spare.role == "trial":
                return  # a launch took it: the pool watches it as a trial from now on
            raise
        if spare.role == "spare":
            logger.info("spare %d for slot %r died before it got a trial; replacing it",
                        spare.process.pid, spare.slot)
        self._drop(spare)
        self.fill()

    async def _bring_up(self, spare: Spare) -> bool:
        config = spare.config
        argv = [config.python, "-m", "hpod.spare", "--path0", config.path0, "--",
                *config.preload]
        env = {**dict(config.env), "CUDA_VISIBLE_DEVICES": "", "HPOD_TRIAL_DIR": TRIAL_DIR_ROOM}
        try:
            process = await self._cold.launch(argv, env=env, cwd=spare.cwd,
                                              trial_dir=spare.folder)
        except LaunchError as e:
            self._broken[config] = (str(e), time.monotonic())
            logger.warning("cannot start a spare for slot %r (%s); its trials start cold",
                           spare.slot, e)
            return False
        spare.process = process
        if not spare.urgent:
            await self.set_priority(process.pid, low=True)
        logger.debug("spare %d for slot %r imports %s", process.pid, spare.slot,
                     ", ".join(config.preload))
        if spare.role != "spare":  # discarded while it was being started
            await process.aclose()
            return False
        hung = False
        try:
            async with asyncio.timeout(self._start_timeout):
                line = await process.read_handshake()
        except TimeoutError:
            line, hung = b"", True
        if line == READY and spare.role == "spare":
            logger.debug("spare %d for slot %r is ready", process.pid, spare.slot)
            return True
        await process.aclose()
        if spare.role != "spare":
            return False
        exit_ = await process.wait()
        deaths = self._deaths[spare.slot] = self._deaths.get(spare.slot, 0) + 1
        if hung or exit_.returncode is not None or deaths >= MAX_DEATHS_BEFORE_READY:
            # An import error fails the same way every time: stop trying, say why once.
            why = (f"it was still importing after {self._start_timeout:g} s" if hung
                   else exit_.describe())
            self._broken[config] = (why, time.monotonic())
            logger.warning("the spare for slot %r could not preload %s, so its trials start "
                           "cold: %s", spare.slot, ", ".join(config.preload), why)
        return False

    def _drop(self, spare: Spare) -> None:
        if self._spares.get(spare.slot) is spare:
            del self._spares[spare.slot]
        if spare.idle_timer is not None:
            spare.idle_timer.cancel()
            spare.idle_timer = None
        if spare.role in ("spare", "gone"):
            shutil.rmtree(spare.folder, ignore_errors=True)
        self._notify()

    def _expire(self, spare: Spare) -> None:
        """An idle spare is ended: its study may be done, and it holds memory."""
        spare.idle_timer = None
        if spare.role == "spare" and self._spares.get(spare.slot) is spare:
            logger.debug("spare for slot %r unused for %g s; ending it", spare.slot,
                         self._idle_timeout)
            if self._wanted.get(spare.slot, (None,))[0] == spare.config:
                del self._wanted[spare.slot]
            self.discard(spare)

    def _spawn(self, coro: Coroutine[Any, Any, None], name: str | None) -> asyncio.Task[None]:
        # Held until done (the loop keeps only weak references), and cancelled by aclose.
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _folder(self) -> Path:
        if self._spare_dir is not None:
            if not self._swept:  # a killed daemon's spares died with it; their folders did not
                self._swept = True
                for stale in self._spare_dir.glob("spare-*"):
                    shutil.rmtree(stale, ignore_errors=True)
            return self._spare_dir
        if self._own_dir is None:
            self._own_dir = Path(tempfile.mkdtemp(prefix="hpod-spares-"))
        return self._own_dir

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

