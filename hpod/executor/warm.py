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

Spares start only for a slot that has just been launched on (or `prepare`d); when they start,
at which priority, and when they end is the pool's (executor/spare_pool.py). Design and
measurements: docs/warm-start.md.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from hpod.executor.leftovers import kill_leftovers
from hpod.executor.local import LocalExecutor, LocalTrial
from hpod.log_cap import STDERR_LOG
from hpod.executor.spare_pool import (
    Spare,
    SpareConfig,
    SparePool,
    base_environment,
    runnable_elsewhere,
)
from hpod.spare import STARTED

# Callers import the spare vocabulary from here as well as the executor.
__all__ = ["SpareConfig", "WarmExecutor", "base_environment", "runnable_elsewhere"]

logger = logging.getLogger(__name__)

HANDOFF_TIMEOUT = 30.0  # the spare answers in milliseconds; this only bounds a stuck one


# How long a launch waits for its slot's spare to finish importing before it starts cold.
SPARE_WAIT = 30.0


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
        self._pool = SparePool(self._cold, spare_dir=spare_dir, cores=cores, nice=nice,
                               idle_timeout=idle_timeout, start_timeout=start_timeout,
                               running=running)
        self._python = python or sys.executable
        # Keys of running slots -> their trial (None while it is being launched), and the keys
        # each `slot` has handed out (what retire(slot) ends).
        self._holders: dict[str, LocalTrial | None] = {}
        self._keys: dict[str, set[str]] = {}
        self.warm_starts = 0
        self.cold_starts = 0
        self._warm_launches = 0  # launches that could have been warm (`preload`, a script)

    def __repr__(self) -> str:
        return (f"<WarmExecutor spares={len(self._pool)} ready={self._pool.ready_count()} "
                f"live={self._pool.live} warm={self.warm_starts} cold={self.cold_starts}>")

    # -- the Executor contract ------------------------------------------------------------

    async def launch(self, argv: Sequence[str], *, env: Mapping[str, str], cwd: Path,
                     trial_dir: Path, preload: Sequence[str] = (),
                     slot: str | None = None) -> LocalTrial:
        """Hand the trial to the slot's ready spare when it matches, else start it cold; then
        want a spare behind it. Raises LaunchError as LocalExecutor does."""
        argv = [os.fspath(a) for a in argv]
        config = self._config(argv, env, Path(cwd), preload)
        if config is None:
            cold = await self._cold.launch(argv, env=env, cwd=cwd, trial_dir=trial_dir)
            self.cold_starts += 1
            self._track(cold, None)
            return cold
        self._warm_launches += 1
        key = self._take_key(slot or "")  # before any await: concurrent launches differ
        try:
            trial = None
            spare = self._pool.spare(key)
            if spare is not None and spare.config != config:
                logger.debug("spare for %r was prepared for another configuration", key)
                self._pool.discard(spare)
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
        self._pool.want(key, config, Path(cwd))
        return trial

    # -- spares ---------------------------------------------------------------------------

    def prepare(self, argv: Sequence[str], *, env: Mapping[str, str], cwd: Path,
                preload: Sequence[str], slot: str | None = None) -> bool:
        """Have a spare ready for a launch like this one on `slot` (started when a core is
        free). False when such a launch is never warm (no preload, not `python script.py`)."""
        config = self._config([os.fspath(a) for a in argv], env, Path(cwd), preload)
        if config is None:
            return False
        self._pool.want(slot or "", config, Path(cwd))
        return True

    def spare_pid(self, slot: str | None = None) -> int | None:
        """The pid of the slot's spare (importing or ready), if one is started."""
        spare = self._pool.spare(slot or "")
        return spare.process.pid if spare is not None and spare.process is not None else None

    async def wait_ready(self, slot: str | None = None) -> int:
        """Wait until the slot has a ready spare; its pid. LookupError when none will come."""
        return await self._pool.wait_ready(slot or "")

    async def retire(self, slot: str | None = None) -> None:
        """End the spares of `slot` — every key its launches used — (None: every slot) and
        want none there until a launch."""
        keys = None if slot is None else [slot, *sorted(self._keys.pop(slot, set()) - {slot})]
        await self._pool.retire(keys)

    async def aclose(self) -> None:
        """End every spare and forget the trials (their runners end them). Idempotent."""
        if not self._pool.closed and self._warm_launches:
            logger.info("warm starts: %d of %d trial(s) with preload started in a spare",
                        self.warm_starts, self._warm_launches)
        await self._pool.aclose()

    # -- internals ------------------------------------------------------------------------

    def _config(self, argv: list[str], env: Mapping[str, str], cwd: Path,
                preload: Sequence[str]) -> SpareConfig | None:
        if not preload or self._pool.closed or not sys.platform.startswith("linux"):
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

    async def _claim(self, spare: Spare, argv: list[str], env: Mapping[str, str], cwd: Path,
                     trial_dir: Path) -> LocalTrial | None:
        """The spare as the trial, or None (then the launch is cold)."""
        pool = self._pool
        if not spare.ready.done():
            logger.debug("launch on slot %r waits for its spare to finish importing", spare.slot)
            spare.urgent = True  # no longer a background job: the trial waits for it
            if spare.process is not None:
                await pool.set_priority(spare.process.pid, low=False)
        try:
            # A spare stuck in its imports (a module that hangs) must not hold the trial: past
            # SPARE_WAIT it starts cold, where its own timeout and stops apply.
            ready = await asyncio.wait_for(asyncio.shield(spare.ready), SPARE_WAIT)
        except TimeoutError:
            logger.warning("the spare on slot %r is still importing after %g s: the trial "
                           "starts cold", spare.slot, SPARE_WAIT)
            return None
        if not ready or spare.role != "spare" or pool.spare(spare.slot) is not spare:
            return None
        process = spare.process
        assert process is not None
        pool.take(spare)
        try:
            if not await pool.set_priority(process.pid, low=False):
                raise PermissionError("its priority cannot be restored")
            trial_dir.mkdir(parents=True, exist_ok=True)
            # As LocalExecutor.launch: what an earlier run of this trial forked must be gone.
            await asyncio.to_thread(kill_leftovers, trial_dir)
            stderr_path = trial_dir / STDERR_LOG
            start = stderr_path.stat().st_size if stderr_path.exists() else 0
            launch = {"argv": argv, "env": dict(env), "cwd": os.fspath(cwd),
                      "trial_dir": os.fspath(trial_dir)}
            async with asyncio.timeout(HANDOFF_TIMEOUT):
                await process.send_handshake(json.dumps(launch).encode() + b"\n")
                answer = await process.read_handshake()
        except (OSError, TimeoutError, ValueError) as e:
            answer = f"{type(e).__name__}: {e}".encode()
        if answer != STARTED:
            pool.lost(spare)
            logger.info("spare %d could not take the trial (%s); starting it cold", process.pid,
                        answer.decode("utf-8", "replace").strip() or "it exited")
            await process.aclose()
            return None
        pool.became_trial(spare)
        self._track(process, spare.slot)
        process.adopt_stderr(stderr_path, start)
        process.sweeps(trial_dir)
        logger.debug("spare %d took the trial %s", process.pid, argv[1:])
        return process

    def _track(self, trial: LocalTrial, key: str | None) -> None:
        """Count the trial as busy, and as the holder of `key`, until its process exits."""
        if key is not None:
            self._holders[key] = trial

        def release() -> None:
            if key is not None and self._holders.get(key) is trial:
                del self._holders[key]  # the slot's next launch may use the key again

        self._pool.watch(trial, release)
