"""The trial side of hpod: read your parameters, report metrics, obey stop decisions.

    import hpod.trial as trial

    p = trial.params(defaults={"lr": 1e-3, "units": 64})
    trial.declare_resumable()  # only if it checkpoints on "pause" and resumes (resume_from())
    for epoch in range(p["epochs"]):
        loss = train_one_epoch(p)
        if trial.report(epoch, loss=loss) != "continue":
            break          # "stop": end now; "pause": write a checkpoint, call checkpoint(), end

Standard library only, and nothing heavy at import time: every trial process imports this.

Run by hand (no HPOD_* environment) it still works, so a trainer can be debugged without the
daemon: `params()` returns the defaults (merged under HPOD_PARAMS if you set that yourself),
`report()` and `checkpoint()` do nothing and return "continue", `trial_dir()` is the current
directory, `resume_from()` is None, `trial_id()` and `study()` are None.

The wire format (for trials in other languages) is in docs/trial-protocol.md.
"""

from __future__ import annotations

import functools
import json
import os
import select
import sys
import threading
import time
from pathlib import Path
from collections.abc import Mapping
from typing import Any

from hpod.decision import Decision
from hpod.wire import (LineBuffer, encode_checkpoint, encode_declaration, encode_report,
                       parse_decision)

__all__ = ["params", "report", "should_stop", "checkpoint", "declare_resumable", "trial_dir",
           "resume_from", "trial_id", "trial_number", "study", "seed", "repeat", "TrialClient"]

#: When HPOD_DECISION_TIMEOUT is absent (an older daemon): how long a report waits for its answer.
DEFAULT_DECISION_TIMEOUT = 30.0
_CONTROL_LINE_LIMIT = 64 * 1024
_FINAL = (Decision.STOP, Decision.PAUSE)


