"""Warm starts: a Python trial runs in a spare process that has imported its slow modules.

`WarmExecutor` wraps a LocalExecutor. For a launch with `preload` modules whose command is
`python script.py ...` (this interpreter), it keeps ONE spare process per running slot (below).
Started like a cold trial (own process group, PR_SET_PDEATHSIG, report/control pipes on fds 3/4),
a spare imports the modules, says it is ready and waits (hpod/spare.py). A launch on that slot
hands the trial's argv, env, cwd and trial folder to the spare over its control pipe; the spare
applies them and runs the script, and the executor returns the spare's own LocalTrial: the
daemon sees the same pid, pipes, stop/wait semantics and group cleanup as for a cold start. A
new spare is started behind it. Anything unusual — no ready spare, another configuration, a
spare that died or failed the hand-off — is a cold start, which is always correct.

Slot keys: launches with the same `slot` (the daemon passes the study's name) share spares. The
first trial of a slot running at a time gets the key `slot` itself, a second one running
meanwhile `slot#2`, and so on (the lowest key free when it is launched), and each key keeps one
spare: a study with `parallel = 3` keeps three, whatever GPU or CPU slot its trials land on
(a spare is not tied to a GPU: the placement is applied at the hand-off).

Spares start only for a slot that has just been launched on (or `prepare`d), and only while
the machine has a free core (hpod's own trials and importing spares, and whatever else wants a
CPU right now, are fewer than the usable cores); they run at lower priority until they get a
trial or a launch waits for them (`_set_priority`). Design and measurements: docs/warm-start.md.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hpod.errors import LaunchError
from hpod.executor.leftovers import kill_leftovers
from hpod.executor.local import LocalExecutor, LocalTrial
from hpod.executor.process import priority_restorable, set_autogroup_nice, set_thread_nice
from hpod.spare import READY, STARTED, TRIAL_DIR_ROOM

logger = logging.getLogger(__name__)

#: Set per trial at the hand-off, so never part of a spare's environment: the daemon's own
#: HPOD_* and the GPU placement (hpod.resources). CUDA_VISIBLE_DEVICES is "" in a spare.
LATE_VARIABLES = frozenset({"CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER",
                            "TF_FORCE_GPU_ALLOW_GROWTH"})
HANDOFF_TIMEOUT = 30.0  # the spare answers in milliseconds; this only bounds a stuck one
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


@dataclass(frozen=True, slots=True)
class SpareConfig:
    """What a spare has done that a trial depends on: a launch must match it to use the spare."""

    python: str
    preload: tuple[str, ...]
    path0: str  # the script's folder, first on sys.path while the modules were imported
    env: tuple[tuple[str, str], ...]  # base_environment, sorted


@dataclass(eq=False)
class _Spare:
    slot: str
    config: SpareConfig
    cwd: Path
    folder: Path
    ready: asyncio.Future[bool]
    process: LocalTrial | None = None
    role: str = "spare"  # "spare" -> "claimed" -> "trial" | "gone"
    idle_timer: asyncio.TimerHandle | None = None
    urgent: bool = False  # a launch waits for it: it imports at a trial's priority
    life: asyncio.Task[None] | None = field(default=None, repr=False)


class WarmExecutor:
    """An Executor: warm starts for `preload` launches, LocalExecutor's cold starts otherwise.

    Call `aclose()` at shutdown: it ends every spare (trials are their runners' to end).
    """

    def __init__(self, cold: LocalExecutor | None = None, *, spare_dir: Path | None = None,
                 cores: int | None = None, nice: int = 10,
                 idle_timeout: float | None = 600.0, start_timeout: float = 600.0,
                 running: Callable[[], int] | None = runnable_elsewhere,
                 python: str | None = None) -> None:
        self._cold = cold if cold is not None else LocalExecutor()
        # A folder of its own: what a killed daemon's spares left there is removed (_folder).
        self._spare_dir = spare_dir
        self._swept = False
        self._own_dir: Path | None = None
        self._cores = cores if cores is not None else _usable_cores()
        self._running = running  # None: count only hpod's own processes (tests)
        self._nice = max(0, nice)
        # The niceness a cold trial gets (ours), and whether spares' threads may be lowered:
        # only when they can be restored, or the trial would run at low priority too.
        self._base_nice = os.getpriority(os.PRIO_PROCESS, 0)
        self._thread_nice = bool(self._nice) and priority_restorable()
        self._idle_timeout = idle_timeout
        self._start_timeout = start_timeout
        self._python = python or sys.executable
        self._wanted: dict[str, tuple[SpareConfig, Path]] = {}
        self._spares: dict[str, _Spare] = {}
        # Keys of running slots -> their trial (None while it is being launched), and the keys
        # each `slot` has handed out (what retire(slot) ends).
        self._holders: dict[str, LocalTrial | None] = {}
        self._keys: dict[str, set[str]] = {}
        self._broken: dict[SpareConfig, str] = {}
        self._deaths: dict[str, int] = {}
        self._live = 0  # trials this executor started that have not exited
        self._starting = 0  # spares still importing
        self._count = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._changed = asyncio.Event()
        self._closed = False
        self.warm_starts = 0
        self.cold_starts = 0
        self._warm_launches = 0  # launches that could have been warm (`preload`, a script)

    def __repr__(self) -> str:
        ready = sum(s.ready.done() and s.ready.result() for s in self._spares.values())
        return (f"<WarmExecutor spares={len(self._spares)} ready={ready} live={self._live} "
                f"warm={self.warm_starts} cold={self.cold_starts}>")

    # -- the Executor contract ------------------------------------------------------------

    async def launch(self, argv: Sequence[str], *, env: Mapping[str, str], cwd: Path,
                     trial_dir: Path, preload: Sequence[str] = (),
                     slot: str | None = None) -> LocalTrial:
        """Hand the trial to the slot's ready spare when it matches, else start it cold; then
        want a spare behind it. Raises LaunchError as LocalExecutor does."""
        argv = [os.fspath(a) for a in argv]
        config = self._config(argv, env, Path(cwd), preload)
        if config is None:
            trial = await self._cold.launch(argv, env=env, cwd=cwd, trial_dir=trial_dir)
            self.cold_starts += 1
            self._track(trial, None)
            return trial
        self._warm_launches += 1
        key = self._take_key(slot or "")  # before any await: concurrent launches differ
        try:
            trial = None
            spare = self._spares.get(key)
            if spare is not None and spare.config != config:
                logger.debug("spare for %r was prepared for another configuration", key)
                self._discard(spare)
            elif spare is not None:
                trial = await self._claim(spare, argv, env, Path(cwd), Path(trial_dir))
            if trial is None:
                trial = await self._cold.launch(argv, env=env, cwd=cwd, trial_dir=trial_dir)
                self.cold_starts += 1
                self._track(trial, key)
            else:
                self.warm_starts += 1
        except BaseException:
            self._holders.pop(key, None)
            raise
        self._want(key, config, Path(cwd))
        return trial

    # -- spares ---------------------------------------------------------------------------

    def prepare(self, argv: Sequence[str], *, env: Mapping[str, str], cwd: Path,
                preload: Sequence[str], slot: str | None = None) -> bool:
        """Have a spare ready for a launch like this one on `slot` (started when a core is
        free). False when such a launch is never warm (no preload, not `python script.py`)."""
        config = self._config([os.fspath(a) for a in argv], env, Path(cwd), preload)
        if config is None:
            return False
        self._want(slot or "", config, Path(cwd))
        return True

    def spare_pid(self, slot: str | None = None) -> int | None:
        """The pid of the slot's spare (importing or ready), if one is started."""
        spare = self._spares.get(slot or "")
        return spare.process.pid if spare is not None and spare.process is not None else None

    async def wait_ready(self, slot: str | None = None) -> int:
        """Wait until the slot has a ready spare; its pid. LookupError when none will come."""
        key = slot or ""
        while True:
            changed = self._changed
            spare = self._spares.get(key)
            if spare is not None and spare.role == "spare":
                if await asyncio.shield(spare.ready) and self._spares.get(key) is spare \
                        and spare.process is not None:
                    return spare.process.pid
                continue
            wanted = self._wanted.get(key)
            if self._closed or wanted is None:
                raise LookupError(f"no spare is wanted for slot {key!r}")
            if wanted[0] in self._broken:
                raise LookupError(f"spares for slot {key!r} failed: {self._broken[wanted[0]]}")
            await changed.wait()

    async def retire(self, slot: str | None = None) -> None:
        """End the spares of `slot` — every key its launches used — (None: every slot) and
        want none there until a launch."""
        if slot is None:
            keys = list(self._wanted.keys() | self._spares.keys())
        else:
            keys = [slot, *sorted(self._keys.pop(slot, set()) - {slot})]
        spares = []
        for key in keys:
            self._wanted.pop(key, None)
            spare = self._spares.get(key)
            if spare is not None:
                spares.append(spare)
                self._discard(spare)
        self._notify()
        await asyncio.gather(*(s.life for s in spares if s.life is not None),
                             return_exceptions=True)

    async def aclose(self) -> None:
        """End every spare and forget the trials (their runners end them). Idempotent."""
        if not self._closed and self._warm_launches:
            logger.info("warm starts: %d of %d trial(s) with preload started in a spare",
                        self.warm_starts, self._warm_launches)
        self._closed = True
        await self.retire()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._own_dir is not None:
            shutil.rmtree(self._own_dir, ignore_errors=True)
            self._own_dir = None

    # -- internals ------------------------------------------------------------------------

    def _config(self, argv: list[str], env: Mapping[str, str], cwd: Path,
                preload: Sequence[str]) -> SpareConfig | None:
        if not preload or self._closed or not sys.platform.startswith("linux"):
            return None
        if len(argv) < 2 or argv[0] != self._python or argv[1].startswith("-"):
            return None  # only `python script.py ...` is run as `python script.py` would be
        path0 = os.path.dirname(os.path.realpath(os.path.join(cwd, argv[1])))
        return SpareConfig(self._python, tuple(preload), path0,
                           tuple(sorted(base_environment(env).items())))

    def _take_key(self, slot: str) -> str:
        """The lowest key of `slot` that no running trial holds, now held by the launch."""
        key, n = slot, 1
        while key in self._holders:
            n += 1
            key = f"{slot}#{n}"
        self._holders[key] = None
        self._keys.setdefault(slot, set()).add(key)
        return key

    def _want(self, key: str, config: SpareConfig, cwd: Path) -> None:
        if self._closed or config in self._broken:
            return
        self._wanted[key] = (config, cwd)
        self._fill()

    def _fill(self) -> None:
        """Start wanted spares while the machine has a free core."""
        for key, (config, cwd) in list(self._wanted.items()):
            if self._closed or not self._free_core():
                return
            if key not in self._spares and config not in self._broken:
                self._start(key, config, cwd)

    def _free_core(self) -> bool:
        """hpod's own busy processes (running trials, importing spares) leave a core free, and
        so does everything else that wants a CPU right now. Checked at each launch, trial exit
        and spare start or end; a spare that does not fit waits for the next of those."""
        busy = self._live + self._starting
        if self._running is not None:
            busy = max(busy, self._running())
        return busy < self._cores

    def _start(self, key: str, config: SpareConfig, cwd: Path) -> None:
        self._count += 1
        loop = asyncio.get_running_loop()
        spare = _Spare(key, config, cwd, self._folder() / f"spare-{self._count}",
                       loop.create_future())
        self._spares[key] = spare
        self._starting += 1
        spare.life = loop.create_task(self._spare_life(spare), name=f"hpod-spare-{key}")
        self._tasks.add(spare.life)
        spare.life.add_done_callback(self._tasks.discard)

    async def _spare_life(self, spare: _Spare) -> None:
        try:
            ready = await self._bring_up(spare)
        finally:
            self._starting -= 1
        if not spare.ready.done():
            spare.ready.set_result(ready)
        self._notify()
        if not ready:
            self._drop(spare)
            self._fill()
            return
        self._deaths.pop(spare.slot, None)
        if self._idle_timeout is not None:
            spare.idle_timer = asyncio.get_running_loop().call_later(
                self._idle_timeout, self._expire, spare)
        self._fill()
        assert spare.process is not None
        try:
            await spare.process.exited()
        except asyncio.CancelledError:
            if spare.role == "trial":
                return  # a launch took it: _track watches it from now on
            raise
        if spare.role == "spare":
            logger.info("spare %d for slot %r died before it got a trial; replacing it",
                        spare.process.pid, spare.slot)
        self._drop(spare)
        self._fill()

    async def _bring_up(self, spare: _Spare) -> bool:
        config = spare.config
        argv = [config.python, "-m", "hpod.spare", "--path0", config.path0, "--",
                *config.preload]
        env = {**dict(config.env), "CUDA_VISIBLE_DEVICES": "", "HPOD_TRIAL_DIR": TRIAL_DIR_ROOM}
        try:
            process = await self._cold.launch(argv, env=env, cwd=spare.cwd,
                                              trial_dir=spare.folder)
        except LaunchError as e:
            self._broken[config] = str(e)
            logger.warning("cannot start a spare for slot %r (%s); its trials start cold",
                           spare.slot, e)
            return False
        spare.process = process
        if not spare.urgent:
            await self._set_priority(process.pid, low=True)
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
            self._broken[config] = why
            logger.warning("the spare for slot %r could not preload %s, so its trials start "
                           "cold: %s", spare.slot, ", ".join(config.preload), why)
        return False

    async def _claim(self, spare: _Spare, argv: list[str], env: Mapping[str, str], cwd: Path,
                     trial_dir: Path) -> LocalTrial | None:
        """The spare as the trial, or None (then the launch is cold)."""
        if not spare.ready.done():
            logger.debug("launch on slot %r waits for its spare to finish importing", spare.slot)
            spare.urgent = True  # no longer a background job: the trial waits for it
            if spare.process is not None:
                await self._set_priority(spare.process.pid, low=False)
        if not await asyncio.shield(spare.ready) or spare.role != "spare" \
                or self._spares.get(spare.slot) is not spare:
            return None
        process = spare.process
        assert process is not None
        spare.role = "claimed"
        self._drop(spare)
        try:
            if not await self._set_priority(process.pid, low=False):
                raise PermissionError("its priority cannot be restored")
            trial_dir.mkdir(parents=True, exist_ok=True)
            # As LocalExecutor.launch: what an earlier run of this trial forked must be gone.
            await asyncio.to_thread(kill_leftovers, trial_dir)
            stderr_path = trial_dir / "stderr.log"
            start = stderr_path.stat().st_size if stderr_path.exists() else 0
            launch = {"argv": argv, "env": dict(env), "cwd": os.fspath(cwd),
                      "trial_dir": os.fspath(trial_dir)}
            async with asyncio.timeout(HANDOFF_TIMEOUT):
                await process.send_handshake(json.dumps(launch).encode() + b"\n")
                answer = await process.read_handshake()
        except (OSError, TimeoutError, ValueError) as e:
            answer = f"{type(e).__name__}: {e}".encode()
        if answer != STARTED:
            spare.role = "gone"
            logger.info("spare %d could not take the trial (%s); starting it cold", process.pid,
                        answer.decode("utf-8", "replace").strip() or "it exited")
            await process.aclose()
            return None
        spare.role = "trial"
        if spare.life is not None:
            spare.life.cancel()
        self._track(process, spare.slot)
        process.adopt_stderr(stderr_path, start)
        shutil.rmtree(spare.folder, ignore_errors=True)  # its logs until now: import chatter
        logger.debug("spare %d took the trial %s", process.pid, argv[1:])
        return process

    async def _set_priority(self, pid: int, *, low: bool) -> bool:
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

    def _track(self, trial: LocalTrial, key: str | None) -> None:
        """Count the trial as busy, and as the holder of `key`, until its process exits."""
        self._live += 1
        if key is not None:
            self._holders[key] = trial

        async def watch() -> None:
            try:
                await trial.exited()
            finally:
                self._live -= 1
                if key is not None and self._holders.get(key) is trial:
                    del self._holders[key]  # the slot's next launch may use the key again
            self._fill()

        task = asyncio.get_running_loop().create_task(watch(), name=f"hpod-watch-{trial.pid}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _discard(self, spare: _Spare) -> None:
        """End a spare that no launch took; its life task reaps it."""
        if spare.role == "spare":
            spare.role = "gone"
        self._drop(spare)
        if not spare.ready.done():
            spare.ready.set_result(False)
        if spare.process is not None:
            task = asyncio.get_running_loop().create_task(spare.process.aclose())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _drop(self, spare: _Spare) -> None:
        if self._spares.get(spare.slot) is spare:
            del self._spares[spare.slot]
        if spare.idle_timer is not None:
            spare.idle_timer.cancel()
            spare.idle_timer = None
        if spare.role in ("spare", "gone"):
            shutil.rmtree(spare.folder, ignore_errors=True)
        self._notify()

    def _expire(self, spare: _Spare) -> None:
        """An idle spare is ended: its study may be done, and it holds memory."""
        spare.idle_timer = None
        if spare.role == "spare" and self._spares.get(spare.slot) is spare:
            logger.debug("spare for slot %r unused for %g s; ending it", spare.slot,
                         self._idle_timeout)
            if self._wanted.get(spare.slot, (None,))[0] == spare.config:
                del self._wanted[spare.slot]
            self._discard(spare)

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


def _usable_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)
