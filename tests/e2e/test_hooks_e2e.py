"""on_finish in a real daemon: the hook gets the study's summary as JSON when the study ends."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from helpers import hpod_cli, quadratic_study, write_study

pytestmark = pytest.mark.slow


def test_on_finish_gets_the_summary(tmp_path: Path, start_daemon) -> None:
    hook = tmp_path / "notify.py"
    hook.write_text("import sys, pathlib\n"
                    "pathlib.Path(sys.argv[1]).write_text(sys.stdin.read())\n")
    out = tmp_path / "summary.json"
    extra = f'on_finish = ["{sys.executable}", "{hook}", "{out}"]'
    write_study(tmp_path, "hooked", quadratic_study(trials=3, extra=extra))
    assert start_daemon(tmp_path, "--exit-when-idle").wait() == 0
    summary = json.loads(out.read_text())
    assert summary["name"] == "hooked" and summary["state"] == "complete"
    best = json.loads(hpod_cli("best", tmp_path, "hooked", "--json").stdout)
    assert summary["best"]["value"] == best["value"]
    assert "on_finish" in hpod_cli("events", tmp_path).stdout
