"""Without Ray installed, choosing it is a clear error that says how to install it — in a
study file (`hpod check`) and for the daemon (`hpod serve --executor ray`). Runs whether or
not Ray is installed here: the child process hides it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from helpers import FIXTURE_TRIALS, write_study

# sys.modules["ray"] = None makes `import ray` fail as if Ray were not installed.
_WITHOUT_RAY = "import sys; sys.modules['ray'] = None; from hpod.cli import main; sys.exit(main())"


def _hpod_without_ray(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", _WITHOUT_RAY, *map(str, args)],
                          capture_output=True, text=True, timeout=120)


def test_a_study_choosing_ray_without_ray_names_the_fix(tmp_path: Path) -> None:
    path = write_study(tmp_path, "cluster", f"""
command = ["python", "{FIXTURE_TRIALS / 'quadratic.py'}"]
objective = {{ metric = "loss", direction = "minimize" }}
budget = {{ trials = 1 }}
executor = "ray"
[space]
x = {{ type = "float", low = 0.0, high = 1.0 }}
""")
    result = _hpod_without_ray("check", path)
    assert result.returncode == 1, result
    assert "field `executor.kind`" in result.stdout
    assert "Ray is not installed" in result.stdout
    assert "pip install 'hpod[ray]'" in result.stdout


def test_serve_with_the_ray_executor_without_ray_names_the_fix(tmp_path: Path) -> None:
    result = _hpod_without_ray("serve", tmp_path, "--executor", "ray")
    assert result.returncode == 2, result
    assert "Ray, which is not installed" in result.stderr
    assert "pip install 'hpod[ray]'" in result.stderr