class TrialClient:
    """One trial's end of the pipes. The module functions use one built from os.environ.

    Thread-safe: a report and its answer are one critical section, so two threads reporting at
    once cannot take each other's answers.
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._env = dict(os.environ if environ is None else environ)
        self._report_fd = _fd(self._env, "HPOD_REPORT_FD")
        self._control_fd = _fd(self._env, "HPOD_CONTROL_FD")
        self._timeout = _seconds(self._env.get("HPOD_DECISION_TIMEOUT"))
        # Re-entrant: a SIGTERM handler that saves a checkpoint (as the docs advise) runs on
        # the main thread while report() holds the lock waiting for its answer; with a plain
        # lock it waited for itself for ever.
        self._lock = threading.RLock()
        self._sending = False  # a line is being written (a handler may interrupt the write)
        self._deferred: list[bytes] = []  # lines a handler sent meanwhile: written after it
        self._control = LineBuffer(_CONTROL_LINE_LIMIT)
        self._final: Decision | None = None  # a stop/pause received: sticky from then on
        self._poller: select.poll | None = None
        for fd in (self._report_fd, self._control_fd):
            if fd is not None:
                # Programs this trial starts (subprocess, os.system) must not hold our pipes open.
                try:
                    os.set_inheritable(fd, False)
                except OSError:
                    pass

    @property
    def attached(self) -> bool:
        """True when running under hpod with a working report pipe."""
        return self._report_fd is not None

    # -- read-only facts -------------------------------------------------------------------

    def params(self, defaults: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """HPOD_PARAMS merged over `defaults`; raises ValueError if HPOD_PARAMS is not an object."""
        merged = dict(defaults or {})
        raw = self._env.get("HPOD_PARAMS")
        if raw:
            try:
                given = json.loads(raw)
            except ValueError as e:
                raise ValueError(f"HPOD_PARAMS is not valid JSON: {e}") from e
            if not isinstance(given, dict):
                raise ValueError("HPOD_PARAMS must be a JSON object like {\"lr\": 0.01}")
            merged.update(given)
        return merged

    def trial_dir(self) -> Path:
        raw = self._env.get("HPOD_TRIAL_DIR")
        return Path(raw) if raw else Path.cwd()

    def resume_from(self) -> Path | None:
        raw = self._env.get("HPOD_RESUME_FROM")
        return Path(raw) if raw else None

    def trial_id(self) -> str | None:
        return self._env.get("HPOD_TRIAL_ID") or None

    def trial_number(self) -> int | None:
        raw = self._env.get("HPOD_TRIAL_NUMBER")
        try:
            return int(raw) if raw else None
        except ValueError:
            return None

    def study(self) -> str | None:
        return self._env.get("HPOD_STUDY") or None

    def seed(self, default: int = 0) -> int:
        """HPOD_SEED: seed your framework with it (`keras.utils.set_random_seed(seed())`) so
        that the runs of a repeated configuration differ and a retried run repeats itself."""
        return _int(self._env.get("HPOD_SEED"), default)

    def repeat(self) -> int:
        """HPOD_REPEAT: which run of its configuration this is (`[trial] repeats`), from 0."""
        return _int(self._env.get("HPOD_REPEAT"), 0)

    # -- talking to the daemon -------------------------------------------------------------

    def report(self, step: int, /, **metrics: Any) -> Decision:
        """Send metrics for `step`; return the daemon's decision ("continue" when none came)."""
        line = encode_report(step, metrics)  # validates before anything is sent
        with self._lock:
            if self._report_fd is None:
                return self._final or Decision.CONTINUE
            if not self._send(line):
                return self._final or Decision.CONTINUE
            answer = self._await_answer(step)
            return self._final or answer

    def should_stop(self) -> bool:
        """True once a stop or pause has arrived (checks for an unsolicited one without waiting)."""
        with self._lock:
            if self._final is None and self._control_fd is not None:
                self._read_control(None, deadline=None)
            return self._final is not None

    def checkpoint(self, path: str | os.PathLike[str]) -> None:
        """Tell the daemon a checkpoint was written at `path` (given to HPOD_RESUME_FROM later)."""
        line = encode_checkpoint(os.path.abspath(os.fspath(path)))
        with self._lock:
            if self._report_fd is not None:
                self._send(line)

    def declare_resumable(self) -> None:
        """Tell the daemon this trial can be paused: on "pause" it writes a checkpoint, calls
        checkpoint(path) and exits, and when started again it resumes from resume_from()."""
        line = encode_declaration(resumable=True)
        with self._lock:
            if self._report_fd is not None:
                self._send(line)

    def _send(self, data: bytes) -> bool:
        if self._sending:  # re-entered from a signal handler between two writes of a line
            self._deferred.append(data)
            return True
        self._sending = True
        try:
            self._write(data)
            while self._deferred:
                self._write(self._deferred.pop(0))
        except OSError as e:  # EPIPE: the daemon is gone; EBADF: the trial closed the fd
            self._report_fd = None
            self._control_fd = None
            self._deferred.clear()
            print(f"hpod.trial: cannot report to the daemon any more ({e.strerror}); "
                  "the trial carries on without reporting", file=sys.stderr, flush=True)
            return False
        finally:
            self._sending = False
        return True

    def _write(self, data: bytes) -> None:
        written = os.write(self._report_fd, data)  # type: ignore[arg-type]
        if written < len(data):  # only for a line longer than the pipe's buffer
            view = memoryview(data)[written:]
            while view:
                view = view[os.write(self._report_fd, view):]  # type: ignore[arg-type]

    def _await_answer(self, step: int) -> Decision:
        if self._control_fd is None:
            return Decision.CONTINUE
        if self._timeout <= 0:
            # The daemon said it never answers in a way that matters: take only what is there.
            answer = self._read_control(step, deadline=None)
        else:
            answer = self._read_control(step, deadline=time.monotonic() + self._timeout)
        return answer or Decision.CONTINUE

    def _read_control(self, step: int | None, deadline: float | None) -> Decision | None:
        """Read decisions until the answer for `step` (or a stop/pause) arrives or time is up.

        With deadline None, read only what has already arrived.
        """
        fd = self._control_fd
        assert fd is not None  # the callers return first without a control pipe
        if self._poller is None:
            self._poller = select.poll()
            self._poller.register(fd, select.POLLIN)
        poller = self._poller
        while True:
            wait_ms = 0 if deadline is None else max(0, (deadline - time.monotonic()) * 1000)
            if not poller.poll(wait_ms):
                return None
            try:
                data = os.read(fd, 4096)
            except OSError:
                data = b""
            if not data:  # EOF: the daemon closed the control pipe; carry on without answers
                self._control_fd = None
                return None
            answer = None
            for line in self._control.feed(data):
                if not isinstance(line, bytes) or (deadline is None and b'"continue"' in line):
                    continue  # without waiting, a "continue" changes nothing: skip parsing it
                parsed = parse_decision(line)
                if parsed is None:
                    continue
                decision, about = parsed
                if about is None or about == step:
                    # An unsolicited "continue" means nothing; a stop or pause is final.
                    if decision in _FINAL:
                        self._final = self._final or decision
                    if about is not None:
                        answer = decision
                # else: the late answer to a report we stopped waiting for; drop it.
            if self._final is not None:
                return self._final
            if answer is not None:
                return answer
            if deadline is not None and time.monotonic() >= deadline:
                return None


