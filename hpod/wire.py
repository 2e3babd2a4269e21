"""The pipe protocol between the daemon and a trial: one JSON object per line, both ways.

Pure functions and small value types, no I/O, stdlib only: `hpod.trial` imports this module inside
every trial process, so it must stay cheap to import (no numpy, no asyncio).

trial -> daemon (the report pipe)::

    {"step": 3, "val_loss": 0.41, "acc": 0.88}      -> Report(3, {"val_loss": 0.41, "acc": 0.88})
    {"checkpoint": "/abs/path/ckpt"}                -> CheckpointNote("/abs/path/ckpt")
    {"resumable": true}                             -> Declaration(resumable=True)
    anything else                                   -> WireProblem(reason, line_preview)

daemon -> trial (the control pipe)::

    {"decision": "stop", "step": 3}    the answer to the report of step 3
    {"decision": "stop"}               unsolicited (the user stopped the trial)

The full rules, for trial authors in any language, are in docs/trial-protocol.md.
"""

from __future__ import annotations

import json
import math
import operator
import re
from json.encoder import encode_basestring_ascii as _json_string
from dataclasses import dataclass
from collections.abc import Mapping, Sequence
from typing import Any

from hpod.decision import Decision

#: The longest line (without its newline) either side accepts; longer lines are skipped whole.
MAX_LINE = 1 << 20

#: Steps are stored as SQLite INTEGERs (signed 64 bit).
MAX_STEP = (1 << 63) - 1

_PREVIEW_CHARS = 120
_RESERVED = ("step", "checkpoint", "resumable")


@dataclass(frozen=True, slots=True)
class Report:
    """Metrics measured at one step; `metrics` maps names to floats (NaN for a JSON null)."""

    step: int
    metrics: dict[str, float]


@dataclass(frozen=True, slots=True)
class CheckpointNote:
    """The trial wrote a checkpoint it can be resumed from (HPOD_RESUME_FROM on resume)."""

    path: str


@dataclass(frozen=True, slots=True)
class Declaration:
    """What the trial can do: `resumable` — it saves a checkpoint when told "pause" and resumes
    from HPOD_RESUME_FROM. A trial that never says so is never paused."""

    resumable: bool


@dataclass(frozen=True, slots=True)
class WireProblem:
    """A line that is not the protocol; the daemon records it as a warning and reads on."""

    reason: str
    line_preview: str
    # The step the line seems to report, when it names one: a trial that waits for the answer
    # to every report gets one ("continue") instead of waiting until its timeout.
    step: int | None = None


Message = Report | CheckpointNote | Declaration | WireProblem


def preview(line: bytes) -> str:
    """The start of a line, printable, for warnings (never the whole of a 1 MiB line)."""
    text = line[: _PREVIEW_CHARS * 4].decode("utf-8", errors="replace").rstrip("\r\n")
    if len(text) > _PREVIEW_CHARS or len(line) > _PREVIEW_CHARS * 4:
        text = text[:_PREVIEW_CHARS] + "…"
    return text


def _problem(reason: str, line: bytes) -> WireProblem:
    found = _STEP.search(line)
    step = int(found.group(1)) if found and int(found.group(1)) <= MAX_STEP else None
    return WireProblem(reason, preview(line), step)


_STEP = re.compile(rb'"step"\s*:\s*(\d{1,19})\b')
# What C's printf writes for a diverged value (awk, a shell trial): "nan", "-nan", "inf".
_BARE_NON_FINITE = re.compile(rb'(?<=[:\[,])(\s*)(-?)(nan|inf(?:inity)?)(?=\s*[,}\]])',
                              re.IGNORECASE)


def _lenient(line: bytes) -> Any:
    """The line with printf's nan/inf spelt as JSON's NaN/Infinity, parsed; None if that does
    not make it JSON either. Only tried on a line that is not JSON (off the hot path)."""
    def spelt(m: re.Match[bytes]) -> bytes:
        word = b"NaN" if m.group(3).lower() == b"nan" else m.group(2) + b"Infinity"
        return m.group(1) + word
    fixed, count = _BARE_NON_FINITE.subn(spelt, line)
    if not count:
        return None
    try:
        return json.loads(fixed)
    except (ValueError, RecursionError):
        return None


def parse_lines(items: Sequence[bytes | WireProblem]) -> list[Message]:
    """Parse a burst of lines from the report pipe, in order. Never raises.

    NOTE: the hot path of ingest. One `json.loads` of the whole burst as a JSON array costs a
    fraction of one call per line; a burst with any bad line falls back to line by line, so a
    bad line is reported exactly as `parse_line` would.
    """
    lines = [item for item in items if not isinstance(item, WireProblem)]
    # Each line one object on its own: joined, two broken halves (`{"step": 1},{"step": 2`
    # and `"loss": 8}`) would read as one valid object.
    if len(lines) == len(items) and lines and all(
            line[:1] == b"{" and line.rstrip()[-1:] == b"}" for line in lines):
        try:
            objects = json.loads(b"[" + b",".join(lines) + b"]")
        except (ValueError, RecursionError):
            objects = None
        if objects is not None and len(objects) == len(lines):
            return [_from_object(obj, line) for obj, line in zip(objects, lines)]
    return [item if isinstance(item, WireProblem) else parse_line(item) for item in items]


