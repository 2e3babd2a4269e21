"""Fixtures shared by every test."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from helpers import DaemonProcess


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[Callable[..., DaemonProcess]]:
    """Factory: start `hpod serve FOLDER` as a real process; killed at teardown if still up."""
    started: list[DaemonProcess] = []

    def start(folder: Path, *extra: str) -> DaemonProcess:
        log_path = tmp_path / f"daemon-{len(started)}.log"
        log = log_path.open("w")
        process = subprocess.Popen(
            [sys.executable, "-m", "hpod", "serve", str(folder), "--slots", "2", *extra],
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        daemon = DaemonProcess(folder, process, log_path)
        started.append(daemon)
        return daemon

    yield start
    for daemon in started:
        if daemon.process.poll() is None:
            daemon.process.kill()
            daemon.process.wait(timeout=30)
