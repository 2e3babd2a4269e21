"""One attempt of one trial, from launch to its recorded outcome.

The run owns the trial's process for its whole life: it feeds reports to the sink and the
scheduler, answers each report, enforces the timeout, the stall timeout and the grace after a
stop decision, and turns the way the process ended into a state and a reason in words.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpod.decision import Decision
from hpod.errors import LaunchError
from hpod.executor.base import Executor, RunningTrial, TrialExit
from hpod.executor.leftovers import trial_dir_value
from hpod.executor.select import spare_slot
from hpod.ingest import MetricSink
from hpod.log_cap import LOG_CHECK_SOONEST, look_at_logs, next_check, trim_logs
from hpod.repeats import run_seed
from hpod.resources import Lease
from hpod.spec import StudySpec
from hpod.store.records import EventLevel, TrialRecord, TrialState
from hpod.store.store import Store
from hpod.wire import CheckpointNote, Declaration, Report, WireProblem

logger = logging.getLogger(__name__)

# A trial that writes junk on every line should not flood the events table.
MAX_PROTOCOL_WARNINGS = 5
# After the process exits, leftover children may hold the report pipe open; how long to wait
# for the pipe to drain before giving up on the rest.
DRAIN_TIMEOUT = 5.0
# A trial whose machine is lost is requeued (INTERRUPTED) while it has run fewer times than
# this; then it fails: a trial that takes down its Ray worker every time must not loop.
MAX_REQUEUES_WHEN_LOST = 3

# (trial id, step, value, resumable: the trial declared it can checkpoint) -> the answer
DecideFn = Callable[[int, float, float, bool], Decision]


@dataclass(frozen=True, slots=True)
class TrialOutcome:
    state: TrialState
    value: float | None
    reason: str | None
    exit_code: int | None = None
    transient: bool = False  # worth a retry: a crash or a kill, not a missing metric


@dataclass(slots=True)
class _StopRequest:
    state: TrialState
    reason: str
    grace: float


class TrialRun:
    def __init__(
        self,
        *,
        spec: StudySpec,
        trial: TrialRecord,
        lease: Lease,
        store: Store,
        sink: MetricSink,
        executor: Executor,
        trial_dir: Path,
        decide: DecideFn,
        decision_timeout: float,
        warned: set[str] | None = None,
    ) -> None:
        self.spec = spec
        # The study's warnings already recorded (shared by its trials): a mistake every trial
        # repeats is said once.
        self._warned = set() if warned is None else warned
        self._resource_missing_at: int | None = None  # a report's step that lacked `resource`
        self.trial = trial
        self.lease = lease
        self._store = store
        self._sink = sink
        self._executor = executor
        self.trial_dir = trial_dir
        self._decide = decide
        self._decision_timeout = decision_timeout
        self._wake = asyncio.Event()
        self._launched_at = time.monotonic()
        self._stop: _StopRequest | None = None
        # The process ended before any stop reached it: a stop asked for while its last reports
        # are still being drained and written (a shutdown) does not make a finished trial
        # "interrupted", to be run again.
        self._exited_by_itself = False
        # A trial that announces checkpoints is taken to save one when paused (it may do so
        # before the report that gets the "pause"); one that never does is warned about.
        self._announced_checkpoint = False
        # The scheduler's verdict (STOP or PAUSE), where, and by when the trial must have exited.
        self._verdict: Decision | None = None
        self._verdict_deadline: float | None = None
        self._last_value: float | None = None
        self._last_step: int | None = None
        if trial.checkpoint:
            # A run resumed from its checkpoint goes on with the trial's reports so far. One
            # with nothing left to train (killed while it saved its model after the last epoch)
            # exits without a report, and is complete with its last value, not failed.
            self._last_value, self._last_step = trial.value, trial.last_step
        self._last_report = time.monotonic()
        self._stopped_at_step: float | None = None
        self._warnings = 0
        self._resumable = False  # until the trial declares it checkpoints on "pause"
        self._objective = spec.objective.metric

    # -- control from outside -------------------------------------------------------------

    def request_stop(self, state: TrialState, reason: str, grace: float) -> None:
        """Ask the trial to end: SIGTERM to its process group, SIGKILL after `grace` seconds.

        A later request only shortens the grace (a second Ctrl-C: stop now); the first one's
        state and reason stand."""
        if self._stop is None:
            self._stop = _StopRequest(state, reason, grace)
            self._wake.set()
        elif grace < self._stop.grace:
            self._stop.grace = grace
            self._wake.set()

    # -- the run ----------------------------------------------------------------------------

    def environment(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.spec.env)
        # The placement's own variables (CUDA_VISIBLE_DEVICES, TF memory growth when the GPU
        # is shared) win over the study's: two trials must never end up on one card by accident.
        env.update(self.lease.env)
        env.update(
            {
                "HPOD_PARAMS": json.dumps(self.trial.params),
                "HPOD_TRIAL_ID": str(self.trial.id),
                "HPOD_TRIAL_NUMBER": str(self.trial.number),
                "HPOD_STUDY": self.spec.name,
                "HPOD_TRIAL_DIR": trial_dir_value(self.trial_dir),
                "HPOD_ATTEMPT": str(self.trial.attempt),
                # Which run of its configuration this is ([trial] repeats), and the seed that
                # makes the runs differ (the same for a retry of the same run).
                "HPOD_REPEAT": str(self.trial.repeat),
                "HPOD_SEED": str(run_seed(self.spec.seed, self.trial.config_number,
                                          self.trial.repeat)),
                "HPOD_DECISION_TIMEOUT": f"{self._decision_timeout:g}",
            }
        )
        # Trial logs should be readable while the trial runs, not when it exits; unless the
        # study's env says otherwise.
        if "PYTHONUNBUFFERED" not in self.spec.env:
            env["PYTHONUNBUFFERED"] = "1"
        env.pop("HPOD_RESUME_FROM", None)
        if self.trial.checkpoint:
            env["HPOD_RESUME_FROM"] = self.trial.checkpoint
        return env

    async def run(self) -> TrialOutcome:
        try:
            self.trial_dir.mkdir(parents=True, exist_ok=True)
        except OSError as e:  # a full disk, a quota, a file in the way: this trial's problem
            return TrialOutcome(TrialState.FAILED, None,
                                f"could not start: cannot create its folder {self.trial_dir}: "
                                f"{e.strerror or e}")
        self._launched_at = self._last_report = time.monotonic()
        # Only a study with `preload` names them: an executor without warm starts need not
        # know the keywords.
        preload = self.spec.trial.preload
        warm: dict[str, Any] = (
            {"preload": preload, "slot": spare_slot(self.spec.name)} if preload else {}
        )
        launching = asyncio.ensure_future(self._executor.launch(
            self.spec.command,
            env=self.environment(),
            cwd=self.spec.workdir,
            trial_dir=self.trial_dir,
            **warm,
        ))
        # A launch may wait (for a warm spare still importing): a stop asked for meanwhile (a
        # shutdown, the user) must not wait with it.
        while not launching.done() and self._stop is None:
            waking = asyncio.ensure_future(self._wake.wait())
            await asyncio.wait({launching, waking}, return_when=asyncio.FIRST_COMPLETED)
            waking.cancel()
            if self._stop is None:
                self._wake.clear()  # else left set: _supervise acts on the stop at once
        if not launching.done():
            # Not cancelled: a launch cut short in its spawn would leave a process running
            # that nothing supervises (and a held trial kept the daemon from exiting). It ends
            # soon (a spare stuck in its imports is given up on after warm.SPARE_WAIT), and
            # what it started goes at once.
            with contextlib.suppress(LaunchError):
                async with await launching as running:
                    await running.stop(0)
            assert self._stop is not None
            return TrialOutcome(self._stop.state, self._last_value,
                                f"{self._stop.reason} (as it was starting)")
        try:
            running = launching.result()
        except LaunchError as exc:
            return TrialOutcome(TrialState.FAILED, None, f"could not start: {exc}")
        logger.info(
            "trial %s#%d started on %s (pid %d)",
            self.spec.name, self.trial.number, self.lease.label, running.pid,
        )
        async with running:
            exit_ = await self._supervise(running)
        outcome = self._classify(exit_)
        if (outcome.state is TrialState.PAUSED and self._resumable
                and not self._announced_checkpoint and "no_checkpoint" not in self._warned):
            self._warned.add("no_checkpoint")
            await self._warn(
                f"study {self.spec.name}: trial #{self.trial.number} was told to pause at step "
                f"{self._stopped_at_step:g} and exited without announcing a checkpoint, so a "
                "promotion trains it again from its last one (or from the start); so will any "
                "trial that does. Fix: on \"pause\", save the model and call "
                "hpod.trial.checkpoint(path) before exiting (docs/trial-protocol.md)")
        return outcome

    async def _supervise(self, running: RunningTrial) -> TrialExit:
        async with asyncio.TaskGroup() as tg:
            consume = tg.create_task(self._consume(running))
            exited = tg.create_task(running.wait())
            capping = tg.create_task(self._cap_logs())
            while True:
                wake = tg.create_task(self._wake.wait())
                done, _ = await asyncio.wait(
                    {exited, wake}, timeout=self._time_left(), return_when=asyncio.FIRST_COMPLETED
                )
                wake.cancel()
                if exited in done:
                    self._exited_by_itself = True
                    break
                self._wake.clear()
                if self._stop is None:
                    self._check_deadlines()
                if self._stop is not None:
                    await self._stop_within_grace(running, tg)
                    break
            exit_ = await exited
            capping.cancel()
            await self._trim_logs()  # what it wrote since the last look
            # Leftover children of the trial may keep the report pipe open; they go with the
            # process group, then the reader sees EOF after the last buffered line.
            await running.stop(0)
            try:
                await asyncio.wait_for(asyncio.shield(consume), DRAIN_TIMEOUT)
            except TimeoutError:
                consume.cancel()
        await self._sink.flush()
        return exit_

    async def _cap_logs(self) -> None:
        """Keep the trial's logs under [trial] max_log_mb while it runs (hpod.log_cap)."""
        loop = asyncio.get_running_loop()
        # A first look soon: how fast this trial prints is not known yet.
        delay, last, baseline = LOG_CHECK_SOONEST, loop.time(), 0
        while (limit := self.spec.trial.max_log_mb) > 0:
            await asyncio.sleep(delay)
            held, trimmed, sizes = await asyncio.to_thread(look_at_logs, self.trial_dir, limit)
            await self._said_trimmed(trimmed, limit)
            now = loop.time()
            room = int(limit * 1024 * 1024) - max(sizes)
            delay, last, baseline = next_check(held - baseline, now - last, room), now, sum(sizes)

    async def _trim_logs(self) -> None:
        limit = self.spec.trial.max_log_mb
        if limit > 0:
            await self._said_trimmed(await asyncio.to_thread(trim_logs, self.trial_dir, limit),
                                     limit)

    async def _said_trimmed(self, trimmed: list[str], limit: float) -> None:
        if trimmed and "log_cap" not in self._warned:
            self._warned.add("log_cap")
            await self._warn(
                f"study {self.spec.name}: trial #{self.trial.number} wrote more than "
                f"{limit:g} MiB to its {' and '.join(trimmed)}, so its oldest output was "
                "cut (and will be for any trial that does). Fix: print less, or raise "
                "[trial] max_log_mb (0: no limit)")

    async def _stop_within_grace(self, running: RunningTrial, tg: asyncio.TaskGroup) -> None:
        """SIGTERM, then SIGKILL after the requested grace, started again with a shorter one
        when a later request cuts it (a trial's grace may be an hour)."""
        assert self._stop is not None
        # Said on the control pipe too, so that a trial that reads it (should_stop(), or the
        # answer it waits for) can end on its own terms, as after a scheduler's stop.
        running.decide(Decision.STOP, None)
        while True:
            grace = self._stop.grace
            self._wake.clear()
            stopping = tg.create_task(running.stop(grace))
            hurry = tg.create_task(self._wake.wait())
            await asyncio.wait({stopping, hurry}, return_when=asyncio.FIRST_COMPLETED)
            hurry.cancel()
            if stopping.done():
                return
            if self._stop.grace < grace:
                stopping.cancel()
                # Before the next stop: one being cancelled must not outlive it.
                await asyncio.wait({stopping})
            else:
                await stopping
                return

    def _time_left(self) -> float | None:
        now = time.monotonic()
        deadlines = []
        if self.spec.trial.timeout:
            deadlines.append(self._launched_at + self.spec.trial.timeout)
        if self.spec.trial.stall_timeout:
            deadlines.append(self._last_report + self.spec.trial.stall_timeout)
        if self._verdict_deadline is not None:
            deadlines.append(self._verdict_deadline)
        return max(0.0, min(deadlines) - now) if deadlines else None

    def _check_deadlines(self) -> None:
        now = time.monotonic()
        grace = self.spec.trial.grace
        timeout, stall = self.spec.trial.timeout, self.spec.trial.stall_timeout
        if timeout and now >= self._launched_at + timeout:
            self.request_stop(TrialState.FAILED, f"timed out after {timeout:g} s", grace)
        elif stall and now >= self._last_report + stall:
            self.request_stop(
                TrialState.FAILED, f"stalled: no report for {stall:g} s", grace
            )
        elif self._verdict_deadline is not None and now >= self._verdict_deadline:
            # A paused trial that does not exit has not saved a usable checkpoint either.
            self.request_stop(
                TrialState.STOPPED,
                f"{self._verdict_reason()}; it did not exit within {grace:g} s, so it was "
                "terminated",
                0,
            )

    async def _consume(self, running: RunningTrial) -> None:
        # Under fifo the trial does not wait for answers, so "continue" is not sent at all:
        # at tens of thousands of reports a second, that halves the syscalls on both sides.
        answer_continue = self._decision_timeout > 0
        async for batch in running.batches():
            self._last_report = time.monotonic()
            for message in batch:
                if isinstance(message, Report):
                    decision = self._on_report(message)
                    if answer_continue or decision is not Decision.CONTINUE:
                        running.decide(self._as_told(decision), message.step)
                    if self._resource_missing_at is not None and "resource" not in self._warned:
                        self._warned.add("resource")
                        await self._warn_resource_missing()
                elif isinstance(message, Declaration):
                    self._resumable = message.resumable
                elif isinstance(message, CheckpointNote):
                    self._announced_checkpoint = True
                    # The reports before a checkpoint are stored before the checkpoint is: a
                    # trial resumed from it after a kill -9 never reports those steps again.
                    await self._sink.flush()
                    # A relative path is the trial's (its working directory); the resumed run
                    # may not start there (a warm start, a Ray node).
                    await self._store.set_checkpoint(
                        self.trial.id, os.path.join(self.spec.workdir, message.path))
                elif isinstance(message, WireProblem):
                    if answer_continue and message.step is not None:
                        # A shell trial written as documented reads one answer per report.
                        running.decide(self._as_told(self._verdict or Decision.CONTINUE),
                                       message.step)
                    await self._protocol_warning(message)
            if self._sink.full:
                await self._sink.flush()  # the back-pressure: the trial waits meanwhile

    def _as_told(self, decision: Decision) -> Decision:
        """What the trial is told: "pause" only to a trial that declared it can checkpoint. `sh`
        and `hyperband` park every trial at their rungs; one that cannot checkpoint is told to
        stop (and is retrained from the start if promoted), not "pause", which it would not
        understand and train on."""
        if decision is Decision.PAUSE and not self._resumable:
            return Decision.STOP
        return decision

    def _on_report(self, report: Report) -> Decision:
        if self._verdict is Decision.PAUSE:
            # Not stored: the resumed run reports these steps again from its checkpoint, and a
            # replay after a restart reads a stored report after a pause as a resumed run.
            return Decision.PAUSE
        metrics = report.metrics
        self._last_step = report.step
        self._sink.add(self.trial.id, report.step, metrics, self._objective)
        value = metrics.get(self._objective)
        if value is None:
            return self._verdict or Decision.CONTINUE
        self._last_value = value
        if self._verdict is not None:
            return self._verdict  # repeated to a trial that reports on after its verdict
        resource = self.spec.scheduler.resource
        step = metrics.get(resource, report.step) if resource else report.step
        if resource and resource not in metrics and self._resource_missing_at is None:
            self._resource_missing_at = report.step
        decision = self._decide(self.trial.id, float(step), value, self._resumable)
        if decision is not Decision.CONTINUE:
            self._verdict = decision
            self._stopped_at_step = float(step)
            self._verdict_deadline = time.monotonic() + self.spec.trial.grace
            self._wake.set()  # the supervisor re-arms its deadline
        return decision

    async def _warn_resource_missing(self) -> None:
        resource, metric = self.spec.scheduler.resource, self._objective
        await self._warn(
            f"study {self.spec.name}: trial #{self.trial.number} reported `{metric}` "
            f"without `{resource}`, the [scheduler] resource, so its step "
            f"({self._resource_missing_at}) was used instead; a misspelt resource judges "
            f"trials at the wrong rungs, or never. Fix: report `{resource}` with `{metric}`, "
            "or set `resource` to a key the trial reports (or remove it to count steps)")

    async def _warn(self, text: str) -> None:
        logger.warning("%s", text)
        await self._store.record_event(EventLevel.WARNING, text, study_id=self.trial.study_id,
                                       trial_id=self.trial.id)

    async def _protocol_warning(self, problem: WireProblem) -> None:
        self._warnings += 1
        if self._warnings > MAX_PROTOCOL_WARNINGS:
            return
        text = f"trial {self.spec.name}#{self.trial.number} wrote a line that is not the hpod protocol ({problem.reason}): {problem.line_preview!r}"
        if self._warnings == MAX_PROTOCOL_WARNINGS:
            text += " — further protocol problems of this trial are not recorded"
        logger.warning("%s", text)
        await self._store.record_event(
            EventLevel.WARNING, text, study_id=self.trial.study_id, trial_id=self.trial.id
        )

    def _verdict_reason(self) -> str:
        kind = self.spec.scheduler.kind
        what = "paused" if self._verdict is Decision.PAUSE else "stopped early"
        return f"{what} by the {kind} scheduler at step {self._stopped_at_step:g}"

    def _classify(self, exit_: TrialExit) -> TrialOutcome:
        value = self._last_value
        code = exit_.returncode
        if self._stop is not None and not self._exited_by_itself:  # the user, the shutdown
            # or a deadline ended it
            # A timeout or a stall may not happen again (a hung file system, a busy GPU).
            transient = self._stop.state is TrialState.FAILED
            return TrialOutcome(self._stop.state, value, self._stop.reason, code, transient)
        if self._verdict is not None:  # it obeyed the scheduler's stop or pause
            state = TrialState.PAUSED if self._verdict is Decision.PAUSE else TrialState.STOPPED
            return TrialOutcome(state, value, self._verdict_reason(), code)
        if exit_.lost:  # its machine is gone (executor/ray.py), not the trial's doing
            if self.trial.attempt < MAX_REQUEUES_WHEN_LOST:
                return TrialOutcome(TrialState.INTERRUPTED, value, exit_.reason)
            return TrialOutcome(
                TrialState.FAILED, value,
                f"{exit_.reason}; run {self.trial.attempt + 1} times, so not requeued again",
                transient=True)
        if not exit_.ok:
            return TrialOutcome(TrialState.FAILED, value, exit_.describe(), code, transient=True)
        metric = self.spec.objective.metric
        if value is None:
            return TrialOutcome(
                TrialState.FAILED,
                None,
                f"exited with code 0 but never reported the objective `{metric}`; report it "
                f"with hpod.trial.report(step, {metric}=...) or a line like "
                f'{{"step": 1, "{metric}": 0.5}} on the report pipe',
                code,
            )
        if math.isnan(value) or math.isinf(value):
            return TrialOutcome(
                TrialState.FAILED,
                value,
                f"the objective `{metric}` was {value} at its last report (step {self._last_step})",
                code,
            )
        return TrialOutcome(TrialState.COMPLETE, value, None, code)