def _from_object(obj: Any, line: bytes) -> Message:
    if type(obj) is dict and "checkpoint" not in obj and "resumable" not in obj:
        return _parse_report(obj, line)
    if not isinstance(obj, dict):
        return _problem(f"a JSON {type(obj).__name__ if obj is not None else 'null'}, "
                        "not an object", line)
    if "resumable" in obj:
        return _parse_declaration(obj, line)
    return _parse_checkpoint(obj, line)


def parse_line(line: bytes) -> Message:
    """Parse one line from the report pipe (a trailing newline is allowed). Never raises."""
    if len(line) > MAX_LINE + 2:  # + "\r\n"
        return _problem(f"line longer than {MAX_LINE} bytes", line)
    try:
        # NOTE: json accepts NaN, Infinity and -Infinity literals on purpose: a diverged
        # loss is a real measurement, and Python trials write them by default. It also takes
        # the bytes as they are (UTF-8), which saves a decode per report on the hot path.
        obj = json.loads(line)
    except UnicodeDecodeError:
        return _problem("not UTF-8 text", line)
    except (ValueError, RecursionError) as e:
        if not line.strip():
            return _problem("empty line", line)
        obj = _lenient(line)
        if obj is None:
            return _problem(f"not JSON ({e})" if isinstance(e, ValueError) else "not JSON",
                            line)
    if not isinstance(obj, dict):
        return _problem(f"a JSON {type(obj).__name__ if obj is not None else 'null'}, "
                        "not an object", line)
    if "resumable" in obj:  # the same order as _from_object, the burst's path
        return _parse_declaration(obj, line)
    if "checkpoint" in obj:
        return _parse_checkpoint(obj, line)
    return _parse_report(obj, line)


def _parse_declaration(obj: dict, line: bytes) -> Message:
    resumable = obj["resumable"]
    if type(resumable) is not bool:
        return _problem('"resumable" must be true or false', line)
    return Declaration(resumable)


def _parse_checkpoint(obj: dict, line: bytes) -> Message:
    path = obj["checkpoint"]
    if not isinstance(path, str) or not path:
        return _problem('"checkpoint" must be a non-empty string (a path)', line)
    if not _is_text(path):
        return _problem('"checkpoint" is not valid Unicode (a lone surrogate from a file name '
                        "that is not UTF-8): give a path of UTF-8 characters", line)
    return CheckpointNote(path)


def _is_text(s: str) -> bool:
    """Whether `s` can be stored as UTF-8. JSON's \ud800 escapes decode to lone surrogates,
    which the store cannot encode: one such name once crashed the daemon at every start."""
    if s.isascii():
        return True
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _parse_report(obj: dict, line: bytes) -> Message:
    if "step" not in obj:
        return _problem('no "step" (a report is {"step": <int>, "<metric>": <number>, ...})', line)
    step = obj["step"]
    if type(step) is not int or not 0 <= step <= MAX_STEP:  # bool is an int: refuse it too
        return _problem(f'"step" must be an integer >= 0, not {json.dumps(step)[:40]}', line)
    metrics: dict[str, float] = {}
    for name, value in obj.items():
        if name == "step":
            continue
        if not name:
            return _problem("a metric with an empty name", line)
        if not _is_text(name):
            return _problem(f"metric name {name.encode('utf-8', 'backslashreplace')!r} is not "
                            "valid Unicode (a lone surrogate)", line)
        if value is None:
            metrics[name] = math.nan
        elif type(value) is float:
            metrics[name] = value
        elif type(value) is int:
            try:
                metrics[name] = float(value)
            except OverflowError:
                return _problem(f"metric {name!r} is too large for a float", line)
        else:
            return _problem(f"metric {name!r} is not a number: {json.dumps(value)[:40]}", line)
    return Report(step, metrics)


def encode_report(step: int, metrics: Mapping[str, object]) -> bytes:
    """One report line for the trial side. Values go through float() (numpy and TF scalars work).

    Raises ValueError for a bad step, a reserved or empty metric name, a value that is not a
    number, or a line longer than MAX_LINE.
    """
    if type(step) is not int:
        # numpy integers are not ints but have __index__; True is an int but not a step.
        if isinstance(step, bool) or not hasattr(type(step), "__index__"):
            raise ValueError(f"step must be an integer >= 0, got {step!r}")
        step = operator.index(step)
    if not 0 <= step <= MAX_STEP:
        raise ValueError(f"step must be an integer >= 0, got {step!r}")
    # Written by hand rather than with json.dumps: a trial may report 100 000 steps, and this
    # is several times faster. Names go through the json module's own string escaping.
    parts = [f'{{"step":{step}']
    for name, value in metrics.items():
        if not isinstance(name, str) or not name or name in _RESERVED:
            raise ValueError(f"invalid metric name {name!r}: names must be non-empty strings "
                             f"other than {' and '.join(map(repr, _RESERVED))}")
        number = value if type(value) is float else _as_float(name, value)
        parts.append(f",{_json_string(name)}:{_json_float(number)}")
    parts.append("}\n")
    data = "".join(parts).encode()
    if len(data) > MAX_LINE:
        raise ValueError(f"report of step {step} is longer than {MAX_LINE} bytes")
    return data


