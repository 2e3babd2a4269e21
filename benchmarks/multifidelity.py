"""Multi-fidelity search on synthetic learning curves: hpod's schedulers + suggesters vs Optuna's
pruners, all on one virtual clock.

    .venv/bin/python benchmarks/multifidelity.py [--seeds 10] [--workers 4] [--budget 30]

The curves are hpod's own synthetic ones (hpod.schedule.landscape) over a 5-parameter mixed
space: each configuration's final loss is a smooth function of its params, good configurations
tend to learn slowly (curves cross: rung-1 ranks are poor predictors of final ranks), every
report has noise (sd 0.01), and an epoch costs from e^-1 to e^1 times the mean depending on the
configuration. A full trial is R = 27 epochs; rungs at 1, 3, 9 (eta = 3). 4 workers; starting
a trial costs 0.25 s (an epoch averages about 1 s). The budget is 30 full-length trials of
worker time: 30 * 27 * mean epoch cost / 4 seconds of virtual time, after which everything
is cut.

hpod's methods run through `hpod.simulation.simulate_study`: the daemon's StudyPolicy,
suggesters and schedulers, which tell the suggester every value that enters a rung as it
happens (hpod.rung_feed). The GP's rows use its default under a scheduler, the joint model
(one GP over params and resource); "level" rows the single-level GP (fidelity = "level").
hpod's studies get the budget as `hours`, as a study file on a night's budget would, so the GP
weighs each point by its predicted cost (EI per second, hpod.suggest.gp.cost).
"min_resource 3" rows judge from
epoch 3 (rungs at 3 and 9), the first level whose values rank these curves well, as `hpod
simulate` advises; Optuna's pruners get the same rows for a fair comparison. Optuna's run
ask/tell on the same clock: report every epoch, ask `should_prune()`, tell PRUNED or the final
value.

"Best" is the true (noise-free) final loss of the trial with the best reported final value
among the trials complete by then (what a user would pick), median over seeds; the seed sets
the landscape and every method's randomness. Ratios divide by the best peer's value at 100 % on
the same seed, median over seeds (peers: Optuna's four combinations and random search without
stopping; the best is the one with the lowest median at 100 %). Optuna's TPE runs with
multivariate=True and constant_liar=True, as the research notes' baseline table says.
"Reaches" turns the goal (the best peer's value at 100 % reached by half the budget) into a
speed: the share of the budget after which a method's incumbent is first as good as the best
peer's final one on the same seed, median over seeds.
"""

from __future__ import annotations

import argparse
import heapq
import logging
import statistics
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from hpod.schedule.landscape import SyntheticCurves
from hpod.simulation import simulate_study
from hpod.spec import StudySpec, parse_study
from hpod.store.records import TrialState

R = 27
ETA = 3
LAUNCH_SECONDS = 0.25
FRACTIONS = (0.25, 0.5, 1.0)
SPACE: dict[str, Any] = {
    "lr": {"type": "float", "low": 1e-5, "high": 1e-1, "log": True},
    "dropout": {"type": "float", "low": 0.0, "high": 0.5},
    "units": {"type": "int", "low": 16, "high": 512, "log": True},
    "batch": {"type": "categorical", "choices": [16, 32, 64, 128]},
    "act": {"type": "categorical", "choices": ["relu", "tanh", "gelu"]},
}


# Under a scheduler the GP's default is the joint model over (params, resource) (max_resource:
# the scheduler's); LEVEL is the single-level GP, the default before 2026-11-24.
LEVEL = {"fidelity": "level"}
FIRST_RUNG_3 = {"min_resource": 3}  # what `hpod simulate` advises on these curves
# name -> (suggester, scheduler, suggester options, scheduler options beyond the shared rungs)
HPOD: dict[str, tuple[str, str, dict[str, Any], dict[str, Any]]] = {
    "hpod asha + gp": ("gp", "asha", {}, {}),
    "hpod asha + gp, level": ("gp", "asha", LEVEL, {}),
    "hpod asha + gp, min_resource 3": ("gp", "asha", {}, FIRST_RUNG_3),
    "hpod asha + gp, level, min_resource 3": ("gp", "asha", LEVEL, FIRST_RUNG_3),
    "hpod async-hyperband + gp": ("gp", "async-hyperband", {}, {}),
    "hpod async-hyperband + gp, level": ("gp", "async-hyperband", LEVEL, {}),
    "hpod asha + tpe": ("tpe", "asha", {}, {}),
    "hpod async-hyperband + tpe": ("tpe", "async-hyperband", {}, {}),
    "hpod asha + random": ("random", "asha", {}, {}),
    "hpod hyperband + random": ("random", "hyperband", {}, {}),
    "hpod gp, no stopping": ("gp", "fifo", {}, {}),
    "random search, no stopping": ("random", "fifo", {}, {}),
}
OPTUNA = ("optuna SH + random", "optuna SH + TPE", "optuna hyperband + random",
          "optuna hyperband + TPE", "optuna SH + TPE, min_resource 3",
          "optuna hyperband + TPE, min_resource 3")
