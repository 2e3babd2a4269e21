"""Layering, checked in a fresh interpreter: what importing a part of hpod drags in.

- the daemon side never loads Textual (`hpod` never imports `textual`);
- the trial client (imported inside every trial process) loads neither numpy/scipy nor the
  store's driver, so it starts fast and works in any environment;
- the TUI reads the store but never loads the daemon's internals.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def loaded_after(*modules: str) -> set[str]:
    code = (
        "import importlib, json, sys\n"
        f"for name in {list(modules)!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, check=True)  # fmt: skip
    return set(json.loads(result.stdout))


def roots(modules: set[str]) -> set[str]:
    return {name.split(".")[0] for name in modules}


@pytest.mark.parametrize("module", ["hpod", "hpod.daemon", "hpod.store", "hpod.trial", "hpod.cli"])
def test_the_daemon_side_does_not_load_textual(module: str) -> None:
    assert "textual" not in roots(loaded_after(module))


def test_the_trial_client_loads_no_heavy_dependency() -> None:
    heavy = {"numpy", "scipy", "aiosqlite", "textual", "sklearn"}
    assert roots(loaded_after("hpod.trial")) & heavy == set()


def test_the_tui_does_not_load_the_daemon() -> None:
    loaded = loaded_after("hpod.tui.app", "hpod.tui.entry")
    internals = {"hpod.daemon", "hpod.controller", "hpod.executor", "hpod.trial_run"}
    assert {m for m in loaded if m in internals or m.startswith("hpod.executor.")} == set()
