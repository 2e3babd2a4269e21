"""StudyController: one study's life in the daemon — the only place decisions become actions.

It asks the suggester for points, launches trials on slots from the shared pool, feeds their
reports to the scheduler, records outcomes, retries what looks transient, and decides when the
study is complete. All state that matters is in the store; what is held here is rebuilt from
it on start (`_restore`), so a restarted daemon continues where it stopped.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from pathlib import Path

from hpod.checkpoint_keep import CheckpointKeeper, Removal, remove_checkpoint
from hpod.config import DaemonConfig, trial_dir
from hpod.decision import Decision
from hpod.enqueue import complete_point, drawn_point, waiting_user_points
from hpod.enqueued_points import EnqueuedPoints
from hpod.errors import SearchExhausted, SpaceError
from hpod.executor.base import Executor
from hpod.executor.select import notify_launched
from hpod.first_rung_watch import watch_for
from hpod.hooks import run_study_hook
from hpod.ingest import MetricSink
from hpod.reasons import reason_in_one_line
from hpod.resources import Lease, PlacementError, ResourcePool
from hpod.spec import StudySpec
from hpod.store.records import (
    CommandAction,
    CommandState,
    EventLevel,
    StudyRecord,
    StudyState,
    TrialRecord,
    TrialState,
)
from hpod.store.store import Store
from hpod.study_policy import StudyPolicy, history_events
from hpod.suggest.base import Resumable
from hpod.trial_run import TrialOutcome, TrialRun

logger = logging.getLogger(__name__)

MAX_RETRY_DELAY = 600.0  # seconds: the backoff doubles up to this
_LOG_LEVELS = {EventLevel.INFO: logging.INFO, EventLevel.WARNING: logging.WARNING,
               EventLevel.ERROR: logging.ERROR}


@dataclass(slots=True)
class StudyProgress:
    """What a progress display needs, kept up to date in memory by the controller."""

    name: str
    state: StudyState
    budget_runs: int | None  # trials to run in all: budget.trials times [trial] repeats
    counts: dict[str, int] = field(default_factory=dict)
    best_value: float | None = None
    best_number: int | None = None


class StudyController:
    def __init__(
        self,
        *,
        spec: StudySpec,
        study: StudyRecord,
        store: Store,
        pool: ResourcePool,
        executor: Executor,
        sink: MetricSink,
        config: DaemonConfig,
        on_change: Callable[[StudyProgress], None] = lambda _progress: None,
        retire_spares: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.spec = spec
        self.study = study
        self._store = store
        self._pool = pool
        self._executor = executor
        self._sink = sink
        self._config = config
        self._on_change = on_change
        # The daemon's retire_study for this study: the executor here may wrap the one that
        # holds the spares.
        self._retire_spares = retire_spares
        self._launching: set[int] = set()  # trial ids whose launch has not returned yet
        # Trials that ended and are being recorded; what runs next waits for them (_next_trial).
        self._recording: set[int] = set()
        self._all_recorded = asyncio.Event()
        self._all_recorded.set()
        self._spares_behind = True  # a launch since the last retire may have started spares
        self._policy = StudyPolicy(spec)
        self._first_rung_watch = watch_for(spec.name, spec.scheduler.kind, self._policy.scheduler)
        self._runs: dict[int, TrialRun] = {}
        self._started_at: dict[int, float] = {}  # running trial -> its start (store's clock)
        self._queue: deque[TrialRecord] = deque()
        self._retry_at: dict[int, float] = {}  # trial id -> monotonic time its retry may start
        self._enqueued = EnqueuedPoints()  # points to run before the suggester's own
        self._warned: set[str] = set()  # warnings its trials gave once for the study (TrialRun)
        self._said_why_waiting = False  # an event says why no trial can be placed yet
        self._said_points_left_out = 0  # [[enqueue]] points an event said will not run
        self._hook: asyncio.Future[Any] | None = None  # on_finish / on_failure, while it runs
        self._changed = asyncio.Event()
        # Set at the first wait of its run: once its request for a lease is in line, or as it
        # waits for a change or the end. The daemon's start waits for every study's before its
        # pool grants anything (Daemon._open_pool).
        self.settled = asyncio.Event()
        self._suggest_lock = asyncio.Lock()
        self._n_created = 0
        self._consecutive_failures = 0
        self._exhausted = False
        self._on_hold = study.state is StudyState.PAUSED  # the user paused the study
        self._end: _End | None = None  # set once the study must end; trials then drain
        self._finished: Counter[TrialState] = Counter()
        self._paused_trials: dict[int, TrialRecord] = {}  # paused by the scheduler, awaiting promotion
        # Trials the scheduler promoted, or gave up on, while they were still saving their
        # checkpoint on the way to PAUSED: acted on once they are recorded paused (_record).
        self._promoted_early: set[int] = set()
        self._not_promoted_early: set[int] = set()
        self._told_no_more = False
        self._keeper = CheckpointKeeper(spec.objective.direction)
        self.progress = StudyProgress(spec.name, study.state, _budget_runs(spec))

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def running(self) -> int:
        return len(self._runs)

    @property
    def ending(self) -> bool:
        """The study is over (stopped, failed, or the daemon stops); its trials may still be
        winding down."""
        return self._end is not None

    @property
    def idle(self) -> bool:
        """Nothing runs and nothing will start by itself (paused, or waiting for an end)."""
        return not self._runs and (self._on_hold or self._end is not None)

    # -- commands from the daemon ------------------------------------------------------------

    def update_spec(self, spec: StudySpec) -> None:
        """A live edit of the study file: budget, parallel, env, timeouts apply to what comes."""
        self.spec = spec
        self._policy = self._policy.updated(spec)
        self.progress.budget_runs = _budget_runs(spec)
        self._enqueued.from_file(spec.enqueue)
        if self._enqueued.file_waiting():
            # Points to run in a finite space every point of which was proposed: they run
            # (what a partial one leaves out drawn at random, _next_trial), then it ends again.
            self._exhausted = False
        self._wake()

    def stop(self, reason: str, *, grace: float | None = None) -> None:
        """End the study for good (file removed, user's stop): running trials are stopped."""
        self._finish(StudyState.STOPPED, TrialState.STOPPED, reason, grace)

    def shutdown(self, *, grace: float | None = None) -> None:
        """The daemon is stopping: trials are interrupted and requeued at the next start. A
        hook running has HOOK_GRACE seconds more (none on a second Ctrl-C), not its timeout."""
        self._finish(None, TrialState.INTERRUPTED, "the daemon shut down", grace)
        if self._hook is not None and not self._hook.done():
            asyncio.get_running_loop().call_later(
                0 if grace == 0 else HOOK_GRACE, self._hook.cancel)

    def _finish(self, study_state: StudyState | None, trial_state: TrialState, reason: str,
                grace: float | None) -> None:
        if self._end is None:
            self._end = _End(study_state, trial_state, reason)
        for run in self._runs.values():
            run.request_stop(trial_state, reason, self.spec.trial.grace if grace is None else grace)
        self._wake()

    def pause(self) -> None:
        self._on_hold = True
        self._wake()

    def resume(self) -> None:
        self._on_hold = False
        self._wake()

    def stop_trial(self, number: int) -> bool:
        for run in self._runs.values():
            if run.trial.number == number and run.trial.id not in self._recording:
                run.request_stop(TrialState.STOPPED, "stopped by the user", self.spec.trial.grace)
                return True
        return False

    # -- the life of the study -----------------------------------------------------------------

    async def run(self) -> None:
        try:
            await self._run()
        finally:
            self.settled.set()

    async def _run(self) -> None:
        await self._restore()
        async with asyncio.TaskGroup() as tg:
            while True:
                wanted = StudyState.PAUSED if self._on_hold else StudyState.RUNNING
                if self._end is None and self.study.state is not wanted \
                        and not self._still_complete():
                    await self._set_state(wanted)
                if self._end is None and self._budget_spent() and not self._told_no_more \
                        and self._every_trial_started():
                    # Lets a synchronous scheduler judge a cohort that will never fill up; not
                    # before the last trials have started, or it is judged without them.
                    self._told_no_more = True
                    self._policy.no_more_trials()
                if self._end is None and self._budget_spent() and self._spares_behind \
                        and not self._launching and not self._queue and not self._paused_trials:
                    # No new trial will start, so the spares would hold memory and a core for
                    # nothing. Not before the last launches return, nor while a queued retry
                    # or a paused trial may still launch: they may use one. A later retry or
                    # promotion starts cold, and its spare is retired in turn.
                    self._spares_behind = False
                    if self._retire_spares is not None:
                        await self._retire_spares()
                await self._settle_paused()
                if self._end is None:
                    await self._say_file_points_left_out()
                if self._end is None and self._should_complete():
                    await self._retire_paused("the study's budget is spent")
                    self._end = _End(StudyState.COMPLETE, TrialState.STOPPED, None)
                if self._end is not None:
                    if not self._runs:
                        break
                    await self._wait_change()
                    continue
                if self._on_hold or not self._may_launch():
                    await self._wait_change(self._next_wakeup())
                    continue
                try:
                    lease = await self._acquire_lease()
                except PlacementError as error:  # e.g. 2 GPUs per trial on a 1-GPU machine
                    await self._store.record_event(EventLevel.ERROR, str(error),
                                                   study_id=self.study.id)
                    # No trial can start; those running (placed before a live edit asked for
                    # more) are fine where they are, and finish.
                    if self._end is None:
                        self._end = _End(StudyState.FAILED, TrialState.STOPPED, str(error))
                    continue
                if lease is None:
                    continue
                trial = await self._next_trial()
                if trial is None:
                    lease.release()
                    if self._runs or self._queue:  # an end or a retry's time changes things
                        await self._wait_change(self._next_wakeup())
                    elif self._paused_trials and self._budget_spent():
                        await self._retire_paused("the scheduler promoted it no further")
                    continue
                # Registered before the task runs, so the next turn of this loop counts it.
                run = self._runs[trial.id] = self._new_run(trial, lease)
                tg.create_task(self._run_trial(run, lease), name=f"{self.name}#{trial.number}")
        self.settled.set()  # before a hook, which may run for minutes
        end = self._end
        if end.study_state is not None:
            failure = end.reason if end.study_state is StudyState.FAILED else None
            changed = end.study_state is not self.study.state
            await self._set_state(end.study_state, error=failure)
            if changed and end.study_state is StudyState.COMPLETE:
                await self._store.record_event(
                    EventLevel.INFO, self._completion_summary(), study_id=self.study.id
                )
            if changed and end.study_state in (StudyState.COMPLETE, StudyState.FAILED):
                # on_finish / on_failure: how a user hears that the night's study ended.
                self._hook = asyncio.ensure_future(run_study_hook(
                    self.spec, self.study, self._store, db_path=self._config.db_path))
                try:
                    await self._hook
                except asyncio.CancelledError:
                    if not self._hook.cancelled():
                        raise  # this task itself is cancelled, not only the hook
                    logger.warning("study %s: its %s hook was cut short by the daemon's stop",
                                   self.name, "on_finish" if end.study_state is
                                   StudyState.COMPLETE else "on_failure")

    def _completion_summary(self) -> str:
        counts = ", ".join(
            f"{n} {state.value}" for state, n in sorted(self._finished.items()) if n
        )
        text = f"study {self.name} complete: {counts or 'no trials'}"
        if self.progress.best_value is not None:
            text += (f"; best {self.spec.objective.metric} = {self.progress.best_value:.6g} "
                     f"(trial #{self.progress.best_number})")
        return text

    def _wake(self) -> None:
        self._changed.set()

    async def _wait_change(self, timeout: float | None = None) -> None:
        self.settled.set()
        try:
            await asyncio.wait_for(self._changed.wait(), timeout)
        except TimeoutError:
            pass
        self._changed.clear()

    def _may_launch(self) -> bool:
        if len(self._runs) >= self.spec.parallel:
            return False
        return (
            self._first_ready() is not None
            or bool(self._paused_trials)
            or self._enqueued.user_waiting()
            or not self._budget_spent()
        )

    def _first_ready(self) -> TrialRecord | None:
        """The first queued trial whose retry delay has passed (requeued ones have none)."""
        now = time.monotonic()
        return next((t for t in self._queue if self._retry_at.get(t.id, 0.0) <= now), None)

    def _next_wakeup(self) -> float | None:
        """Seconds until something changes by the clock alone: a retry falls due, the budget's
        hours run out. None: only an event can change anything."""
        moments = [at - time.monotonic() for at in self._retry_at.values()]
        budget_left = self._policy.seconds_until_budget_ends(self.study)
        if budget_left is not None:
            moments.append(budget_left)
        return max(0.0, min(moments)) if moments else None

    def _budget_spent(self) -> bool:
        return self._exhausted or self._policy.budget_spent(self.study, self._n_created)

    def _should_complete(self) -> bool:
        return (
            not self._runs and not self._queue and not self._paused_trials
            and not self._enqueued.user_waiting() and self._budget_spent()
        )

    async def _say_file_points_left_out(self) -> None:
        """[[enqueue]] points count against the budget, so those added to a study whose budget
        is spent (a live edit, or a complete study's file saved) wait for good: said once, with
        the fix, instead of the study completing as if they had run."""
        waiting = self._enqueued.file_waiting()
        trials = self.spec.budget.trials
        seconds_left = self._policy.seconds_until_budget_ends(self.study)
        left_out, why, fix = 0, "", ""
        if not waiting or self._exhausted:
            pass
        elif seconds_left is not None and seconds_left <= 0:
            left_out, why, fix = waiting, "the study's time budget is spent", "raise budget.hours"
        elif trials is not None and waiting > trials - self._n_created:
            room = max(0, trials - self._n_created)
            left_out = waiting - room
            why = (f"the budget of {trials} trials is spent" if room == 0 else
                   f"the budget has {room} trial{'' if room == 1 else 's'} left")
            fix = f"raise budget.trials to {self._n_created + waiting}"
        if left_out and left_out != self._said_points_left_out:
            said = f"study {self.name}: {left_out} of its [[enqueue]] points will not run"
            # Not again at each start of a study that ended with the same points left out.
            last = await self._store.list_events(study_id=self.study.id, limit=1, newest=True,
                                                 levels=[EventLevel.WARNING])
            if not last or not last[0].message.startswith(said + ":"):
                await self._store.record_event(EventLevel.WARNING, f"{said}: {why}. Fix: {fix}",
                                               study_id=self.study.id)
        self._said_points_left_out = left_out

    def _every_trial_started(self) -> bool:
        """Every trial the budget made has been told to the scheduler as started."""
        return all(trial_id in self._started_at for trial_id in self._runs) and not any(
            trial.started_at is None for trial in self._queue)

    def _still_complete(self) -> bool:
        """A study that ended complete and was started again (a daemon restart, a touched
        file) with nothing more to do: it stays complete, and its end is not announced twice."""
        return self.study.state is StudyState.COMPLETE and self._should_complete()

    async def _settle_paused(self) -> None:
        """Paused trials the scheduler has given up on become STOPPED."""
        for trial_id in self._policy.take_stopped():
            if trial_id in self._runs:  # still pausing: stopped once it is recorded paused
                self._not_promoted_early.add(trial_id)
                continue
            await self._stop_paused(trial_id, self._not_promoted_reason())

    def _not_promoted_reason(self) -> str:
        return f"not promoted by the {self.spec.scheduler.kind} scheduler"

    async def _retire_paused(self, why: str) -> None:
        for trial_id in sorted(self._paused_trials):
            await self._stop_paused(trial_id, f"paused, then stopped: {why}")

    async def _stop_paused(self, trial_id: int, reason: str) -> None:
        if trial_id not in self._paused_trials:
            return
        self._paused_trials.pop(trial_id, None)
        trial = await self._store.transition(trial_id, TrialState.STOPPED, reason=reason)
        self._finished[TrialState.PAUSED] -= 1
        self._finished[TrialState.STOPPED] += 1
        await self._observe(trial)
        await self._ended_for_good(trial)
        self._publish()

    async def _acquire_lease(self) -> Lease | None:
        """A place to run (GPUs or a CPU slot), or None when something changed while waiting
        (pause, stop, new budget)."""
        resources = self.spec.resources
        acquire = asyncio.ensure_future(self._pool.acquire(
            self.name,
            resources.gpus_per_trial,
            resources.min_free_memory_mb,
            memory_limit_mb=resources.gpu_memory_limit_mb,
            # Set by the pool once the request is in line, not here: the daemon's start must
            # not open the pool before it is (whatever order asyncio runs the two tasks in).
            queued=self.settled,
        ))
        changed = asyncio.ensure_future(self._changed.wait())
        try:
            done, _ = await asyncio.wait({acquire, changed}, timeout=_SAY_WHY_WAITING_AFTER,
                                         return_when=asyncio.FIRST_COMPLETED)
            if not done and not self._said_why_waiting:
                await self._say_why_waiting()
                await asyncio.wait({acquire, changed}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            # This controller is being torn down (cancelled, or a sibling trial's task failed):
            # asyncio.wait leaves `acquire` running, and a lease it gets would never be freed.
            _give_back(acquire)
            raise
        finally:
            changed.cancel()
        if acquire.done():
            self._said_why_waiting = False  # placed: a later wait is worth saying again
            return acquire.result()
        acquire.cancel()
        try:
            await acquire
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # this controller is cancelled too, not only the wait for a lease
        self._changed.clear()
        return None

    async def _say_why_waiting(self) -> None:
        """A trial kept waiting for GPU memory (someone else's job on the cards) is said in the
        events, where `hpod events` and the TUI show it, once until a trial is placed again:
        otherwise the study just sits."""
        asking = getattr(self._pool, "waiting_for_memory", None)  # Ray queues on its own
        why = asking(self.name) if asking is not None else None
        if why:
            self._said_why_waiting = True
            await self._event(EventLevel.INFO,
                              f"study {self.name}: no trial can be placed yet, {why}")

    async def _next_trial(self) -> TrialRecord | None:
        """What runs next: a requeued trial, a promoted paused one, else a new point."""
        # Decided knowing every trial that has ended. The one whose end freed this slot gave its
        # lease back before it was recorded: unwaited, a suggestion would race its result, and
        # see it as pending or as a result depending on which await finished first, so the same
        # study would take other paths from one run to the next.
        await self._all_recorded.wait()
        if self._end is not None:
            return None
        ready = self._first_ready()
        while ready is not None:
            self._queue.remove(ready)
            self._retry_at.pop(ready.id, None)
            if not self._policy.config_stopped(ready):
                return ready
            await self._skip_stopped_run(ready)
            ready = self._first_ready()
        promoted = next((t for t in sorted(self._promoted_early) if t in self._paused_trials),
                        None)
        if promoted is not None:
            self._promoted_early.discard(promoted)
        else:
            promoted = self._policy.next_resume()
            if promoted is not None and promoted not in self._paused_trials \
                    and promoted in self._runs:
                # Promoted while it still saves its checkpoint: it resumes once recorded
                # paused, in a slot that frees later; this one takes what comes next.
                self._promoted_early.add(promoted)
                promoted = None
        if promoted is not None and promoted in self._paused_trials:
            self._paused_trials.pop(promoted, None)
            self._finished[TrialState.PAUSED] -= 1
            return await self._store.get_trial(promoted)
        enqueued = self._enqueued.take(budget_spent=self._budget_spent())
        if enqueued is None and self._budget_spent():
            return None
        state: dict[str, Any] | None = None
        try:
            suggestion, state = await self._suggest()
        except SearchExhausted:
            if enqueued is None:
                logger.info("study %s: the search space is exhausted", self.name)
                self._exhausted = True
                return None
            # Asked for by name, so it runs: what a partial point leaves out is drawn at random.
            suggestion = enqueued[1]
            if len(enqueued[1]) < self.spec.space.dim:
                suggestion = drawn_point(self.spec.space, enqueued[0])
                await self._store.record_event(
                    EventLevel.INFO, f"study {self.name}: every point of the search space has "
                    f"been proposed, so the parameters the enqueued point {enqueued[1]} does not "
                    "give are drawn at random", study_id=self.study.id)
        if self._end is not None or self._on_hold:
            # Stopped or paused while the suggester worked (a GP fit takes up to a second):
            # no trial is made of it, and an enqueued point waits for the next one.
            if enqueued is not None:
                self._enqueued.put_back(enqueued)
            return None
        origin, params = None, suggestion
        if enqueued is not None:
            origin, partial = enqueued
            params = complete_point(self.spec.space, partial, suggestion)
        self._n_created += 1  # the budget counts configurations, however often each runs
        if self.spec.trial.repeats == 1:
            return await self._store.create_trial(self.study.id, params, origin=origin,
                                                  suggester_state=state)
        first, *others = await self._store.create_runs(self.study.id, params,
                                                       self.spec.trial.repeats, origin=origin,
                                                       suggester_state=state)
        self._queue.extend(others)  # the configuration's other runs go next, beside it
        return first

    async def _skip_stopped_run(self, trial: TrialRecord) -> None:
        """A queued run whose configuration the scheduler stopped through a sibling run."""
        final = await self._store.transition(
            trial.id, TrialState.STOPPED,
            reason=f"its configuration (trial #{trial.config_number}) was stopped by the "
                   f"{self.spec.scheduler.kind} scheduler before this run started")
        self._policy.on_end(final)
        self._finished[TrialState.STOPPED] += 1
        await self._observe(final)
        self._publish()

    async def _suggest(self) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """(a new point, the suggester's state after proposing it, None if it keeps none)."""
        # Every point that has a trial but no result yet is pending: running, queued for a
        # retry or a requeue, paused at a rung. After a restart this is what keeps a suggester
        # from proposing them again.
        pending = [run.trial.params for run in self._runs.values()]
        pending += [trial.params for trial in self._queue]
        pending += [trial.params for trial in self._paused_trials.values()]
        suggester = self._policy.suggester
        async with self._suggest_lock:
            # On the loop: the rung values it drains are queued by reports on the loop.
            self._policy.tell_rungs()
            # Fitting a GP blocks for up to a second: never on the event loop.
            point = await asyncio.to_thread(suggester.suggest, pending)
            return point, suggester.state() if isinstance(suggester, Resumable) else None

    def enqueue(self, partial: dict[str, Any], command_id: int) -> None:
        """`hpod enqueue`: run this (partial) point next, before new suggestions. Its trial
        records the command as its origin, so a restart knows whether it still waits."""
        if not self._enqueued.add_user(partial, command_id):
            return
        self._publish()
        self._wake()

    def _new_run(self, trial: TrialRecord, lease: Lease) -> TrialRun:
        self._launching.add(trial.id)
        return TrialRun(
            spec=self.spec,
            trial=trial,
            lease=lease,
            store=self._store,
            sink=self._sink,
            executor=notify_launched(self._executor, lambda: self._launched(trial.id)),
            trial_dir=self._trial_dir(trial),
            decide=self._decide,
            decision_timeout=self._policy.decision_timeout,
            warned=self._warned,
        )

    def _decide(self, trial_id: int, step: float, value: float, resumable: bool = True
                ) -> Decision:
        """The scheduler's answer to a report, which is also timed: what the trial costs
        (hpod.cost_feed)."""
        started = self._started_at.get(trial_id)
        if started is not None and self._policy.tells_costs:
            self._policy.timed_report(trial_id, step, time.time() - started)
        return self._policy.decide(trial_id, step, value, resumable)

    def _launched(self, trial_id: int) -> None:
        """The trial's launch returned or failed; the executor may have started a spare behind
        it, which the run loop retires once the budget is spent."""
        self._launching.discard(trial_id)
        self._spares_behind = True
        if self._budget_spent():
            self._wake()

    async def _run_trial(self, run: TrialRun, lease: Lease) -> None:
        trial = run.trial
        try:
            running = await self._store.transition(trial.id, TrialState.RUNNING,
                                                   placement=lease.label)
            if running.started_at is not None:
                self._started_at[trial.id] = running.started_at
            self._policy.on_start(trial)
            self._wake()  # the main loop may wait for every trial to have started
            if self._end is not None:  # the study ended while this trial was being set up
                run.request_stop(self._end.trial_state, self._end.reason or "", 0)
            self._publish()
            outcome = await run.run()
            self._recording.add(trial.id)
            self._all_recorded.clear()
            lease.release()  # the next trial may have the GPU while this one is recorded
            # NOTE: the trial stays in _runs until its result is observed, so a suggestion
            # made meanwhile sees its point as pending: a grid never proposes it twice.
            await self._record(trial, outcome)
        finally:
            lease.release()
            self._runs.pop(trial.id, None)
            self._started_at.pop(trial.id, None)
            self._launching.discard(trial.id)  # a run that ended before its launch returned
            self._recording.discard(trial.id)
            if not self._recording:
                self._all_recorded.set()
        self._wake()

    def _trial_dir(self, trial: TrialRecord) -> Path:
        return trial_dir(self._config.trials_dir, self.name, trial.number)

    async def _record(self, trial: TrialRecord, outcome: TrialOutcome) -> None:
        if outcome.state is TrialState.INTERRUPTED and self._end is None:
            await self._requeue_lost(trial, outcome)
            return
        final = await self._store.transition(
            trial.id,
            outcome.state,
            reason=outcome.reason,
            exit_code=outcome.exit_code,
            value=outcome.value,
        )
        if final.state is TrialState.PAUSED:
            self._paused_trials[final.id] = final
            if final.id in self._promoted_early:
                self._wake()  # it may take the next free slot
        else:
            self._policy.on_end(final)
        self._finished[final.state] += 1
        retried = outcome.state is TrialState.FAILED and await self._maybe_retry(final, outcome)
        if not retried:
            await self._observe(final)
        if final.id in self._not_promoted_early:
            self._not_promoted_early.discard(final.id)
            await self._stop_paused(final.id, self._not_promoted_reason())
        level = EventLevel.INFO
        if outcome.state is TrialState.FAILED:
            level = EventLevel.WARNING
            if not retried:
                self._consecutive_failures += 1
        elif outcome.state is TrialState.COMPLETE:
            self._consecutive_failures = 0
        if final.state.is_finished() and not retried:
            await self._ended_for_good(final)
        message = _describe(self.name, final, outcome)
        if outcome.state is TrialState.INTERRUPTED:
            message += "; it runs again when the daemon next starts"
        # Trials that did not end by themselves are worth a line in the night's record.
        if level is not EventLevel.INFO or outcome.state in (TrialState.STOPPED,
                                                             TrialState.INTERRUPTED):
            await self._event(level, message, trial)
        else:
            logger.info("%s", message)
        streak = None if self._first_rung_watch is None else self._first_rung_watch.on_end(final)
        if streak is not None:
            await self._event(EventLevel.WARNING, streak)
        if self._consecutive_failures >= self.spec.max_failures and self._end is None:
            last = reason_in_one_line(outcome.reason or "")
            reason = (
                f"{self._consecutive_failures} trials in a row failed (max_failures = "
                f"{self.spec.max_failures}); the last one: {last}. Fix the trial, then "
                "save the study file again (or run `hpod resume`) to continue"
            )
            # Two texts, not one _event: the log line must name the study, which the event
            # (like the study's error) shows in a column of its own.
            logger.error("study %s stopped: %s", self.name, reason)
            await self._store.record_event(EventLevel.ERROR, reason, study_id=self.study.id)
            self._finish(StudyState.FAILED, TrialState.STOPPED, reason, None)
        self._publish()

    async def _requeue_lost(self, trial: TrialRecord, outcome: TrialOutcome) -> None:
        """Its machine went away under it (a lost Ray node): it runs again at once, as after
        a daemon restart; the scheduler still counts it running, as its replay would."""
        await self._store.transition(trial.id, TrialState.INTERRUPTED, reason=outcome.reason,
                                     value=outcome.value)
        requeued = await self._store.transition(trial.id, TrialState.QUEUED)
        self._queue.append(requeued)
        await self._event(EventLevel.WARNING, f"trial {self.name}#{trial.number} was "
                          f"interrupted ({outcome.reason}); it will run again", trial)
        self._publish()

    async def _maybe_retry(self, trial: TrialRecord, outcome: TrialOutcome) -> bool:
        """Requeue a failed trial that has retries left; whether it was."""
        if not outcome.transient or trial.attempt >= self.spec.trial.retries or self._end:
            return False
        requeued = await self._store.transition(trial.id, TrialState.QUEUED)
        self._finished[TrialState.FAILED] -= 1
        # Backoff: a GPU that ran out of memory, a file server that hiccupped — waiting a bit
        # makes the retry worth more than an immediate one that fails the same way.
        delay = min(MAX_RETRY_DELAY, self.spec.trial.retry_delay * 2 ** trial.attempt)
        self._retry_at[requeued.id] = time.monotonic() + delay
        self._queue.append(requeued)
        await self._store.record_event(
            EventLevel.INFO,
            f"trial {self.name}#{trial.number} will be retried in {delay:g} s "
            f"(attempt {requeued.attempt + 1} of {self.spec.trial.retries + 1})",
            study_id=self.study.id,
            trial_id=trial.id,
        )
        return True

    async def _ended_for_good(self, trial: TrialRecord) -> None:
        """A trial that will never run again: its checkpoint may go (keep_checkpoints)."""
        self._keeper.ended(trial)
        await self._drop_checkpoints()

    async def _drop_checkpoints(self) -> None:
        """Delete the checkpoints [trial] keep_checkpoints lets go (hpod.checkpoint_keep)."""
        keep = self.spec.trial.keep_checkpoints
        for trial in self._keeper.to_delete(keep):
            assert trial.checkpoint is not None
            try:
                removal = await asyncio.to_thread(remove_checkpoint, trial.checkpoint,
                                                  self._trial_dir(trial))
            except OSError as e:
                await self._event(EventLevel.WARNING, f"cannot delete the checkpoint "
                                  f"{trial.checkpoint} of trial {self.name}#{trial.number} "
                                  f"([trial] keep_checkpoints): {e}", trial)
                continue
            if removal is Removal.OUTSIDE:
                if "checkpoint_outside" not in self._warned:
                    self._warned.add("checkpoint_outside")
                    await self._event(
                        EventLevel.WARNING,
                        f"trial {self.name}#{trial.number}'s checkpoint {trial.checkpoint} is "
                        "not inside its trial folder, so [trial] keep_checkpoints keeps it (and "
                        "any other such); save checkpoints under hpod.trial.trial_dir() for "
                        "hpod to delete them", trial)
                continue
            await self._store.set_checkpoint(trial.id, None)
            logger.info("deleted the checkpoint of trial %s#%d (%s; keep_checkpoints = %d)",
                        self.name, trial.number, trial.state, keep)

    async def _event(self, level: EventLevel, message: str,
                     trial: TrialRecord | None = None) -> None:
        """Said in the daemon's log and in the study's events (`hpod events`, the TUI)."""
        logger.log(_LOG_LEVELS[level], "%s", message)
        await self._store.record_event(level, message, study_id=self.study.id,
                                       trial_id=None if trial is None else trial.id)

    async def _observe(self, trial: TrialRecord) -> None:
        async with self._suggest_lock:
            observed = self._policy.observe(trial)
        if observed is None:  # a run of a configuration whose other runs are still going
            return
        trial = observed
        if trial.state is TrialState.COMPLETE and trial.value is not None:
            best = self.progress.best_value
            if best is None or self.spec.objective.direction.better(trial.value, best):
                self.progress.best_value = trial.value
                self.progress.best_number = trial.number

    async def _restore(self) -> None:
        """Rebuild everything held in memory from the store (start-up, restart, resume)."""
        trials = await self._store.list_trials(self.study.id)
        self._n_created = sum(1 for trial in trials if trial.repeat == 0)
        await self._replay_history(trials)
        self._enqueued.made(t.origin for t in trials)
        self._enqueued.from_file(self.spec.enqueue)
        await self._enqueue_from_commands(trials)
        # The suggester is told the finished trials in the order they ended, as it was told them
        # live: with several trials at once, a GP fitted on its rows in another order differs
        # by a rounding, and a restarted study would then leave the path it was on.
        for trial in sorted(trials, key=_end_order):
            if trial.state is TrialState.INTERRUPTED or (
                trial.state is TrialState.PAUSED and self._policy.scheduler is None
            ):
                trial = await self._store.transition(trial.id, TrialState.QUEUED)
            if trial.state is TrialState.QUEUED:
                self._queue.append(trial)
                continue
            if trial.state is TrialState.PAUSED:
                self._paused_trials[trial.id] = trial
            else:
                await self._observe(trial)
                if trial.state.is_finished():
                    self._keeper.ended(trial)
            self._finished[trial.state] += 1
            if trial.state is TrialState.FAILED:
                self._consecutive_failures += 1
            elif trial.state is TrialState.COMPLETE:
                self._consecutive_failures = 0
        await self._load_suggester_state()
        await self._drop_checkpoints()  # those a killed daemon had no time for
        # A study the user resumed starts with a clean slate of failures.
        if self.study.state is not StudyState.FAILED:
            self._consecutive_failures = min(self._consecutive_failures,
                                             self.spec.max_failures - 1)
        else:
            self._consecutive_failures = 0
        self._publish()

    async def _load_suggester_state(self) -> None:
        """After the trials are observed again: what the suggester knew beyond them (a kernel's
        warm start, a portfolio's gains), so the study goes on as if the daemon had not
        stopped. A state it cannot take (saved by another hpod version) is recorded, not fatal."""
        suggester = self._policy.suggester
        try:
            state = await self._store.suggester_state(self.study.id)
            if state is not None and isinstance(suggester, Resumable):
                suggester.load_state(state)
                await self._store.record_event(
                    EventLevel.INFO,
                    f"study {self.name}: its {self.spec.suggester.kind} suggester goes on from "
                    "its saved state (what it had learned beyond the trials, saved with the "
                    "last one it proposed)",
                    study_id=self.study.id,
                )
                return
        # Whatever a corrupt column holds (text that is not JSON, numbers out of range): the
        # study must still run, and a study that cannot start is what this guards against.
        except Exception as error:
            await self._store.record_event(
                EventLevel.WARNING,
                f"study {self.name}: the saved state of its {self.spec.suggester.kind} suggester "
                f"was not loaded ({type(error).__name__}: {error}); it goes on from its trials "
                "alone",
                study_id=self.study.id,
            )
            state = None
        if state is not None:
            # Saved by another suggester (the study file changed while the daemon was down):
            # cleared, so a later switch back cannot pick up a state this search never had.
            await self._store.set_suggester_state(self.study.id, None)

    async def _enqueue_from_commands(self, trials: list[TrialRecord]) -> None:
        """`hpod enqueue` points that have no trial yet: kept in the commands that brought them,
        so a restart does not lose them. One the study's space no longer takes is recorded."""
        applied = [(c.id, (c.payload or {}).get("params"))
                   for c in await self._store.list_commands()
                   if c.action is CommandAction.ENQUEUE and c.study == self.name
                   and c.state is CommandState.APPLIED]
        waiting = self._enqueued.origins()
        for origin, partial in waiting_user_points(applied, [t.origin for t in trials]):
            if origin in waiting:
                continue
            try:
                point = self.spec.space.validate(partial)
            except SpaceError as error:
                await self._store.record_event(
                    EventLevel.WARNING,
                    f"study {self.name}: a point enqueued with `hpod enqueue` before the restart "
                    f"no longer fits the study and will not run: {error}",
                    study_id=self.study.id)
                continue
            self._enqueued.restore_user(origin, point)

    async def _replay_history(self, trials: list[TrialRecord]) -> None:
        """The scheduler's rungs and the trials' costs are rebuilt from the stored reports,
        never pickled."""
        rungs = self._policy.scheduler is not None
        if not trials or not (rungs or self._policy.tells_costs):
            return
        # Only what the replay reads: a trial may report a dozen metrics at every step.
        names = [self.spec.objective.metric, *filter(None, [self.spec.scheduler.resource])]
        metrics = {
            trial.id: [point for _row, point in await self._store.metrics(trial.id, names=names)]
            for trial in trials
            if trial.started_at is not None
        }
        if rungs:
            self._policy.replay(history_events(trials, metrics, self.spec.objective.metric,
                                               self.spec.scheduler.resource), trials)
        self._policy.replay_costs(trials, metrics)

    async def _set_state(self, state: StudyState, *, error: str | None = None) -> None:
        if state is self.study.state and error == self.study.error:
            return
        previous = self.study.state
        self.study = await self._store.update_study(self.study.id, state=state, error=error)
        if state is not previous:
            logger.info("study %s: %s", self.name, state.value)
        self._publish()

    def _publish(self) -> None:
        counts = {state.value: self._finished[state] for state in TrialState}
        counts[TrialState.RUNNING.value] = len(self._runs)
        counts[TrialState.QUEUED.value] = len(self._queue) + len(self._enqueued)
        self.progress.counts = counts
        self.progress.state = self.study.state
        self._on_change(self.progress)


def _give_back(acquire: asyncio.Future[Lease]) -> None:
    """Abandon a wait for a lease: cancelled while it waits (the pool forgets the request, or
    hands back a lease granted in that same turn), released when it already has one."""
    if not acquire.done():
        acquire.cancel()
    elif not acquire.cancelled() and acquire.exception() is None:
        acquire.result().release()


@dataclass(frozen=True, slots=True)
class _End:
    study_state: StudyState | None  # None: leave the study's state as it is (daemon shutdown)
    trial_state: TrialState  # what running trials become
    reason: str | None


def _end_order(trial: TrialRecord) -> tuple[float, int]:
    """Finished trials by when they ended; the others (queued, paused) after them, in trial
    order, which is the order they queue in."""
    if trial.state.is_finished() and trial.finished_at is not None:
        return trial.finished_at, trial.id
    return math.inf, trial.id


# How long a hook still running when the daemon stops may go on (its own timeout is 60 s).
HOOK_GRACE = 10.0
# How long a trial may wait to be placed before the study's events say why.
_SAY_WHY_WAITING_AFTER = 5.0


def _budget_runs(spec: StudySpec) -> int | None:
    trials = spec.budget.trials
    return None if trials is None else trials * spec.trial.repeats


def _describe(study: str, trial: TrialRecord, outcome: TrialOutcome) -> str:
    head = f"trial {study}#{trial.number} {trial.state.value}"
    if outcome.value is not None and not math.isnan(outcome.value):
        head += f" with {outcome.value:.6g}"
    if outcome.reason:
        head += f": {reason_in_one_line(outcome.reason)}"
    if trial.started_at and trial.finished_at:
        head += f" ({trial.finished_at - trial.started_at:.1f} s)"
    return head