PEERS = ("random search, no stopping", *OPTUNA)
GOAL = "hpod asha + gp"

Completed = list[tuple[float, float, float]]  # (virtual time, reported final, true final)


def study_spec(suggester: str, scheduler: str, seed: int, workers: int,
               options: dict[str, Any] | None = None,
               scheduler_options: dict[str, Any] | None = None,
               hours: float | None = None) -> StudySpec:
    table: dict[str, Any] = {"kind": scheduler}
    if scheduler != "fifo":
        table.update({"min_resource": 1, "max_resource": R, "reduction_factor": ETA,
                      **(scheduler_options or {})})
    return parse_study({
        "name": "multifidelity", "command": ["python", "-c", "pass"],
        "objective": {"metric": "loss", "direction": "minimize"},
        "budget": {"trials": 10**6} if hours is None else {"hours": hours},
        "parallel": workers, "seed": seed,
        "space": {**SPACE, "epochs": R}, "suggester": {"kind": suggester, **(options or {})}, "scheduler": table,
    }, path=Path("multifidelity.toml"))


def run_hpod(method: str, landscape: SyntheticCurves, seed: int, workers: int,
             horizon: float) -> Completed:
    suggester, scheduler, options, scheduler_options = HPOD[method]
    # The budget is the workers' time, as a study file would give it: `hours`.
    spec = study_spec(suggester, scheduler, seed, workers, options, scheduler_options,
                      hours=horizon / 3600.0)
    sim = simulate_study(spec, curves=landscape, seed=seed, max_seconds=horizon,
                         launch_seconds=LAUNCH_SECONDS, max_trials=10**6)
    done = [t for t in sim.result.trials if t.state is TrialState.COMPLETE]
    return [(t.ended_at or 0.0, t.last_value or 0.0, landscape.final(sim.params[t.trial_id]))
            for t in done]


def run_optuna(method: str, landscape: SyntheticCurves, seed: int, workers: int,
               horizon: float) -> Completed:
    import optuna

    # TPE as the research notes' baseline table configures it for parallel workers.
    sampler = (optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True)
               if "TPE" in method
               else optuna.samplers.RandomSampler(seed=seed))
    first_rung = 3 if method.endswith("min_resource 3") else 1
    pruner = (optuna.pruners.HyperbandPruner(min_resource=first_rung, max_resource=R,
                                             reduction_factor=ETA)
              if "hyperband" in method else
              optuna.pruners.SuccessiveHalvingPruner(min_resource=first_rung,
                                                     reduction_factor=ETA))
    # A fixed name: HyperbandPruner assigns brackets by hashing it with the trial number.
    study = optuna.create_study(study_name=f"multifidelity-{seed}", direction="minimize",
                                sampler=sampler, pruner=pruner)
    queue: list[tuple[float, int, Any, Any, dict[str, Any], int]] = []
    done: Completed = []
    seq = 0

    def start(now: float) -> None:
        nonlocal seq
        trial = study.ask()
        params = {
            "lr": trial.suggest_float("lr", 1e-5, 1e-1, log=True),
            "dropout": trial.suggest_float("dropout", 0.0, 0.5),
            "units": trial.suggest_int("units", 16, 512, log=True),
            "batch": trial.suggest_categorical("batch", [16, 32, 64, 128]),
            "act": trial.suggest_categorical("act", ["relu", "tanh", "gelu"]),
        }
        curve = landscape.curve(params)
        seq += 1
        heapq.heappush(queue, (now + LAUNCH_SECONDS + curve.seconds_per_step, seq, trial, curve,
                               params, 1))

    for _ in range(workers):
        start(0.0)
    while queue:
        now, _, trial, curve, params, step = heapq.heappop(queue)
        if now > horizon:
            break
        value = curve.values[step - 1]
        trial.report(value, step)
        if step == curve.n_steps:
            study.tell(trial, value)
            done.append((now, value, landscape.final(params)))
        elif trial.should_prune():
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            seq += 1
            heapq.heappush(queue, (now + curve.seconds_per_step, seq, trial, curve, params,
                                   step + 1))
            continue
        start(now)
    return done


def best_at(done: Completed, when: float) -> float:
    """True final loss of the best-reported complete trial by `when` (inf: none yet)."""
    ready = [(reported, true) for at, reported, true in done if at <= when]
    return min(ready)[1] if ready else float("inf")