def _json_float(value: float) -> str:
    if value != value:
        return "NaN"  # the literals Python's json module reads (and writes by default)
    if value in (math.inf, -math.inf):
        return "Infinity" if value > 0 else "-Infinity"
    return repr(value)  # the shortest text that round-trips, as json.dumps writes it


def _as_float(name: str, value: object) -> float:
    if value is None:
        return math.nan
    # float("0.5") would parse a string: only objects that are numbers may pass.
    if isinstance(value, (str, bytes)) or not (hasattr(type(value), "__float__")
                                               or hasattr(type(value), "__index__")):
        raise ValueError(f"metric {name!r} must be a number, got {type(value).__name__}")
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError) as e:
        raise ValueError(f"metric {name!r} must be a number: {e}") from e


def encode_checkpoint(path: str) -> bytes:
    """One checkpoint line for the trial side."""
    if not path:
        raise ValueError("checkpoint path must not be empty")
    data = json.dumps({"checkpoint": path}).encode() + b"\n"
    if len(data) > MAX_LINE:
        raise ValueError(f"checkpoint path is longer than {MAX_LINE} bytes")
    return data


def encode_declaration(*, resumable: bool) -> bytes:
    """One declaration line for the trial side."""
    return b'{"resumable":true}\n' if resumable else b'{"resumable":false}\n'


def encode_decision(decision: Decision, step: int | None) -> bytes:
    """One control line: the answer to the report of `step`, or unsolicited when step is None."""
    word = Decision(decision).value
    if step is None:
        return f'{{"decision":"{word}"}}\n'.encode()
    return f'{{"decision":"{word}","step":{operator.index(step)}}}\n'.encode()


def parse_decision(line: bytes) -> tuple[Decision, int | None] | None:
    """Parse a control line on the trial side; None for anything that is not a decision.

    Unknown decision words are ignored rather than fatal so that an older client keeps
    working against a newer daemon.
    """
    try:
        obj = json.loads(line)
        decision = Decision(obj["decision"])
    except (ValueError, TypeError, KeyError, RecursionError):
        return None
    step = obj.get("step")
    if step is not None and type(step) is not int:
        return None
    return decision, step


class LineBuffer:
    """Splits a byte stream into lines, turning over-long lines into WireProblems.

    A line longer than `max_line` is dropped whole (up to its newline) so that one bad line does
    not end the stream; its start is kept for the warning's preview.
    """

    def __init__(self, max_line: int = MAX_LINE) -> None:
        if max_line < 1:
            raise ValueError(f"max_line must be >= 1, got {max_line}")
        self._max = max_line
        self._parts: list[bytes] = []
        self._size = 0
        self._skipping: bytes | None = None  # the head of an over-long line being dropped

    def feed(self, data: bytes) -> list[bytes | WireProblem]:
        out: list[bytes | WireProblem] = []
        if self._size or self._skipping is not None:
            # Finish the line held over from the previous chunk first.
            nl = data.find(b"\n")
            if nl < 0:
                self._hold(data)
                return out
            self._hold(data[:nl])
            out.extend(self._release())
            data = data[nl + 1:]
        lines = data.split(b"\n")
        tail = lines.pop()
        for line in lines:
            out.append(line if len(line) <= self._max else self._too_long(line))
        self._hold(tail)
        return out

    def finish(self) -> list[bytes | WireProblem]:
        """At EOF: a last line without its newline still counts (a shell `printf` without \\n)."""
        return self._release()

    def _release(self) -> list[bytes | WireProblem]:
        if self._skipping is not None:
            out: list[bytes | WireProblem] = [self._too_long(self._skipping)]
        elif self._size:
            out = [b"".join(self._parts)]
        else:
            out = []
        self._parts.clear()
        self._size = 0
        self._skipping = None
        return out

    def _hold(self, chunk: bytes) -> None:
        if not chunk or self._skipping is not None:
            return
        self._parts.append(chunk)
        self._size += len(chunk)
        if self._size > self._max:
            self._skipping = b"".join(self._parts)[: _PREVIEW_CHARS * 4]
            self._parts.clear()
            self._size = 0

    def _too_long(self, head: bytes) -> WireProblem:
        return _problem(f"line longer than {self._max} bytes", head)
