"""What the daemon costs beyond the trials themselves, measured side by side in one run.

    python benchmarks/overhead.py [--trials 200] [--steps 100000] [--idle-seconds 10]

1. Throughput: N no-op trials (each reads its params and reports once) through
   `hpod serve --slots 2`, against a plain loop spawning the same N processes two at a time.
2. Ingest: one trial reporting S steps; reports per second into SQLite.
3. The idle daemon: CPU share and RSS over a quiet period, and whether TensorFlow is loaded.
4. Warm starts (hpod/executor/warm.py; skipped with --skip-warm or without TensorFlow):
   a. launch to first report of a Keras trial (import TensorFlow, build a tiny model, report
      once), cold through LocalExecutor vs warm in a ready spare: medians, and their ratio;
   b. a copy of the digits example (examples/digits) under ASHA through `hpod serve
      --exit-when-idle`, cold (its `[trial] preload` removed) and as shipped (warm): wall-clock
      for the same number of trials, and the ratio. `--warm-only` runs only this part.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

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


KERAS_TRIAL = """\
import os
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
import keras
import hpod.trial as trial

model = keras.Sequential([keras.Input(shape=(4,)), keras.layers.Dense(8, activation="relu"),
                          keras.layers.Dense(1)])
model.compile(optimizer="adam", loss="mse")
trial.report(0, loss=float(model.count_params()))
"""

# examples/digits as shipped, but under ASHA (rungs at 1, 3 and 9 epochs): most trials stop
# after their first epoch, so the import of TensorFlow is most of what a trial costs.
DIGITS_ASHA = """\
[scheduler]
kind = "asha"
resource = "epoch"
min_resource = 1
max_resource = 9
reduction_factor = 3"""


def digits_copy(folder: Path, *, trials: int, parallel: int, warm: bool) -> tuple[str, ...]:
    """Copy examples/digits into `folder` with ASHA, `trials` and `parallel`; cold, without
    its `[trial] preload`. Returns the modules the example preloads."""
    source = REPO / "examples" / "digits"
    shutil.copy(source / "train.py", folder / "train.py")
    text = (source / "digits.toml").read_text()
    preload = tuple(tomllib.loads(text)["trial"].get("preload", ()))
    if not preload:
        raise RuntimeError("examples/digits/digits.toml has no [trial] preload")
    edits = {r"^budget = .*$": f"budget = {{ trials = {trials} }}",
             r"^parallel = .*$": f"parallel = {parallel}",
             r"^epochs = .*$": "epochs = 9",
             r'^\[scheduler\]\nkind = "fifo"$': DIGITS_ASHA}
    if not warm:
        edits[r"^preload = .*$"] = ""
    for pattern, replacement in edits.items():
        text, n = re.subn(pattern, lambda _m, r=replacement: r, text, flags=re.M)
        if n != 1:
            raise RuntimeError(f"examples/digits/digits.toml changed: {pattern!r} not found")
    (folder / "digits.toml").write_text(text)
    return preload


def serve_digits(folder: Path, slots: int, spares: str) -> dict[str, float]:
    """`hpod serve --exit-when-idle` on the copy: wall-clock, finished trials, warm starts."""
    log = folder / "daemon.log"
    started = time.perf_counter()
    with log.open("w") as out:
        subprocess.run([sys.executable, "-m", "hpod", "serve", str(folder), "--slots",
                        str(slots), "--exit-when-idle", "--spares", spares],
                       check=True, stdout=out, stderr=subprocess.STDOUT)
    elapsed = time.perf_counter() - started
    con = sqlite3.connect(folder / ".hpod" / "hpod.db")
    try:
        (finished,) = con.execute(
            "SELECT count(*) FROM trials WHERE state IN ('complete', 'stopped')").fetchone()
    finally:
        con.close()
    found = re.search(r"warm starts: (\d+) of (\d+)", log.read_text())
    return {"seconds": elapsed, "finished": finished,
            "warm_starts": int(found.group(1)) if found else 0}


async def _first_report_seconds(executor, argv: list[str], env: dict[str, str], cwd: Path,
                                 trial_dir: Path, **warm: object) -> float:
    started = time.perf_counter()
    trial = await executor.launch(argv, env=env, cwd=cwd, trial_dir=trial_dir, **warm)
    async with trial:
        async for _message in trial.messages():
            elapsed = time.perf_counter() - started
            break
        else:
            raise RuntimeError(f"the Keras trial never reported: {(await trial.wait()).describe()}")
        exit_ = await trial.wait()
    if not exit_.ok:
        raise RuntimeError(f"the Keras trial failed: {exit_.describe()}")
    return elapsed


async def _keras_first_report(work: Path, repeats: int) -> dict[str, float]:
    from hpod.executor.local import LocalExecutor
    from hpod.executor.warm import WarmExecutor

    script = work / "keras_trial.py"
    script.write_text(KERAS_TRIAL)
    argv = [sys.executable, str(script)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("HPOD_")}
    env.update(HPOD_DECISION_TIMEOUT="0", PYTHONUNBUFFERED="1")
    cold = [await _first_report_seconds(LocalExecutor(), argv, env, work, work / f"cold-{i}")
            for i in range(repeats)]
    # The latency of a launch that finds its spare ready, whatever else the machine runs:
    # running=None lets the spare start even on a busy machine.
    executor = WarmExecutor(spare_dir=work / "spares", running=None)
    warm = []
    try:
        executor.prepare(argv, env=env, cwd=work, preload=["tensorflow", "keras"], slot="s")
        for i in range(repeats):
            await executor.wait_ready("s")  # not timed: a spare imports while trials run
            warm.append(await _first_report_seconds(executor, argv, env, work, work / f"warm-{i}",
                                                    preload=["tensorflow", "keras"], slot="s"))
        assert executor.warm_starts == repeats, executor
    finally:
        await executor.aclose()
    return {"cold_s": statistics.median(cold), "warm_s": statistics.median(warm)}


def bench_warm(work: Path, *, repeats: int, trials: int, slots: int | None = None,
               spares: str = "auto") -> dict[str, float]:
    """Warm vs cold in one run: Keras launch-to-first-report, and digits under ASHA."""
    subprocess.run([sys.executable, "-c", "import tensorflow, keras, sklearn.model_selection"],
                   check=True, capture_output=True)  # a warm page cache for both sides
    keras_work = work / "keras"
    keras_work.mkdir()
    result: dict[str, float] = dict(asyncio.run(_keras_first_report(keras_work, repeats)))

    # One trial per two cores: a spare imports on the core its trial leaves free.
    slots = slots or max(1, len(os.sched_getaffinity(0)) // 2)
    runs = {}
    for mode in ("cold", "warm"):
        folder = work / f"digits-{mode}"
        folder.mkdir()
        digits_copy(folder, trials=trials, parallel=slots, warm=mode == "warm")
        runs[mode] = serve_digits(folder, slots, spares if mode == "warm" else "off")
        if runs[mode]["finished"] != trials:
            raise RuntimeError(f"{mode}: {runs[mode]['finished']} of {trials} digits trials "
                               f"finished; see {folder / 'daemon.log'}")
    result.update(digits_cold_s=runs["cold"]["seconds"], digits_warm_s=runs["warm"]["seconds"],
                  digits_warm_starts=runs["warm"]["warm_starts"], digits_trials=trials,
                  digits_slots=slots)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--skip-warm", action="store_true",
                        help="skip the warm-start benchmark (it needs TensorFlow; minutes)")
    parser.add_argument("--warm-repeats", type=int, default=3,
                        help="Keras trials timed each way (the medians are compared)")
    parser.add_argument("--warm-trials", type=int, default=10,
                        help="digits trials under ASHA, each way")
    parser.add_argument("--warm-only", action="store_true",
                        help="only the warm-start benchmark (parts 1-3 left out)")
    parser.add_argument("--warm-spares", choices=("auto", "ignore-load"), default="auto",
                        help="`hpod serve --spares` for the warm digits run (default: auto, "
                        "as a user gets it)")
    args = parser.parse_args()
    if args.warm_only and args.skip_warm:
        parser.error("--warm-only and --skip-warm leave nothing to measure")

    has_tf = all(importlib.util.find_spec(m) is not None for m in ("tensorflow", "keras",
                                                                    "sklearn"))
    with tempfile.TemporaryDirectory(prefix="hpod-bench-") as tmp:
        work = Path(tmp)
        if not args.warm_only:
            throughput = bench_throughput(work, args.trials)
            ingest = bench_ingest(work, args.steps)
            idle = bench_idle(work, args.idle_seconds)
        warm = None
        if not args.skip_warm and has_tf:
            warm_work = work / "warm"
            warm_work.mkdir()
            warm = bench_warm(warm_work, repeats=args.warm_repeats, trials=args.warm_trials,
                              spares=args.warm_spares)

    print(f"hpod overhead benchmark ({os.cpu_count()} cores, Python {sys.version.split()[0]})\n")
    print("| measure | hpod | baseline | ratio | goal |")
    print("|---|---|---|---|---|")
    if not args.warm_only:
        print_overhead(args, throughput, ingest, idle)
    if warm is not None:
        print(f"| Keras trial, launch to first report, median of {args.warm_repeats} "
              f"| {warm['warm_s']:.2f} s warm | {warm['cold_s']:.2f} s cold "
              f"| {warm['cold_s'] / warm['warm_s']:.1f}× faster | ≥ 5× |")
        print(f"| digits under ASHA, {warm['digits_trials']:.0f} trials on "
              f"{warm['digits_slots']:.0f} slot(s) ({warm['digits_warm_starts']:.0f} started "
              f"warm, spares {args.warm_spares}), wall-clock "
              f"| {warm['digits_warm_s']:.0f} s warm | {warm['digits_cold_s']:.0f} s cold "
              f"| {warm['digits_cold_s'] / warm['digits_warm_s']:.2f}× faster | > 1× |")
    elif not args.skip_warm:
        print("| warm starts | skipped: TensorFlow, Keras or scikit-learn not installed | | | |")
    return 0


def print_overhead(args: argparse.Namespace, throughput: dict[str, float],
                   ingest: dict[str, float], idle: dict[str, float | bool]) -> None:
    n = args.trials
    rate_total = n / throughput["daemon_total_s"]
    rate_trials = n / throughput["daemon_trials_s"]
    rate_plain = n / throughput["plain_s"]
    reports_per_s = ingest["reports"] / ingest["seconds"]
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


if __name__ == "__main__":
    sys.exit(main())
