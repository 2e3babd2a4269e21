"""What the daemon costs beyond the trials themselves, measured side by side in one run.

    python benchmarks/overhead.py [--trials 200] [--steps 100000] [--idle-seconds 10]

1. Throughput: N no-op trials (each reads its params and reports once) through
   `hpod serve --slots 2`, against a plain loop spawning the same N processes two at a time.
2. Ingest: one trial reporting S steps; reports per second into SQLite.
3. The idle daemon: CPU share and RSS over a quiet period, and whether TensorFlow is loaded.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NOOP_TRIAL = """\
import hpod.trial as trial
params = trial.params()
trial.report(1, loss=float(params.get("x", 0.0)))
"""

INGEST_TRIAL = """\
import sys
import hpod.trial as trial
steps = int(sys.argv[1])
for step in range(steps):
    trial.report(step, loss=1.0 / (step + 1))
"""


def write_study(folder: Path, name: str, script: Path, *, trials: int, parallel: int,
                args: tuple[str, ...] = ()) -> None:
    command = json.dumps(["python", str(script), *args])
    (folder / f"{name}.toml").write_text(
        f"command = {command}\n"
        'objective = { metric = "loss", direction = "minimize" }\n'
        f"budget = {{ trials = {trials} }}\n"
        f"parallel = {parallel}\n"
        "seed = 0\n"
        "[space]\n"
        'x = { type = "float", low = 0.0, high = 1.0 }\n'
    )


def serve_until_idle(folder: Path, slots: int) -> float:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "hpod", "serve", str(folder), "--slots", str(slots),
         "--exit-when-idle", "--log-level", "warning"],
        check=True,
    )
    return time.perf_counter() - started


def trial_span(folder: Path) -> tuple[float, int]:
    """Seconds from the first trial's start to the last one's end, and complete trials."""
    con = sqlite3.connect(folder / ".hpod" / "hpod.db")
    try:
        first, last, complete = con.execute(
            "SELECT min(started_at), max(finished_at), "
            "sum(state = 'complete') FROM trials"
        ).fetchone()
    finally:
        con.close()
    return last - first, complete


def plain_loop(script: Path, n: int, parallel: int) -> float:
    """The floor: spawn the same processes, `parallel` at a time, nothing else."""
    started = time.perf_counter()
    running: dict[int, subprocess.Popen[bytes]] = {}
    env = {**os.environ, "HPOD_PARAMS": '{"x": 0.5}'}
    for _ in range(n):
        if len(running) >= parallel:
            pid, _status = os.wait()  # whichever finishes first frees its slot
            running.pop(pid).returncode = 0
        process = subprocess.Popen([sys.executable, str(script)], env=env)
        running[process.pid] = process
    while running:
        pid, _status = os.wait()
        running.pop(pid).returncode = 0
    return time.perf_counter() - started


def bench_throughput(work: Path, n: int) -> dict[str, float]:
    script = work / "noop.py"
    script.write_text(NOOP_TRIAL)
    folder = work / "throughput"
    folder.mkdir()
    write_study(folder, "noop", script, trials=n, parallel=2)
    total = serve_until_idle(folder, slots=2)
    span, complete = trial_span(folder)
    assert complete == n, f"only {complete} of {n} trials completed"
    baseline = plain_loop(script, n, parallel=2)
    return {"daemon_total_s": total, "daemon_trials_s": span, "plain_s": baseline}


def bench_ingest(work: Path, steps: int) -> dict[str, float]:
    script = work / "ingest.py"
    script.write_text(INGEST_TRIAL)
    folder = work / "ingest"
    folder.mkdir()
    write_study(folder, "ingest", script, trials=1, parallel=1, args=(str(steps),))
    serve_until_idle(folder, slots=1)
    con = sqlite3.connect(folder / ".hpod" / "hpod.db")
    try:
        (rows,) = con.execute("SELECT count(*) FROM metrics").fetchone()
        started, finished = con.execute("SELECT started_at, finished_at FROM trials").fetchone()
    finally:
        con.close()
    assert rows == steps, f"{rows} of {steps} reports stored"
    return {"reports": rows, "seconds": finished - started}


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def bench_idle(work: Path, seconds: float) -> dict[str, float | bool]:
    folder = work / "idle"
    folder.mkdir()
    daemon = subprocess.Popen(
        [sys.executable, "-m", "hpod", "serve", str(folder), "--log-level", "warning"]
    )
    try:
        db = folder / ".hpod" / "hpod.db"
        deadline = time.monotonic() + 30
        while not db.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(2.0)  # let start-up work finish before measuring the quiet period
        cpu_before, wall_before = _cpu_seconds(daemon.pid), time.monotonic()
        time.sleep(seconds)
        cpu = _cpu_seconds(daemon.pid) - cpu_before
        wall = time.monotonic() - wall_before
        maps = Path(f"/proc/{daemon.pid}/maps").read_text()
        return {
            "cpu_percent": 100.0 * cpu / wall,
            "rss_mb": _rss_mb(daemon.pid),
            "tensorflow_loaded": "tensorflow" in maps,
        }
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="hpod-bench-") as tmp:
        work = Path(tmp)
        throughput = bench_throughput(work, args.trials)
        ingest = bench_ingest(work, args.steps)
        idle = bench_idle(work, args.idle_seconds)

    n = args.trials
    rate_total = n / throughput["daemon_total_s"]
    rate_trials = n / throughput["daemon_trials_s"]
    rate_plain = n / throughput["plain_s"]
    reports_per_s = ingest["reports"] / ingest["seconds"]
    print(f"hpod overhead benchmark ({os.cpu_count()} cores, Python {sys.version.split()[0]})\n")
    print("| measure | hpod | baseline | ratio | goal |")
    print("|---|---|---|---|---|")
    print(f"| {n} no-op trials, 2 slots, trials/s (whole daemon run incl. start-up) "
          f"| {rate_total:.1f} | {rate_plain:.1f} (plain spawn loop) "
          f"| {rate_total / rate_plain:.2f} | ≥ 0.8 |")
    print(f"| {n} no-op trials, 2 slots, trials/s (first start to last end) "
          f"| {rate_trials:.1f} | {rate_plain:.1f} (plain spawn loop) "
          f"| {rate_trials / rate_plain:.2f} | ≥ 0.8 |")
    print(f"| ingest of one trial reporting {ingest['reports']} steps, reports/s "
          f"| {reports_per_s:,.0f} | 50,000 (goal) | {reports_per_s / 50_000:.2f} | ≥ 1 |")
    print(f"| idle daemon CPU over {args.idle_seconds:g} s | {idle['cpu_percent']:.2f} % "
          f"| 1 % (goal) | | < 1 % |")
    print(f"| idle daemon RSS | {idle['rss_mb']:.0f} MB | 150 MB (goal) | | < 150 MB |")
    print(f"| TensorFlow loaded in the daemon | {idle['tensorflow_loaded']} | | | False |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
