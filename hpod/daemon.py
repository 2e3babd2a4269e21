"""Daemon: start-up, the run, and a clean shutdown — owner of every long-lived task.

    run()
    ├─ lock the database (one daemon per database), open the store, reconcile trials a crash
    │  left RUNNING, install signal handlers
    ├─ TaskGroup: metric flusher · command poller · intake (watcher or fixed files) ·
    │  GPU recorder (with NVML) · one StudyController per study
    └─ shutdown: stop intake, controllers interrupt their trials (SIGTERM, SIGKILL after the
       grace), flush reports, close the store, log a summary
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

from hpod.config import DaemonConfig
from hpod.controller import StudyController, StudyProgress
from hpod.errors import DaemonError, SpaceError
from hpod.executor.base import Executor
from hpod.executor.fd_slots import ChildFdSlots
from hpod.executor.leftovers import kill_leftovers
from hpod.executor.ray import RayCluster
from hpod.executor.select import build_executor, close_executor, retire_study, runs_on_ray
from hpod.ingest import MetricSink
from hpod.intake import StudyIntake
from hpod.lock import DaemonLock
from hpod.gpu_usage import GpuUsage
from hpod.gpus import discover_gpus
from hpod.resources import ResourcePool
from hpod.spec import StudySpec
from hpod.store import open_store
from hpod.store.records import (
    CommandAction,
    CommandRecord,
    CommandState,
    EventLevel,
    StudyRecord,
    StudyState,
    TrialState,
)
from hpod.store.errors import StoreError
from hpod.store.store import Store
from hpod.wal_watch import WalWatch

logger = logging.getLogger(__name__)

# The longest a daemon's start keeps its pool closed for a study that has not asked for its
# first lease yet (Daemon._open_pool). A study starts in well under a second, but one whose
# history is slow to replay must not hold every other study's first trial behind it; past this,
# it takes its turn like a study whose file came later.
OPEN_POOL_WITHIN = 10.0


class Daemon:
    def __init__(
        self,
        config: DaemonConfig,
        *,
        executor: Executor | None = None,
        on_progress: Callable[[StudyProgress], None] = lambda _progress: None,
        fd_slots: ChildFdSlots | None = None,
    ) -> None:
        self.config = config
        # One the daemon builds is its own to close (its spares end with the daemon).
        self._owns_executor = executor is None
        self._executor = (
            executor if executor is not None else build_executor(config, fd_slots=fd_slots)
        )
        self._on_progress = on_progress
        self._inventory = discover_gpus(config.gpus)
        self._pool = ResourcePool(
            gpus=self._inventory.usable,
            slots=config.slots,
            probe=self._inventory.probe,
            default_min_free_mb=config.min_free_memory_mb,
            hide_gpus=bool(self._inventory.found),
        )
        self._stop_requested = asyncio.Event()
        self._force = False
        # Set when --exit-when-idle ended the run (not a signal): `hpod serve` then says, in its
        # exit code, whether every study completed.
        self.ended_idle = False
        self._fatal: str | None = None  # why the daemon stopped by itself, said at the end
        self._database: tuple[int, int] | None = None  # (device, inode) of the store's file
        self.controllers: dict[str, StudyController] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._intake: StudyIntake | None = None  # set once the store is open (_serve)
        self._idle_changed_event = asyncio.Event()
        # What trials launch through: the executor, or the GPU recorder's wrapper of it that
        # notes each trial's process group (_start_gpu_usage).
        self._launcher: Executor = self._executor
        self._ray: RayCluster | None = None  # connected when the first Ray study starts

    def __repr__(self) -> str:
        running = sum(c.running for c in self.controllers.values())
        return (
            f"<Daemon db={self.config.db_path} studies={len(self.controllers)} "
            f"running={running} leases={self._pool.in_use}>"
        )

    def request_shutdown(self, force: bool = False) -> None:
        """Signal-safe: only sets flags; the run loop does the work."""
        if self._stop_requested.is_set():
            force = True  # a second Ctrl-C: do not wait for trials to exit politely
        self._force = self._force or force
        self._stop_requested.set()
        if self._force:
            for controller in self.controllers.values():
                controller.shutdown(grace=0)

    async def run(self) -> None:
        lock = DaemonLock(self.config.db_path)
        lock.acquire()
        try:
            async with open_store(self.config.db_path) as store:
                await self._serve(store)
            if self._fatal is not None:
                raise DaemonError(self._fatal)
        except Exception as error:
            # A full disk or a file gone read-only ends the daemon (trials were killed with it
            # and are requeued at the next start); say it in one line, not in a traceback.
            store_error = _find_store_error(error)
            if store_error is None:
                raise
            logger.error("stopping: %s", store_error)
            raise DaemonError(str(store_error)) from None
        finally:
            lock.release()

    async def _serve(self, store: Store) -> None:
        # Which file the store opened: one deleted or replaced later is noticed (commands loop).
        self._database = _file_identity(self.config.db_path)
        await self._reconcile(store)
        # When each study was last served before this start decides between studies holding
        # as many leases (hpod.resources): otherwise every start would favour the files read
        # first. The store's times are the wall clock's, the pool's its own.
        now = time.time()
        for study, started_at in (await store.last_trial_starts()).items():
            self._pool.served_before(study, now - started_at)
        self._pool.hold()  # till the studies found now have asked (_open_pool)
        self._log_placement()
        sink = MetricSink(store, interval=self.config.flush_interval)
        restore_signals = self._install_signal_handlers()
        try:
            async with asyncio.TaskGroup() as tg:

                def start(spec: StudySpec, study: StudyRecord) -> None:
                    self._start_controller(tg, store, sink, spec, study)

                intake = StudyIntake(self.config, store, start=start, live=self.controllers)
                self._intake = intake
                flusher = tg.create_task(sink.run(), name="metric-flusher")
                gpu_usage = self._start_gpu_usage(tg, store)
                commands = tg.create_task(self._command_loop(store, intake), name="commands")
                intake_task = tg.create_task(intake.run(), name="intake")
                idle = tg.create_task(self._exit_when_idle(intake), name="idle-watch")
                opening = tg.create_task(self._open_pool(intake), name="pool-opening")
                wal = tg.create_task(WalWatch(store).run(), name="wal-watch")
                await self._stop_requested.wait()
                await self._shutdown(intake, intake_task, commands, idle, opening)
                flusher.cancel()
                wal.cancel()
                if gpu_usage is not None:
                    gpu_usage.cancel()
        finally:
            restore_signals()
            if self._owns_executor:
                await close_executor(self._executor)
            if self._ray is not None:
                await self._ray.aclose()
            await self._pool.aclose()
            self._inventory.close()
        logger.info("daemon stopped; %d report(s) written this run", sink.written)

    async def _open_pool(self, intake: StudyIntake) -> None:
        """Let the pool grant once each study found at the start has asked for its first lease
        (or shown it wants none yet), or OPEN_POOL_WITHIN seconds after the start. Served as
        they asked, the studies whose files were read first would take the free slots at every
        start; served together, the fair order decides, which knows when each study was last
        served before (hpod.resources)."""
        try:
            async with asyncio.timeout(OPEN_POOL_WITHIN):
                await intake.initial_scan_done.wait()
                if self._contended():
                    await asyncio.gather(*(c.settled.wait()
                                           for c in list(self.controllers.values())))
        except TimeoutError:
            late = [f"study {name}" for name, c in sorted(self.controllers.items())
                    if not c.settled.is_set()]
            if not intake.initial_scan_done.is_set():
                late = ["the study files to be read"]
            logger.info("placing trials without waiting any longer (%g s) for %s to start",
                        OPEN_POOL_WITHIN, ", ".join(late) or "the studies")
        self._pool.open()

    def _contended(self) -> bool:
        """Whether the studies found at the start may want more than the pool has at once: only
        then does the order they are served in matter. Without GPUs every trial takes a CPU slot
        and no study runs more than its `parallel` at once."""
        if self._pool.gpu_indices:
            return True
        return sum(c.spec.parallel for c in self.controllers.values()) > self._pool.slots

    def _start_gpu_usage(self, tg: asyncio.TaskGroup, store: Store) -> asyncio.Task[None] | None:
        """Record GPU utilisation and trials' peak GPU memory where NVML can say them."""
        usage = GpuUsage.for_inventory(store, self._inventory, self.config.gpu_sample_interval)
        if usage is None:
            return None
        self._launcher = usage.track(self._executor)
        return tg.create_task(usage.run(), name="gpu-usage")

    def _log_placement(self) -> None:
        usable = self._inventory.usable
        if usable:
            names = ", ".join(f"{gpu.index} ({gpu.name})" for gpu in usable)
            logger.info("trials run on GPUs %s (found by %s), and on %d CPU slot(s) for "
                        "studies with gpus_per_trial = 0", names, self._inventory.source,
                        self.config.slots)
        else:
            logger.info("no GPU in use; trials run on %d CPU slot(s)", self.config.slots)
        for note in self._inventory.notes:
            logger.info("gpus: %s", note)

    async def _reconcile(self, store: Store) -> None:
        """Trials a killed daemon left RUNNING: their processes died with it (PDEATHSIG), and
        what they forked is found by its HPOD_TRIAL_DIR and ended here."""
        # Also ends what a trial started in a session of its own and left when it ended
        # (kill_leftovers logs what it killed).
        kill_leftovers(self.config.trials_dir, under=True)
        names = {study.id: study.name for study in await store.list_studies()}
        for trial in await store.interrupt_running():
            message = (
                f"trial {names.get(trial.study_id, '?')}#{trial.number} was running when the "
                "daemon stopped; it will run again"
                + (" from its checkpoint" if trial.checkpoint else "")
            )
            logger.warning("%s", message)
            await store.record_event(
                EventLevel.WARNING, message, study_id=trial.study_id, trial_id=trial.id
            )

    def _start_controller(
        self,
        tg: asyncio.TaskGroup,
        store: Store,
        sink: MetricSink,
        spec: StudySpec,
        study: StudyRecord,
    ) -> None:
        if self._stop_requested.is_set():
            logger.info("study %s not started: the daemon is stopping", spec.name)
            return
        executor, pool = self._placement(spec)
        if spec.executor.cpus_per_trial != 1.0 and not runs_on_ray(spec, self.config):
            # Given without a kind, for the daemon's choice of executor: this daemon's is local.
            text = (f"study {spec.name}: executor.cpus_per_trial = "
                    f"{spec.executor.cpus_per_trial:g} applies only on Ray, and this daemon runs "
                    "it locally, one CPU slot per trial. Fix: remove it, or run the daemon with "
                    "--executor ray (or set kind = \"ray\")")
            logger.warning("%s", text)
            tg.create_task(store.record_event(EventLevel.WARNING, text, study_id=study.id),
                           name=f"note:{spec.name}")
        try:
            controller = StudyController(
                spec=spec,
                study=study,
                store=store,
                pool=pool,
                executor=executor,
                sink=sink,
                config=self.config,
                on_change=self._progress_changed,
                retire_spares=lambda: retire_study(self._executor, spec.name),
            )
        except Exception as error:  # noqa: BLE001
            # A study whose machinery cannot even be built (a suggester refusing an option the
            # file check let through) fails alone; the other studies go on.
            logger.exception("study %s could not start: internal error", spec.name)
            tg.create_task(self._fail_study(store, spec.name, study, error),
                           name=f"fail:{spec.name}")
            return
        self.controllers[spec.name] = controller
        self._tasks[spec.name] = tg.create_task(
            self._run_controller(controller, store), name=f"study:{spec.name}"
        )

    def _placement(self, spec: StudySpec) -> tuple[Executor, ResourcePool]:
        """Where a study's trials run: this machine, or a Ray cluster (docs/cluster.md)."""
        if not runs_on_ray(spec, self.config):
            return self._launcher, self._pool
        address = spec.executor.address or self.config.ray_address
        # One cluster per daemon; but one it failed to reach (a wrong address, since fixed in
        # the study file) gives way to the next study's, instead of refusing it till a restart.
        # One still connecting does not: two addresses at start are refused as ever.
        if self._ray is None or (self._ray.failed and self._ray.address != address):
            self._ray = RayCluster(address)
        leases = self._ray.leases(address, cpus_per_trial=spec.executor.cpus_per_trial)
        return self._ray.executor, leases  # type: ignore[return-value]

    async def _run_controller(self, controller: StudyController, store: Store) -> None:
        try:
            await controller.run()
        except Exception as error:  # noqa: BLE001
            if _find_store_error(error) is not None:
                raise  # the database is failing: the daemon stops (Daemon.run says why) — one study's failure must not end the night
            # NOTE: a bug in one study's machinery (a suggester that raises, say) fails that
            # study loudly, with the traceback in the log, and the other studies go on.
            logger.exception("study %s failed with an internal error", controller.name)
            await self._fail_study(store, controller.name, controller.study, error)
        finally:
            if self.controllers.get(controller.name) is controller:
                del self.controllers[controller.name]
                self._tasks.pop(controller.name, None)
            # Before the idle watch looks: a study whose file was saved while it stopped starts
            # again now, and a daemon run with --exit-when-idle must not end in between.
            if self._intake is not None and not self._stop_requested.is_set():
                await self._intake.study_ended(controller.name)
            self._idle_changed()
            if controller.name not in self.controllers:  # not restarted meanwhile
                await retire_study(self._executor, controller.name)

    async def _fail_study(self, store: Store, name: str, study: StudyRecord,
                          error: Exception) -> None:
        while isinstance(error, ExceptionGroup):  # the TaskGroups wrap the real error
            error = error.exceptions[0]
        message = (
            f"study {name} stopped by an internal error: {type(error).__name__}: "
            f"{error}. This is a bug in hpod; the daemon's log has the traceback. Save the "
            "study file again (or `hpod resume`) to retry"
        )
        for trial in await store.list_trials(study.id, [TrialState.RUNNING]):
            await store.transition(trial.id, TrialState.INTERRUPTED,
                                   reason="its study stopped by an internal error")
        await store.update_study(study.id, state=StudyState.FAILED, error=message)
        await store.record_event(EventLevel.ERROR, message, study_id=study.id)

    def _progress_changed(self, progress: StudyProgress) -> None:
        self._on_progress(progress)
        self._idle_changed()

    def _idle_changed(self) -> None:
        self._idle_changed_event.set()

    async def _exit_when_idle(self, intake: StudyIntake) -> None:
        if not self.config.exit_when_idle:
            return
        await intake.initial_scan_done.wait()
        # A study told to start again once its controller has ended (resumed, or its file
        # saved, while it stopped) is not idle: its ending controller may look idle as its
        # last trial leaves, before it has ended and the study started again.
        while intake.restarts_waiting() or not all(c.idle for c in self.controllers.values()):
            await self._idle_changed_event.wait()
            self._idle_changed_event.clear()
        logger.info("nothing left to run (--exit-when-idle): shutting down")
        self.ended_idle = True
        self._stop_requested.set()

    async def _shutdown(self, intake: StudyIntake, *tasks: asyncio.Task[None]) -> None:
        grace = 0.0 if self._force else None
        running = sum(c.running for c in self.controllers.values())
        logger.info("shutting down: stopping intake, %d running trial(s) to stop", running)
        intake.stop()
        for task in tasks:
            task.cancel()
        for controller in list(self.controllers.values()):
            controller.shutdown(grace=grace)
        pending = [t for t in self._tasks.values() if not t.done()]
        if pending:
            await asyncio.wait(pending)
        logger.info("all trials stopped")

    async def _command_loop(self, store: Store, intake: StudyIntake) -> None:
        """Apply commands written by `hpod stop|pause|resume` and the TUI.

        They come from other processes, so there is nothing to await but time: a cheap
        `PRAGMA data_version` tells when another connection committed anything at all.
        Not before the study files have been read: a command queued while no daemon ran names
        studies that only exist once their files are.
        """
        await intake.initial_scan_done.wait()
        seen = -1
        while True:
            if _file_identity(self.config.db_path) != self._database:
                self._stop_for_good(
                    f"the database {self.config.db_path} was deleted or replaced while the "
                    "daemon ran, so what the trials report now would be lost with it; the "
                    "daemon stopped. Fix: put it (or a backup) back and start the daemon "
                    "again, or start it again to begin a new database")
                return
            version = await store.data_version()
            if version != seen:
                seen = version
                for command in await store.pending_commands():
                    state, result = await self._apply(command, store)
                    await store.finish_command(command.id, state, result)
                    logger.info("command %s %s: %s", command.action.value, command.study, result)
            await asyncio.sleep(self.config.command_interval)

    def _stop_for_good(self, why: str) -> None:
        logger.error("stopping: %s", why)
        self._fatal = why
        self._stop_requested.set()

    async def _apply(self, command: CommandRecord, store: Store) -> tuple[CommandState, str]:
        controller = self.controllers.get(command.study)
        action = command.action
        if controller is None and action in (CommandAction.RESUME_STUDY, CommandAction.ENQUEUE):
            record = await store.find_study(command.study)
            if record is not None and record.state is StudyState.COMPLETE:
                return CommandState.REJECTED, (
                    f"study {command.study!r} is complete: its budget is spent. Fix: raise "
                    "`budget` in its study file, and it runs on from where it stopped")
        if action is CommandAction.RESUME_STUDY:
            if controller is not None and controller.ending:
                if self._stop_requested.is_set() or self._intake is None \
                        or not self._intake.start_when_ended(command.study):
                    return CommandState.REJECTED, (
                        f"study {command.study} is stopping and cannot start again: the daemon "
                        "is stopping, or the study's file was removed (put it back to run it)")
                return CommandState.APPLIED, (
                    f"study {command.study} is stopping; it starts again once its running "
                    "trials have ended")
            if controller is not None:
                controller.resume()
                return CommandState.APPLIED, f"study {command.study} resumed"
            started = self._intake is not None and await self._intake.restart(command.study)
            if started:
                return CommandState.APPLIED, f"study {command.study} restarted"
            return CommandState.REJECTED, f"no study {command.study!r} with a valid file"
        if controller is None:
            return CommandState.REJECTED, (
                f"study {command.study!r} is not running; resume it first (`hpod resume`)"
                if action is CommandAction.ENQUEUE else f"study {command.study!r} is not running"
            )
        if action is CommandAction.ENQUEUE:
            return self._enqueue(controller, command)
        if action is CommandAction.PAUSE_STUDY:
            controller.pause()
            return CommandState.APPLIED, f"study {command.study} paused: no new trials start"
        if action is CommandAction.STOP_STUDY:
            controller.stop("stopped by the user")
            return CommandState.APPLIED, f"study {command.study} stopped"
        if action is CommandAction.STOP_TRIAL:
            if command.trial_number is None or not controller.stop_trial(command.trial_number):
                return CommandState.REJECTED, (
                    f"trial {command.study}#{command.trial_number} is not running (it has "
                    "ended, has not started, or does not exist: `hpod trials` lists them)")
            return CommandState.APPLIED, f"trial {command.study}#{command.trial_number} stopped"
        return CommandState.REJECTED, f"unknown command {action}"

    def _enqueue(self, controller: StudyController,
                 command: CommandRecord) -> tuple[CommandState, str]:
        partial = (command.payload or {}).get("params")
        if not isinstance(partial, dict) or not partial:
            return CommandState.REJECTED, "an enqueue command needs params"
        try:
            point = controller.spec.space.validate(partial)
        except SpaceError as error:
            return CommandState.REJECTED, str(error)
        controller.enqueue(point, command.id)
        return CommandState.APPLIED, (
            f"enqueued in study {command.study}: {point} runs before new suggestions"
        )

    def _install_signal_handlers(self) -> Callable[[], None]:
        loop = asyncio.get_running_loop()
        # SIGHUP: the terminal a daemon was started from (`hpod serve DIR &`) closed. Stopped
        # cleanly like SIGTERM, its trials interrupted and rerun at the next start, rather
        # than killed with the reports still in its buffer.
        signals = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
        previous = {sig: signal.getsignal(sig) for sig in signals}
        for sig in signals:
            loop.add_signal_handler(sig, self.request_shutdown)

        def restore() -> None:
            for sig, handler in previous.items():
                loop.remove_signal_handler(sig)
                signal.signal(sig, handler)

        return restore


def _file_identity(path: Path) -> tuple[int, int] | None:
    """Which file `path` names now (device, inode); None when it names none."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _find_store_error(error: BaseException) -> StoreError | None:
    """The StoreError inside the exception groups the TaskGroups wrap around it, if any."""
    if isinstance(error, StoreError):
        return error
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            found = _find_store_error(inner)
            if found is not None:
                return found
    return None
