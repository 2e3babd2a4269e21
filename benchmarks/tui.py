"""What the TUI costs: its refresh time on a big study, and its effect on the daemon's ingest.

    .venv/bin/python benchmarks/tui.py [--trials 10000] [--rows 1000000] [--refreshes 50]
                                       [--steps 100000] [--ingest-runs 3]

1. Refresh: a store with N trials and M metric rows (seeded through the real writer,
   hpod.store.open_store), the study view's subscription on the feed (StudyInterest with the
   curve of a running trial, as when the view is open). Each round the writer commits new data
   (a metric row for each running trial, a new trial every fifth round), then one feed poll is
   timed: `data_version`, the incremental reads, building and posting the messages. Median and
   p95 over the rounds (goal: median < 50 ms). The first full load is timed too. The big
   store lives in /dev/shm where there is one: the writer fsyncs every commit, and seeding
   40 000 transactions on a disk would take many minutes (reads come from the page cache
   either way).
2. Ingest: a real `hpod serve` with one trial reporting S steps, alone and while the app runs
   headless in another process (`App.run_test()`, the ingesting study's view open, polling at
   its normal interval) on the same database. The trial reports only once the view is open
   (it waits for a file the app writes a second after opening it; alone, the file is there
   from the start): opening a screen is a one-off that would otherwise fall inside a window
   of two seconds. The rate is the daemon's: reports over the time between the first and the
   last report it received (metrics.time). The two kinds of run alternate, R of each (alone
   first), so a slow spell of a shared machine falls on both; reports per second are the
   median of each kind, and the ratio is the ratio of the medians (goal ≈ 1.0).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from hpod.store import Direction, MetricPoint, StoreReader, TrialState, open_store
from hpod.tui.feed import StoreFeed
from hpod.tui.watch_study import StudyInterest

RUNNING = 8  # trials left running in the big study, as with `parallel = 8`

SPEC: dict[str, Any] = {
    "name": "big",
    "objective": {"metric": "loss", "direction": "minimize"},
    "budget": {"trials": 20_000, "hours": None},
    "parallel": RUNNING,
    "space": {"lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
              "depth": {"type": "int", "low": 1, "high": 8}},
    "suggester": {"kind": "random"},
    "scheduler": {"kind": "fifo"},
}  # fmt: skip

INGEST_TRIAL = """\
import os, sys, time
import hpod.trial as trial
while sys.argv[2] and not os.path.exists(sys.argv[2]):  # the app's view is not open yet
    time.sleep(0.01)
for step in range(int(sys.argv[1])):
    trial.report(step, loss=1.0 / (step + 1))
"""

# The app in its own process, like a user's terminal: it waits on the overview until the
# study appears, opens it (the heaviest view: trials table and the running trial's curve),
# writes the go file (argv[2], if any) a second after its trial shows, and stays until its
# stdin closes.
APP_CHILD = """\
import asyncio, sys
from pathlib import Path
from hpod.tui.app import HpodApp
from hpod.tui.screens.study import StudyScreen

async def main(db, go):
    app = HpodApp(Path(db))
    async with app.run_test(size=(120, 36)) as pilot:
        print("ready", flush=True)
        closed = asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        while not closed.done():
            if not isinstance(app.screen, StudyScreen):
                if app.screen.table.row_count >= 1:
                    await pilot.press("enter")
            elif go and not Path(go).exists() and app.screen.table.row_count >= 1:
                await pilot.pause(1.0)
                Path(go).touch()
            await pilot.pause(0.2)
        print("opened" if isinstance(app.screen, StudyScreen) else "never opened", flush=True)

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


class Collector:
    """The feed's subscriber: it only counts what is posted (the screen's side is not timed)."""

    def __init__(self) -> None:
        self.messages = 0

    def post_message(self, message: object) -> bool:
        self.messages += 1
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


