"""Reading a study file from disk into plain data: TOML, YAML or JSON by extension.

Every failure (missing, unreadable, not a regular file, untrusted, too large, binary, empty,
syntax error, a value Python cannot build) is a StudySpecError naming the file, with the line and
column when the parser knows them. Nothing here blocks: a FIFO is refused, never waited on.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
import sys
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NoReturn

import yaml

from hpod.errors import NotAStudyFile, StudyFileSyntaxError, StudySpecError
from hpod.safety import check_study_file
from hpod.spec_fields import describe, join

MAX_BYTES = 1 << 20  # study files are a page of text; a megabyte is certainly a mistake
MAX_DEPTH = 64
MAX_NODES = 100_000
# No setting needs an integer beyond a float's range; refusing them early also keeps error
# messages from formatting numbers Python will not print (more than 4300 digits).
MAX_INT_BITS = 1024
SUFFIXES = (".toml", ".yaml", ".yml", ".json")


def _fail(path: Path, message: str, fix: str | None = None, field: str | None = None, *,
          error: type[StudySpecError] = StudySpecError) -> NoReturn:
    raise error(" ".join(message.split()), path=str(path), field=field, fix=fix)


def read_study_data(path: Path) -> Any:
    """The parsed content of a study file (normally a dict: anything else holds no study).

    Refuses, before parsing, a file hpod must not trust (see hpod.safety): its commands would
    run as the daemon's user.
    """
    suffix = path.suffix.lower()
    loaders: dict[str, Callable[[Path, str], Any]] = {
        ".toml": _load_toml, ".yaml": _load_yaml, ".yml": _load_yaml, ".json": _load_json}
    if suffix not in loaders:
        _fail(path, f"unsupported file type {suffix or '(no extension)'!r}",
              "name it *.toml, *.yaml, *.yml or *.json")
    text = _read_text(path)
    try:
        return loaders[suffix](path, text)
    except RecursionError:
        _fail(path, f"is nested too deeply (more than {MAX_DEPTH} levels)", "flatten it")
    except ValueError as e:
        # The parsers' own syntax errors are handled in each loader; what is left is a value
        # Python refuses to build, such as an integer of more than 4300 digits.
        if _too_many_digits(e):
            _fail(path, f"holds an integer with more than {sys.get_int_max_str_digits()} digits",
                  "no setting needs a number that long; fix the value")
        _fail(path, f"holds a value that cannot be read: {e}", "fix the value")


def _too_many_digits(error: Exception) -> bool:
    """Python's refusal to convert an integer longer than sys.get_int_max_str_digits()."""
    return isinstance(error, ValueError) and "integer string conversion" in str(error)


def _read_text(path: Path) -> str:
    try:
        link = os.lstat(path)
    except FileNotFoundError:
        _fail(path, "does not exist", "check the path")
    except OSError as e:
        _fail(path, f"cannot be read: {e.strerror or e}", "check the file")
    try:
        # O_NONBLOCK: opening a FIFO named like a study file must not wait for a writer.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:  # lstat saw it: a symbolic link to nothing
        _fail(path, f"is a symbolic link to {_link_target(path)}, which does not exist",
              "point the link at a study file, or remove it")
    except PermissionError:
        _fail(path, "cannot be read: permission denied", f"chmod u+r {path}")
    except OSError as e:
        if e.errno == errno.ELOOP:
            _fail(path, "is a symbolic link that cannot be followed (a loop of links)",
                  "point the link at a study file, or remove it")
        if e.errno == errno.ENXIO:  # a socket
            _fail(path, "is not a regular file", "point hpod at a study file")
        _fail(path, f"cannot be read: {e.strerror or e}", "check the file")
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            _fail(path, "is a folder, not a study file", "point hpod at a study file")
        if not stat.S_ISREG(st.st_mode):
            _fail(path, f"is not a regular file (it is {_file_kind(st.st_mode)})",
                  "point hpod at a study file")
        # Judged on the descriptor that is read: swapping the file after the check gains nothing.
        check_study_file(path, st, link=link if stat.S_ISLNK(link.st_mode) else None)
        raw = _read_bounded(fd, MAX_BYTES + 1)
    except OSError as e:
        _fail(path, f"cannot be read: {e.strerror or e}", "check the file")
    finally:
        os.close(fd)
    if len(raw) > MAX_BYTES:
        _fail(path, f"is larger than {MAX_BYTES // 1024} KiB", "a study file is a short text file; "
              "keep data and code elsewhere")
    nul = raw.find(b"\x00")
    if nul >= 0:
        _fail(path, f"is a binary file (NUL byte at offset {nul})", "save it as UTF-8 text")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        _fail(path, f"is not UTF-8 text (invalid byte at offset {e.start})", "save it as UTF-8 text")
    if not text.strip():
        # No study in it: a file being created, or one a trial is writing (caught between its
        # truncation and its write). A study's own file emptied is still reported (intake).
        raise NotAStudyFile.holding(path, "it is empty")
    return text


