"""Regenerate the TUI screenshots in docs/images/ (SVG, from Textual's own exporter).

    .venv/bin/python docs/make_screenshots.py [--size 120x36] [--out docs/images]

It seeds a realistic database through the real writer (an ASHA study half way through, a
finished one, a study file that does not validate, some failures and warnings), with a frozen
clock and UTC, then drives the app headless and saves each screen: the pictures come out the
same on every run, so a diff of docs/images/ shows what a change did to the UI.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from hpod.lock import DaemonLock
from hpod.store import Direction, EventLevel, MetricPoint, StudyState, TrialState, open_store
from hpod.tui.app import HpodApp
from hpod.tui.model import trial_log_dir
from hpod.tui.screens.study import StudyScreen
from hpod.tui.screens.trial import TrialScreen
from hpod.tui.widgets.chart import Chart

T0 = 1_717_000_000.0  # 2024-05-29 16:26:40 UTC: every seeded time is relative to it
DB = Path("studies/.hpod/hpod.db")  # relative, so the title bar shows no temporary folder
RUNGS = (1, 3, 9, 27)  # min_resource 1, reduction factor 3, max_resource 27

SPACE: dict[str, Any] = {
    "lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
    "width": {"type": "int", "low": 32, "high": 512, "log": True},
    "dropout": {"type": "float", "low": 0.0, "high": 0.5},
    "opt": {"type": "categorical", "choices": ["adam", "sgd", "adamw"]},
}


def spec(name: str, trials: int) -> dict[str, Any]:
    return {
        "name": name,
        "objective": {"metric": "val_loss", "direction": "minimize"},
        "budget": {"trials": trials, "hours": None},
        "parallel": 4,
        "space": SPACE,
        "suggester": {"kind": "gp"},
        "scheduler": {"kind": "asha", "resource": None, "min_resource": RUNGS[0],
                      "max_resource": RUNGS[-1], "reduction_factor": 3},
    }  # fmt: skip


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def loss(params: dict[str, Any], epoch: int, noise: random.Random) -> float:
    """A plausible validation loss: best near lr=3e-3, wider helps, too much dropout hurts."""
    floor = 0.18 + 0.08 * (math.log10(params["lr"]) + 2.5) ** 2
    floor += 0.04 * (math.log2(512 / params["width"]) / 4) + 0.2 * max(0, params["dropout"] - 0.3)
    floor += {"adam": 0.0, "adamw": -0.01, "sgd": 0.05}[params["opt"]]
    return floor + 1.6 * math.exp(-epoch / 4.0) + noise.gauss(0, 0.006)


async def seed_study(store: Any, clock: Clock, rng: random.Random, name: str, n: int,
                     running: int) -> None:  # fmt: skip
    study = await store.create_study(
        name, f"studies/{name}.toml", spec=spec(name, n + 20), identity=name,
        direction=Direction.MINIMIZE, metric="val_loss",
    )  # fmt: skip
    rung_values: dict[int, list[float]] = {r: [] for r in RUNGS}
    for number in range(n):
        clock.now += 45
        params = {
            "lr": round(10 ** rng.uniform(-4, -1), 5),
            "width": int(2 ** rng.uniform(5, 9)),
            "dropout": round(rng.uniform(0, 0.5), 2),
            "opt": rng.choice(SPACE["opt"]["choices"]),
        }
        trial = await store.create_trial(study.id, params, origin="gp" if number >= 8 else "sobol")
        trial = await store.transition(trial.id, TrialState.RUNNING, placement=f"gpu:{number % 4}")
        live = number >= n - running
        last_epoch = rng.randint(2, 12) if live else RUNGS[-1]
        stopped_at: int | None = None
        points: list[MetricPoint] = []
        value = math.nan
        for epoch in range(1, last_epoch + 1):
            value = loss(params, epoch, rng)
            at = clock.now + 20 * epoch
            points += [MetricPoint(trial.id, epoch, "val_loss", value, at),
                       MetricPoint(trial.id, epoch, "train_loss", value * 0.8, at),
                       MetricPoint(trial.id, epoch, "acc", max(0.0, 1 - value / 2), at)]  # fmt: skip
            if epoch in rung_values and not live:
                seen = sorted(rung_values[epoch])
                rung_values[epoch].append(value)
                # ASHA: continue only in the top third of what reached this rung so far.
                if epoch < RUNGS[-1] and len(seen) >= 3 and value > seen[len(seen) // 3]:
                    stopped_at = epoch
                    break
        await store.add_metrics(points, {trial.id: (points[-1].step, value)})
        write_logs(DB, name, number, points)
        if live:
            continue
        clock.now += 20 * (stopped_at or last_epoch)
        if number in (5, 17):
            await store.transition(trial.id, TrialState.FAILED, exit_code=1,
                                   reason="exited with code 1: CUDA out of memory")  # fmt: skip
            await store.record_event(EventLevel.WARNING, f"trial {name}#{number} failed: "
                                     "exited with code 1", study_id=study.id, trial_id=trial.id)  # fmt: skip
        elif stopped_at is not None:
            await store.transition(trial.id, TrialState.STOPPED, exit_code=0,
                                   reason=f"stopped early by the asha scheduler at step {stopped_at}")  # fmt: skip
        else:
            await store.transition(trial.id, TrialState.COMPLETE, exit_code=0,
                                   checkpoint=f"studies/.hpod/trials/{name}/{number:05d}/ckpt.pt")  # fmt: skip
        if number == 11:
            await store.record_event(EventLevel.WARNING, f"trial {name}#{number}: ignored a line "
                                     "on the metrics pipe that is not JSON: 'Epoch 3/27 ━━━━'",
                                     study_id=study.id, trial_id=trial.id)  # fmt: skip
    if running == 0:
        await store.update_study(study.id, state=StudyState.COMPLETE)


def write_logs(db: Path, study: str, number: int, points: list[MetricPoint]) -> None:
    folder = trial_log_dir(db, study, number)
    folder.mkdir(parents=True, exist_ok=True)
    lines = [f"epoch {p.step:3d}  val_loss {p.value:.4f}" for p in points if p.name == "val_loss"]
    (folder / "stdout.log").write_text("loading CIFAR-10 (50000 train, 10000 val)\n"
                                       + "\n".join(lines) + "\n")  # fmt: skip
    (folder / "stderr.log").write_text("UserWarning: TF32 is enabled for matmuls\n")


async def seed(clock: Clock) -> None:
    rng = random.Random(7)
    async with open_store(DB, clock=clock) as store:
        await seed_study(store, clock, rng, "mnist-mlp", 24, running=0)
        await seed_study(store, clock, rng, "cifar-resnet", 46, running=4)
        await store.create_study(
            "vit-sweep", "studies/vit-sweep.toml", spec=None, identity="",
            direction=Direction.MINIMIZE, metric="val_loss", state=StudyState.INVALID,
            error="space.lr: low must be below high (got low=0.1, high=0.001)\n"
                  "fix: swap the two bounds",
        )  # fmt: skip
        await store.record_event(EventLevel.ERROR, "vit-sweep.toml: space.lr: low must be below "
                                 "high (got low=0.1, high=0.001)")  # fmt: skip
        clock.now += 30


async def wait(pilot: Any, predicate: Callable[[], Any], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what}")
        await pilot.pause(0.05)


async def shoot(out: Path, size: tuple[int, int], clock: Clock) -> list[Path]:
    app = HpodApp(DB, clock=clock, poll_interval=0.05)
    app.animation_level = "none"
    saved: list[Path] = []

    async def save(name: str) -> None:
        await pilot.pause()
        app.save_screenshot(f"{name}.svg", str(out))
        saved.append(out / f"{name}.svg")

    # As a served database looks: the lock a daemon would hold, held here.
    with DaemonLock(DB):
        async with app.run_test(size=size) as pilot:
            await wait(pilot, lambda: app.screen.table.row_count == 3, "the studies")
            await pilot.press("down")  # cifar-resnet, the running one
            await save("studies")
            await pilot.press("enter")
            await wait(pilot, lambda: isinstance(app.screen, StudyScreen), "the study")
            study = app.screen
            await wait(pilot, lambda: study.table.total == 46 and not study._loading, "its trials")
            # Mark two finished trials (found with the filter) and go back to the newest running
            # one: three learning curves to compare.
            await pilot.press("slash", *"complete", "enter", "space", "down", "space")
            await pilot.press("slash", "escape", "home")
            await wait(pilot, lambda: len(study._curves) >= 3, "the curves")
            await save("study")
            await pilot.press("question_mark")
            await save("help")
            await pilot.press("escape", "g", "g")  # the params chart: what mattered so far
            chart = study.query_one("#params-chart", Chart)
            await wait(pilot, lambda: "at step" in chart.plot_data.title
                       and "explains" in chart.plot_data.title, "the importance at a rung")
            await save("study-params")
            await pilot.press("up", "up", "enter")  # the second newest, running
            await wait(pilot, lambda: isinstance(app.screen, TrialScreen), "the trial")
            trial = app.screen
            await wait(pilot, lambda: "val_loss" in trial._points, "its metrics")
            await save("trial")
            await pilot.press("g")
            await save("trial-metrics")
            await pilot.press("e")
            await wait(pilot, lambda: app.screen.table.row_count >= 5, "the events")
            await save("events")
        return saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="120x36", help="columns x rows (default 120x36)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "images")
    args = parser.parse_args()
    columns, rows = (int(v) for v in args.size.lower().split("x"))
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    os.environ["TZ"] = "UTC"
    time.tzset()
    with tempfile.TemporaryDirectory() as work:
        os.chdir(work)
        clock = Clock()
        asyncio.run(seed(clock))
        for path in asyncio.run(shoot(out, (columns, rows), clock)):
            print(path)


if __name__ == "__main__":
    main()
