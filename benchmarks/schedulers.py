"""Early-stopping schedulers on synthetic learning curves, in the virtual-clock simulator.

    .venv/bin/python benchmarks/schedulers.py [--seeds 10] [--workers 4] [--within 0.05]

Two families of 81-epoch loss curves (hpod.schedule.curves: exponential decay with random
asymptotes and rates; power laws whose final value is independent of their speed, plus noise),
config-dependent epoch cost (log-uniform over a factor e^1 either way, mean about 1.18 s),
0.25 s to start or resume a trial (process start, checkpoint load), 4 workers.

Table A, same configurations: every method sees the same 143 configurations in the same order
(one full Hyperband round for eta = 3, R = 81); fifo trains them all. Columns, medians over
seeds: steps trained and virtual time to finish as ratios to fifo; virtual time until the best
fully-trained value is within `--within` of fifo's final best, as a ratio to fifo's time to get
there ("never" counts the seeds where it did not); the final best's excess over fifo's (the
best of the pool); and random search at the same budget: fifo over the same configurations cut
at the method's total time, minus the method's best (> 0: the method is better).

Table B, same budget: each method draws configurations from the same endless stream until a
budget of 30 full-length trainings of worker time is spent. Best fully-trained value at 25, 50
and 100 % of the budget, and the time to reach random search's (fifo's) final best as a ratio
to random search's own time.
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable

from hpod import make_scheduler
from hpod.schedule.curves import exp_decay_curves, power_law_curves
from hpod.schedule.simulate import Curve, SimulationResult, simulate

R = 81
METHODS: dict[str, dict[str, object]] = {
    "fifo": {},
    "sh": {"max_resource": R},
    "hyperband": {"max_resource": R},
    "asha (stop)": {"max_resource": R},
    "asha (pause)": {"max_resource": R, "mode": "pause"},
    "async-hyperband": {"max_resource": R},
    "median": {"max_resource": R},
}
FAMILIES: dict[str, Callable[[int, int], list[Curve]]] = {
    "exp-decay": lambda n, seed: exp_decay_curves(n, n_steps=R, seed=seed, cost_spread=1.0),
    "power-law, crossing, noisy": lambda n, seed: power_law_curves(
        n, n_steps=R, seed=seed, noise=0.01, cost_spread=1.0
    ),
}


LAUNCH_SECONDS = 0.25  # paid at every start and resume: about a fifth of a mean epoch


def run(
    method: str,
    curves: list[Curve],
    workers: int,
    max_seconds: float | None = None,
    max_trials: int | None = None,
) -> SimulationResult:
    scheduler = make_scheduler(method.split(" ")[0], **METHODS[method])
    return simulate(
        scheduler,
        curves,
        workers=workers,
        max_seconds=max_seconds,
        max_trials=max_trials,
        launch_seconds=LAUNCH_SECONDS,
    )


def fmt(x: float | None, digits: int = 3) -> str:
    return "never" if x is None else f"{x:.{digits}f}"


def median_or_none(xs: list[float | None]) -> tuple[float | None, int]:
    got = [x for x in xs if x is not None]
    return (statistics.median(got) if got else None), len(xs) - len(got)


def table_a(family: str, seeds: int, workers: int, within: float) -> list[str]:
    rows: dict[str, dict[str, list[float | None]]] = {m: {} for m in METHODS}
    for seed in range(seeds):
        curves = FAMILIES[family](143, seed)
        fifo = run("fifo", curves, workers)
        assert fifo.best is not None
        target = fifo.best + within * abs(fifo.best)
        t_fifo = fifo.time_to_reach(target)
        assert t_fifo is not None
        for method in METHODS:
            res = fifo if method == "fifo" else run(method, curves, workers)
            t = res.time_to_reach(target)
            random_same = run("fifo", curves, workers, max_seconds=res.total_time).best
            cols = {
                "steps": res.total_steps / fifo.total_steps,
                "time": res.total_time / fifo.total_time,
                "to_target": None if t is None else t / t_fifo,
                "excess": None if res.best is None else res.best - fifo.best,
                "vs_random": None if res.best is None or random_same is None
                else random_same - res.best,
            }
            for key, value in cols.items():
                rows[method].setdefault(key, []).append(value)
    out = [
        f"**A. {family}: 143 configurations, {workers} workers, {seeds} seeds (medians)**",
        "",
        f"| method | steps / fifo | time / fifo | time to within {within:.0%} of best / fifo "
        "| final best − fifo's best | random search at same time − method's best |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for method, cols in rows.items():
        to_target, never = median_or_none(cols["to_target"])
        never_note = f" ({never} never)" if never else ""
        excess, _ = median_or_none(cols["excess"])
        vs_random, missing = median_or_none(cols["vs_random"])
        out.append(
            f"| {method} | {fmt(statistics.median(cols['steps']))} "  # type: ignore[arg-type]
            f"| {fmt(statistics.median(cols['time']))} "  # type: ignore[arg-type]
            f"| {fmt(to_target)}{never_note} | {fmt(excess, 4)} | {fmt(vs_random, 4)}"
            f"{f' ({missing} n/a)' if missing else ''} |"
        )
    return out


def table_b(family: str, seeds: int, workers: int) -> list[str]:
    fractions = (0.25, 0.5, 1.0)
    rows: dict[str, dict[str, list[float | None]]] = {m: {} for m in METHODS}
    for seed in range(seeds):
        pool = FAMILIES[family](3000, 1000 + seed)
        mean_cost = statistics.fmean(c.seconds_per_step for c in pool[:200])
        horizon = 30 * R * mean_cost / workers  # 30 full trainings of worker time
        runs = {
            m: run(m, pool, workers, max_seconds=horizon, max_trials=len(pool)) for m in METHODS
        }
        random_best = runs["fifo"].best
        t_random = runs["fifo"].time_to_reach(random_best) if random_best is not None else None
        for method, res in runs.items():
            for f in fractions:
                # No fully-trained trial yet ranks worst of all: math.inf, not a skipped seed.
                best = res.best_at(horizon * f)
                rows[method].setdefault(f"{f:.0%}", []).append(math.inf if best is None else best)
            t = None if random_best is None else res.time_to_reach(random_best)
            ratio = None if t is None or t_random is None else t / t_random
            rows[method].setdefault("ratio", []).append(ratio)
            rows[method].setdefault("steps", []).append(res.total_steps)
    out = [
        f"**B. {family}: budget of 30 full trainings of worker time, {workers} workers, "
        f"{seeds} seeds (medians)**",
        "",
        "| method | best at 25 % | best at 50 % | best at 100 % "
        "| time to random search's final best / random search's | steps trained |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for method, cols in rows.items():
        cells = []
        for f in fractions:
            value = statistics.median(cols[f"{f:.0%}"])  # type: ignore[type-var]
            cells.append("none yet" if value == math.inf else fmt(value, 4))
        ratio, never = median_or_none(cols["ratio"])
        steps = statistics.median(cols["steps"])  # type: ignore[type-var]
        out.append(
            f"| {method} | {' | '.join(cells)} | {fmt(ratio, 2)}"
            f"{f' ({never} never)' if never else ''} | {steps:.0f} |"
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--within", type=float, default=0.05, help="relative, e.g. 0.05")
    args = parser.parse_args()
    started = time.perf_counter()
    for family in FAMILIES:
        print("\n".join(table_a(family, args.seeds, args.workers, args.within)), end="\n\n")
        print("\n".join(table_b(family, args.seeds, args.workers)), end="\n\n")
    print(f"({time.perf_counter() - started:.1f} s of real time)")


if __name__ == "__main__":
    main()
