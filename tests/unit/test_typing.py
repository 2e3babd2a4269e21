"""The package type-checks: mypy over hpod, hpod.store and hpod.tui as they are installed.

The source tree keeps store/ and tui/ beside hpod/ (setuptools package-dir), which mypy cannot
follow through the editable install's import hook: without the view built here every
`hpod.store` type would be Any and go unchecked.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]


def _installed_view(into: Path) -> Path:
    """hpod/ as it is installed: hpod's own entries, plus store/ and tui/ inside it (links)."""
    package = into / "hpod"
    package.mkdir(parents=True)
    for entry in (ROOT / "hpod").iterdir():
        if entry.name != "__pycache__":
            (package / entry.name).symlink_to(entry)
    for sub in ("store", "tui"):
        (package / sub).symlink_to(ROOT / sub)
    return into


def test_mypy_finds_no_type_errors(tmp_path: Path) -> None:
    pytest.importorskip("mypy")
    view = _installed_view(tmp_path / "view")
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
         "--cache-dir", str(tmp_path / "cache"), "-p", "hpod"],
        cwd=view, capture_output=True, text=True, timeout=600,
        env={**os.environ, "MYPYPATH": ""})
    assert result.returncode == 0, result.stdout + result.stderr