def _int(raw: str | None, default: int) -> int:
    try:
        return int(raw) if raw else default
    except ValueError:
        return default


def _fd(env: Mapping[str, str], name: str) -> int | None:
    raw = env.get(name)
    if not raw:
        return None
    try:
        fd = int(raw)
    except ValueError:
        return None
    return fd if fd >= 0 else None


def _seconds(raw: str | None) -> float:
    if raw is None or raw == "":
        return DEFAULT_DECISION_TIMEOUT
    try:
        value = float(raw)
    except ValueError:
        return DEFAULT_DECISION_TIMEOUT
    return value if value == value else DEFAULT_DECISION_TIMEOUT  # NaN -> default


@functools.lru_cache(maxsize=1)
def _client() -> TrialClient:
    # Built on first use, not at import: a trainer may set HPOD_PARAMS itself before calling.
    return TrialClient()


def params(defaults: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """This trial's parameters (HPOD_PARAMS), merged over `defaults`."""
    return _client().params(defaults)


def report(step: int, /, **metrics: Any) -> Decision:
    """Report metrics for `step` (an int >= 0); returns "continue", "stop" or "pause".

    Waits up to HPOD_DECISION_TIMEOUT seconds for the daemon's answer, then carries on with
    "continue". Outside hpod: does nothing and returns "continue".
    """
    return _client().report(step, **metrics)


def should_stop() -> bool:
    """True once the daemon asked this trial to stop or pause."""
    return _client().should_stop()


def checkpoint(path: str | os.PathLike[str]) -> None:
    """Tell the daemon a checkpoint was written at `path`; a resumed trial gets it back."""
    _client().checkpoint(path)


def declare_resumable() -> None:
    """Declare that this trial checkpoints on "pause" and resumes from resume_from(); call it
    before the first report. Without it hpod never pauses the trial: where a scheduler in
    `mode = "pause"` would pause it, it is told "continue" or "stop" as in stop mode."""
    _client().declare_resumable()


def trial_dir() -> Path:
    """This trial's own folder (logs, checkpoints); the current directory outside hpod."""
    return _client().trial_dir()


def resume_from() -> Path | None:
    """The checkpoint to resume from, when this trial is a resumed one."""
    return _client().resume_from()


def trial_id() -> str | None:
    return _client().trial_id()


def trial_number() -> int | None:
    return _client().trial_number()


def study() -> str | None:
    return _client().study()


def seed(default: int = 0) -> int:
    return _client().seed(default)


def repeat() -> int:
    return _client().repeat()