async def seed_big(db: Path, n_trials: int, n_rows: int, clock: Clock) -> tuple[int, list[int]]:
    """One study of `n_trials` trials and `n_rows` metric rows (two metrics per step)."""
    steps = max(1, n_rows // (2 * n_trials))
    batch = max(1, 20_000 // (2 * steps))  # trials per add_metrics transaction
    running: list[int] = []
    async with open_store(db, clock=clock) as store:
        study = await store.create_study(
            "big", str(db.parent.parent / "big.toml"), spec=SPEC, identity="big",
            direction=Direction.MINIMIZE, metric="loss",
        )  # fmt: skip
        for first in range(0, n_trials, batch):
            numbers = range(first, min(first + batch, n_trials))
            points: list[MetricPoint] = []
            progress: dict[int, tuple[int, float | None]] = {}
            ids: list[int] = []
            for number in numbers:
                clock.now += 1
                params = {"lr": 10 ** -(1 + number % 3), "depth": 1 + number % 8}
                trial = await store.create_trial(study.id, params)
                await store.transition(trial.id, TrialState.RUNNING, placement="cpu:0")
                for step in range(steps):
                    loss = 1.0 / (1 + step) + (number % 97) / 1000
                    points += [MetricPoint(trial.id, step, "loss", loss, clock.now),
                               MetricPoint(trial.id, step, "acc", 1 - loss, clock.now)]  # fmt: skip
                progress[trial.id] = (steps - 1, 1.0 / steps + (number % 97) / 1000)
                ids.append(trial.id)
            await store.add_metrics(points, progress)
            for number, trial_id in zip(numbers, ids, strict=True):
                if number < n_trials - RUNNING:
                    final = TrialState.STOPPED if number % 3 else TrialState.COMPLETE
                    await store.transition(trial_id, final, exit_code=0)
                else:
                    running.append(trial_id)
    return study.id, running


async def write_round(db: Path, clock: Clock, study_id: int, running: list[int], step: int,
                      round_index: int) -> None:  # fmt: skip
    async with open_store(db, clock=clock) as store:
        clock.now += 1
        points = [MetricPoint(t, step, "loss", 1.0 / step, clock.now) for t in running]
        await store.add_metrics(points, {t: (step, 1.0 / step) for t in running})
        if round_index % 5 == 0:
            await store.create_trial(study_id, {"lr": 0.01, "depth": 3})


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def bench_refresh(work: Path, n_trials: int, n_rows: int, refreshes: int) -> dict[str, float]:
    db = work / "big" / ".hpod" / "hpod.db"
    clock = Clock()
    started = time.perf_counter()
    study_id, running = asyncio.run(seed_big(db, n_trials, n_rows, clock))
    seeded_s = time.perf_counter() - started
    con = sqlite3.connect(db)
    (rows,) = con.execute("SELECT count(*) FROM metrics").fetchone()
    (trials,) = con.execute("SELECT count(*) FROM trials").fetchone()
    con.close()

    feed = StoreFeed(db)
    target = Collector()
    feed.subscribe(target, StudyInterest(study_id, curves=frozenset({running[-1]})))  # type: ignore[arg-type]
    reader = StoreReader(db)
    try:
        started = time.perf_counter()
        while feed.poll_once(reader):  # the first load reads the history in pages
            pass
        load_s = time.perf_counter() - started
        times: list[float] = []
        for index in range(refreshes):
            # Open and close the writer each round: the reader must see a committed change.
            asyncio.run(write_round(db, clock, study_id, running, 10_000 + index, index))
            before = target.messages
            started = time.perf_counter()
            feed.poll_once(reader)
            times.append(time.perf_counter() - started)
            if target.messages == before:
                raise RuntimeError("a refresh after a write posted nothing")
    finally:
        reader.close()
    return {"trials": trials, "rows": rows, "seeded_s": seeded_s, "load_s": load_s,
            "median_ms": 1000 * statistics.median(times), "p95_ms": 1000 * percentile(times, 0.95),
            "max_ms": 1000 * max(times), "refreshes": refreshes}  # fmt: skip


def ingest_once(
    work: Path, name: str, steps: int, with_app: bool, view_first: bool = True
) -> dict[str, float]:
    """One run; `view_first=False` lets the trial report at once, while the app opens its view."""
    folder = work / name
    folder.mkdir()
    script = work / "ingest.py"
    script.write_text(INGEST_TRIAL)
    go = work / f"{name}.go" if view_first else None
    if go is not None and not with_app:
        go.touch()
    command = [sys.executable, str(script), str(steps), str(go or "")]
    (folder / "ingest.toml").write_text(
        f"command = {json.dumps(command)}\n"
        'objective = { metric = "loss", direction = "minimize" }\n'
        "budget = { trials = 1 }\nparallel = 1\nseed = 0\n"
        '[space]\nx = { type = "float", low = 0.0, high = 1.0 }\n'
    )
    db = folder / ".hpod" / "hpod.db"

    async def create() -> None:
        async with open_store(db):  # the schema, so the app can open before the daemon starts
            pass

    asyncio.run(create())
    app: subprocess.Popen[str] | None = None
    if with_app:
        app = subprocess.Popen([sys.executable, "-c", APP_CHILD, str(db), str(go or "")],
                               text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE)  # fmt: skip
        assert app.stdout is not None
        if app.stdout.readline().strip() != "ready":
            raise RuntimeError("the app did not start")
    try:
        subprocess.run([sys.executable, "-m", "hpod", "serve", str(folder), "--slots", "1",
                        "--exit-when-idle", "--log-level", "warning"], check=True)  # fmt: skip
    finally:
        opened = ""
        if app is not None:
            opened, _ = app.communicate("", timeout=60)
    if app is not None and "opened" not in opened.split():
        raise RuntimeError(f"the app never opened the study view: {opened!r}")
    con = sqlite3.connect(db)
    try:
        sql = "SELECT count(*), min(time), max(time) FROM metrics"
        rows, first, last = con.execute(sql).fetchone()
    finally:
        con.close()
    if rows != steps:
        raise RuntimeError(f"{rows} of {steps} reports stored")
    return {"reports": rows, "seconds": last - first, "per_s": (rows - 1) / (last - first)}


def bench_ingest(
    work: Path, steps: int, runs: int, view_first: bool = True
) -> tuple[list[float], list[float]]:
    """Reports per second of `runs` runs alone and `runs` with the app, alternating."""
    alone: list[float] = []
    watched: list[float] = []
    for index in range(runs):
        for kind, with_app, out in (("alone", False, alone), ("watched", True, watched)):
            run = ingest_once(work, f"{kind}-{index}", steps, with_app, view_first)
            out.append(run["per_s"])
    return alone, watched


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--refreshes", type=int, default=50)
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--ingest-runs", type=int, default=3,
                        help="runs of each kind, alone and with the TUI, interleaved")
    parser.add_argument("--skip-ingest", action="store_true")
    args = parser.parse_args()
    if args.ingest_runs < 1:
        parser.error("--ingest-runs must be at least 1")
    shm = "/dev/shm" if Path("/dev/shm").is_dir() else None
    with (tempfile.TemporaryDirectory(prefix="hpod-tui-bench-", dir=shm) as big,
          tempfile.TemporaryDirectory(prefix="hpod-tui-bench-") as tmp):
        work = Path(tmp)
        r = bench_refresh(Path(big), args.trials, args.rows, args.refreshes)
        print(f"seeded {r['trials']} trials and {r['rows']} metric rows in {r['seeded_s']:.0f} s;"
              f" the study view's first load took {r['load_s']:.2f} s\n")  # fmt: skip
        print("| measure | value | goal | ratio to goal |")
        print("|---|---:|---:|---:|")
        print(f"| study view refresh with new data, median of {r['refreshes']} | "
              f"{r['median_ms']:.1f} ms | < 50 ms | {r['median_ms'] / 50:.2f} |")
        print(f"| study view refresh with new data, p95 | {r['p95_ms']:.1f} ms | | |")
        if not args.skip_ingest:
            alone, watched = bench_ingest(work, args.steps, args.ingest_runs)
            ratio = statistics.median(watched) / statistics.median(alone)
            of = f"median of {args.ingest_runs}" if args.ingest_runs > 1 else "one run"
            print(f"| ingest of {args.steps} reports, daemon alone, {of} | "
                  f"{statistics.median(alone):,.0f}/s | | |")
            print(f"| ingest of {args.steps} reports, with the TUI open, {of} | "
                  f"{statistics.median(watched):,.0f}/s | ≈ 1.0 × alone | {ratio:.2f} |")
            if args.ingest_runs > 1:
                print("\nreports/s by run, in order: "
                      + ", ".join(f"{a:,.0f} alone, {w:,.0f} with the TUI"
                                  for a, w in zip(alone, watched, strict=True)))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