def _read_bounded(fd: int, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while size < limit:
        chunk = os.read(fd, limit - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _link_target(path: Path) -> str:
    try:
        return repr(os.readlink(path))
    except OSError:
        return "a missing file"


def _file_kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a plain file"


def _load_toml(path: Path, text: str) -> Any:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        _fail(path, f"TOML syntax error: {e}", "fix the syntax at that position",
              error=StudyFileSyntaxError)


# YAML 1.1 (PyYAML) reads `1e-5` and `1.5e3` as strings (it wants a dot and a signed exponent),
# YAML 1.2 as floats; learning rates are written that way, so hpod follows 1.2 for exponents.
_EXPONENT_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)[eE][-+]?[0-9]+")
# YAML 1.1 also reads yes/no/on/off as booleans, so `choices: [yes, no]` came out as
# [True, False] and `[on, off, yes]` as a duplicate choice; in 1.2 (and here) they are words.
_YAML11_ONLY_BOOLS = frozenset(
    {"yes", "Yes", "YES", "no", "No", "NO", "on", "On", "ON", "off", "Off", "OFF"})


_CONSTRUCTOR_FAILURES = (ValueError, TypeError, AttributeError, OverflowError, LookupError)


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (PyYAML silently keeps the last one), reads
    `1e-5` as a number and `yes` as a word, as YAML 1.2 does."""

    def resolve(self, kind: type, value: Any, implicit: tuple[bool, bool]) -> str:
        if kind is yaml.ScalarNode and implicit[0] and _EXPONENT_FLOAT.fullmatch(value):
            return "tag:yaml.org,2002:float"
        if kind is yaml.ScalarNode and implicit[0] and value in _YAML11_ONLY_BOOLS:
            return "tag:yaml.org,2002:str"
        return super().resolve(kind, value, implicit)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        if not isinstance(node, yaml.MappingNode):
            # `!!set [1]`, `!!map x`: PyYAML's own check says "expected a mapping node" with the
            # position; the duplicate scan below would fail first, and without it.
            return super().construct_mapping(node, deep=deep)
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                continue
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        # PyYAML's constructors for explicitly tagged values raise whatever the value provokes
        # (`!!timestamp 2001-13-14`: AttributeError; `!!int 0xZZ`: ValueError; `!!bool maybe`:
        # KeyError) instead of a YAML error; turn those into one that points at the value.
        try:
            return super().construct_object(node, deep=deep)
        except _CONSTRUCTOR_FAILURES as e:
            if _too_many_digits(e):
                raise  # read_study_data says it in words, not as Python's limit
            what = repr(_clip(node.value)) if isinstance(node, yaml.ScalarNode) else "this value"
            raise yaml.constructor.ConstructorError(
                None, None, f"cannot read {what} as {node.tag.rsplit(':', 1)[-1]} "
                f"({_clip(str(e), 80)})", node.start_mark) from e


def _load_yaml(path: Path, text: str) -> Any:
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        what = _clip(e.problem or e.context or "invalid YAML", 200)  # may quote a long tag
        _fail(path, f"YAML error{where}: {what}", "fix the YAML at that position",
              error=StudyFileSyntaxError)
    except yaml.YAMLError as e:
        _fail(path, f"YAML error: {e}", "fix the syntax", error=StudyFileSyntaxError)


def _clip(text: str, limit: int = 40) -> str:
    """The start of a value quoted in an error message (the value may be megabytes long)."""
    return text if len(text) <= limit else text[:limit] + "…"


class _DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _load_json(path: Path, text: str) -> Any:
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates)
    except json.JSONDecodeError as e:
        _fail(path, f"JSON syntax error at line {e.lineno}, column {e.colno}: {e.msg}",
              "fix the syntax at that position", error=StudyFileSyntaxError)
    except _DuplicateKey as e:
        _fail(path, f"JSON error: duplicate key {e.args[0]!r}", "keep one of them")


def check_shape(data: Mapping[str, Any], path: Path) -> Mapping[str, Any]:
    """Every key everywhere is a string; depth and size are bounded. The top level is a table
    already: load_study_file says a file holding anything else is not a study.

    Iterative, so a hostile file (or a YAML structure that contains itself) cannot overflow the
    stack or loop forever.
    """
    stack: list[tuple[Any, str, int]] = [(data, "", 0)]
    nodes = 0
    while stack:
        value, field, depth = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            _fail(path, f"is too large (more than {MAX_NODES} values)", "simplify it")
        if depth > MAX_DEPTH:
            shown = field if len(field) <= 40 else field[:40] + "..."
            _fail(path, f"is nested too deeply (more than {MAX_DEPTH} levels)", "flatten it",
                  field=shown)
        if isinstance(value, Mapping):
            for key, item in value.items():
                if not isinstance(key, str):
                    _fail(path, f"has a key that is not a string: {describe(key)}", "quote the key",
                          field=field or None)
                stack.append((item, join(field, key), depth + 1))
        elif isinstance(value, (list, tuple)):
            stack.extend((item, join(field, i), depth + 1) for i, item in enumerate(value))
        elif isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
            _fail(path, f"holds an integer of {value.bit_length()} bits, too large for any "
                  "setting", "fix the value", field=field or None)
    return data
