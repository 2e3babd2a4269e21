"""Property tests for study *files*: generated text goes through the real reader and parser, and
through the daemon's intake with a real store.

tests/unit/test_spec.py already feeds generated *data* to parse_study; these feed bytes:
mutations of valid study files, and documents assembled from the tokens that have broken
parsers before (dates YAML cannot build, integers Python will not convert, tags, anchors,
control characters). The property: a study, or exactly one printable line naming the file,
recorded as the study's error — never another exception, never a daemon that stops.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import REPO
from hpod.config import DaemonConfig
from hpod.errors import StudySpecError
from hpod.intake import StudyIntake
from hpod.spec import StudySpec, load_study_file
from hpod.store import StudyState, open_store
from hpod.watcher import StudyFileEvent

GOOD = REPO / "tests" / "fixtures" / "studies" / "good"
SEEDS = {path.suffix: path.read_bytes() for path in sorted(GOOD.glob("digits.*"))}
SEEDS[".yml"] = SEEDS[".yaml"]
FUZZ = settings(max_examples=250, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])

# Scalars that broke (or could break) a reader: each is valid in at least one format.
TOKENS = [
    "1", "-0", "1e400", "-1e400", ".nan", "NaN", "Infinity", ".inf", "nan", "inf", "true", "~",
    "null", "2024-02-31", "2024-13-01", "1979-05-27T07:32:00Z", "07:32:00", "0x" + "f" * 3000,
    "9" * 5000, "0o777", "0b101", "1_000", "+1", '"\\u0000"', '"\\u0007"', "'\\x00'", '""',
    "[]", "{}", "[[]]", "&a [*a]", "*a", "!!binary aGVsbG8=", "!!python/name:os.system",
    "!!set {a, b}", "!!timestamp 2001-13-14", "!!timestamp 2001-13-141", "!!set [1]",
    "!!bool maybe", "!!int 0xZZ", "!!map [1]", "<<: *a", "? complex", '"a\\nb"', "'''x'''",
    '"""x"""', "[1, 2,]", "{a = 1,}", "-", "|", ">", "%YAML 1.1", "---", "...",
]
KEYS = ["command", "objective", "budget", "space", "parallel", "seed", "name", "trial",
        "scheduler", "suggester", "env", "workdir", "x", "lr", "type", "low", "high", "1", ""]


def _mutate(data: bytes, edits: list[tuple[int, int, int, bytes]]) -> bytes:
    for kind, a, b, junk in edits:
        if not data:
            data = junk
            continue
        i, j = sorted((a % len(data), b % len(data)))
        if kind == 0:
            data = data[:i] + data[j:]  # delete
        elif kind == 1:
            data = data[:i] + junk + data[i:]  # insert
        elif kind == 2:
            data = data[:i] + data[i:j] * 2 + data[j:]  # duplicate
        else:
            data = data[:i]  # truncate
    return data


MUTATED = st.tuples(
    st.sampled_from(sorted(SEEDS)),
    st.lists(st.tuples(st.integers(0, 3), st.integers(0, 10**6), st.integers(0, 10**6),
                       st.binary(max_size=8) | st.sampled_from(TOKENS).map(str.encode)),
             min_size=1, max_size=4),
).map(lambda t: (t[0], _mutate(SEEDS[t[0]], t[1])))

LINE = st.tuples(st.sampled_from(KEYS), st.sampled_from(TOKENS),
                 st.sampled_from([" = ", ": ", ":", "="]), st.sampled_from(["", "  ", "\t"]))
ASSEMBLED = st.tuples(
    st.sampled_from([".toml", ".yaml", ".json"]),
    st.lists(LINE, min_size=1, max_size=8),
    st.sampled_from([0, 1, 2, 3]),
).map(lambda t: (t[0], _assemble(*t)))


def _assemble(suffix: str, lines: list[tuple[str, str, str, str]], base: int) -> bytes:
    """A valid study (or part of it) with generated lines appended in the file's own syntax."""
    body = SEEDS[suffix].decode().splitlines()[: [None, 3, 8, 1][base]]
    if suffix == ".json":
        doc = json.loads(SEEDS[".json"])
        extra = ", ".join(f"{json.dumps(k)}: {v}" for k, v, _sep, _ind in lines)
        text = json.dumps(doc)[:-1] + (", " + extra if extra else "") + "}"
        return text.encode()
    for key, value, sep, indent in lines:
        body.append(f"{indent}{key}{sep}{value}")
    return "\n".join(body).encode()


def _check(path: Path) -> StudySpec | str:
    """The parse's outcome: the spec, or the error line (asserting what a line must be)."""
    try:
        return load_study_file(path)
    except StudySpecError as error:
        text = str(error)
        assert text.startswith(f"{path}: "), text
        assert "\n" not in text and text.isprintable(), repr(text)
        return text


@FUZZ
@given(case=MUTATED | ASSEMBLED)
def test_any_file_gives_a_study_or_one_line(tmp_path: Path, case: tuple[str, bytes]) -> None:
    suffix, data = case
    shutil.copy(GOOD / "train.py", tmp_path / "train.py")
    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(data)
    _check(path)


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=MUTATED | ASSEMBLED)
def test_the_intake_records_every_file_and_never_raises(tmp_path: Path,
                                                        case: tuple[str, bytes]) -> None:
    suffix, data = case
    folder = tmp_path / "watched"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    shutil.copy(GOOD / "train.py", folder / "train.py")
    path = folder / f"fuzz{suffix}"
    path.write_bytes(data)
    expected = _check(path)
    asyncio.run(_through_intake(folder, path, expected))


async def _through_intake(folder: Path, path: Path, expected: StudySpec | str) -> None:
    config = DaemonConfig(db_path=folder / ".hpod" / "hpod.db", folder=folder)
    started: list[str] = []
    async with open_store(config.db_path) as store:
        intake = StudyIntake(config, store, start=lambda spec, _rec: started.append(spec.name),
                             live={})
        await intake.handle(StudyFileEvent(path, present=True, initial=True))
        studies = await store.list_studies()
        events = await store.list_events()
    if isinstance(expected, str) and f"{path}: not a study file: " in expected:
        # A file with none of a study's keys is left alone, said once as an event.
        assert studies == [] and started == []
        assert [e.message for e in events] == [f"{path} is ignored: not a study file: "
                                               + expected.split(": not a study file: ", 1)[1]
                                               .split(" Fix: ", 1)[0]]
        return
    (study,) = studies
    if isinstance(expected, str):
        assert (study.name, study.state, study.error) == ("fuzz", StudyState.INVALID, expected)
        assert started == []
    else:
        assert started == [expected.name] and study.error is None
        assert study.spec == expected.to_dict()