def reached_at(done: Completed, target: float, horizon: float) -> float:
    """The fraction of the budget after which the incumbent (as best_at picks it) is first at
    least as good as `target`; inf if it never is."""
    incumbent = (float("inf"), float("inf"))
    for at, reported, true in sorted(done):
        if at > horizon:
            break
        incumbent = min(incumbent, (reported, true))
        if incumbent[1] <= target:
            return at / horizon
    return float("inf")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--first-seed", type=int, default=0,
                        help="seeds run are first-seed .. first-seed + seeds - 1")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--budget", type=float, default=30.0, help="full-length trials")
    parser.add_argument("--methods", default="",
                        help="semicolon-separated hpod methods to run (default: all); the peers "
                             "and the goal's method always run")
    args = parser.parse_args()
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    logging.getLogger("hpod").setLevel(logging.WARNING)
    chosen = [m.strip() for m in args.methods.split(";") if m.strip()]
    unknown = sorted(set(chosen) - set(HPOD))
    if unknown:
        parser.error(f"unknown methods {unknown}; known: {sorted(HPOD)}")
    wanted = {*chosen, *PEERS, GOAL} if chosen else {*HPOD, *OPTUNA}
    methods = [m for m in [*HPOD, *OPTUNA] if m in wanted]
    best: dict[str, dict[float, list[float]]] = {m: {f: [] for f in FRACTIONS} for m in methods}
    runs: dict[str, list[tuple[Completed, float]]] = {m: [] for m in methods}
    n_trials: dict[str, list[int]] = {m: [] for m in methods}
    seconds: dict[str, float] = {m: 0.0 for m in methods}
    started = time.perf_counter()
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        landscape = SyntheticCurves(study_spec("random", "fifo", seed, 1).space,
                                    max_resource=R, seed=seed, noise=0.01, cost_spread=1.0)
        rng = np.random.default_rng(10_000 + seed)
        sample = [landscape.curve(landscape.space.sample(rng)) for _ in range(2000)]
        mean_epoch = statistics.fmean(c.seconds_per_step for c in sample)
        horizon = args.budget * R * mean_epoch / args.workers
        for method in methods:
            clock = time.perf_counter()
            run = run_hpod if method in HPOD else run_optuna
            done = run(method, landscape, seed, args.workers, horizon)
            seconds[method] += time.perf_counter() - clock
            n_trials[method].append(len(done))
            runs[method].append((done, horizon))
            for f in FRACTIONS:
                best[method][f].append(best_at(done, horizon * f))
        print(f"seed {seed} done ({time.perf_counter() - started:.0f} s)", flush=True)
    print("\n".join(table(best, runs, n_trials, seconds, args)))
    print(f"({time.perf_counter() - started:.0f} s of real time)")


def table(best: dict[str, dict[float, list[float]]],
          runs: dict[str, list[tuple[Completed, float]]], n_trials: dict[str, list[int]],
          seconds: dict[str, float], args: argparse.Namespace) -> list[str]:
    med = {m: {f: statistics.median(v) for f, v in cols.items()} for m, cols in best.items()}
    peer = min(PEERS, key=lambda m: med[m][1.0])
    ref = med[peer][1.0]
    out = [
        f"**{args.seeds} seeds, {args.workers} workers, budget {args.budget:g} full-length "
        f"trials of worker time; true final loss of the incumbent (median over seeds), and its "
        f"ratio to the best peer's at 100 % on the same seed (median; best peer: {peer}); "
        f"\"reaches\": the share of the budget after which the incumbent is first as good as "
        f"that peer's at 100 % on the same seed (median; \"no\": on fewer than half)**",
        "",
        "| method | 25 % | 50 % | 100 % | 25 % / peer | 50 % / peer | 100 % / peer "
        "| reaches | complete trials | real s |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for m in best:
        cells = [fmt(med[m][f]) for f in FRACTIONS]
        # Per seed (the landscapes' optima differ), then the median.
        ratios = [fmt(statistics.median(a / b for a, b in zip(best[m][f], best[peer][1.0])), 2)
                  for f in FRACTIONS]
        reached = statistics.median(reached_at(done, target, horizon) for (done, horizon), target
                                    in zip(runs[m], best[peer][1.0]))
        out.append(f"| {m} | {' | '.join(cells)} | {' | '.join(ratios)} "
                   f"| {'no' if reached == float('inf') else f'{reached:.0%}'} "
                   f"| {statistics.median(n_trials[m]):.0f} | {seconds[m]:.0f} |")
    goal = GOAL
    wins = sum(a <= b for a, b in zip(best[goal][0.5], best[peer][1.0]))
    out += ["", f"Goal: {goal} at 50 % = {fmt(med[goal][0.5])} vs best peer ({peer}) at 100 % "
            f"= {fmt(ref)}: {'met' if med[goal][0.5] <= ref else 'not met'} on the medians; "
            f"at least as good on {wins} of {args.seeds} seeds."]
    return out


def fmt(x: float, digits: int = 4) -> str:
    return "none yet" if x == float("inf") else f"{x:.{digits}f}"


if __name__ == "__main__":
    main()
