"""The watcher on a real folder: the initial scan, then additions, edits and removals."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from hpod.watcher import is_study_file_name, watch_study_files


@pytest.mark.parametrize(
    ("name", "wanted"),
    [
        ("digits.toml", True),
        ("digits.yaml", True),
        ("digits.yml", True),
        ("digits.json", True),
        ("DIGITS.TOML", True),
        ("notes.txt", False),
        (".digits.toml.swp", False),
        (".#digits.toml", False),
        ("digits.toml~", False),
        ("#digits.toml#", False),
        (".digits.toml.tmp", False),
        ("train.py", False),
        ("", False),
    ],
)
def test_study_file_names(name: str, wanted: bool) -> None:
    assert is_study_file_name(name) is wanted


async def test_scan_then_changes(tmp_path: Path) -> None:
    (tmp_path / "a.toml").write_text("x")
    (tmp_path / "ignored.txt").write_text("x")
    stop = asyncio.Event()
    events = watch_study_files(tmp_path, stop, debounce_ms=50)

    initial = await asyncio.wait_for(anext(events), 10)
    assert [(e.path.name, e.present, e.initial) for e in initial] == [("a.toml", True, True)]

    # Written the careful way (temp file, then rename): one event for the final name only.
    (tmp_path / ".b.toml.tmp").write_text("y")
    (tmp_path / ".b.toml.tmp").rename(tmp_path / "b.toml")
    batch = await asyncio.wait_for(anext(events), 10)
    assert [(e.path.name, e.present) for e in batch] == [("b.toml", True)]

    (tmp_path / "a.toml").unlink()
    batch = await asyncio.wait_for(anext(events), 10)
    assert [(e.path.name, e.present) for e in batch] == [("a.toml", False)]

    stop.set()
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(anext(events), 10)
