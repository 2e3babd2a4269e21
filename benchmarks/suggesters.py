"""Benchmark hpod's suggesters against Optuna and scikit-optimize (issue 3, algorithms.md 4).

Regret: each (function, mode, method) runs --seeds seeds; the table gives the median and IQR of the
final simple regret (best value found - f*), the ratio of hpod's median to the best peer's, and
p(worse): a one-sided Mann-Whitney test of hpod's regrets being larger than the best peer's.
Modes: "seq" (ask, tell, ask, ...) and "par4" (4 workers: ask 4, then tell the oldest and ask
again, so every ask sees 3 pending points).
Speed: mean seconds per suggest (kernel refits included) with 50/100/500 observations on Hartmann-6, hpod-gp vs Optuna's
GPSampler (warm state: the timed calls follow a few untimed ones).

    python benchmarks/suggesters.py                 # everything (hours on 2 cores)
    python benchmarks/suggesters.py --quick         # smoke run, < 1 minute
    python benchmarks/suggesters.py --functions branin,mixed --seeds 5 --methods hpod-gp,optuna-tpe
    python benchmarks/suggesters.py --seeds 30 --first-seed 30 --methods hpod-gp   # fresh seeds
    python benchmarks/suggesters.py --seeds 100 --methods hpod-gp --timing "" --runs-out runs.jsonl

Peers come from the `bench` extra: pip install -e .[bench] (optuna's GPSampler also needs torch).
"""

from __future__ import annotations

import os

# Single-threaded numerical libraries everywhere (set before numpy/torch load): runs are spread
# over processes instead, and optuna's GPSampler docs ask for OMP_NUM_THREADS=1.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import concurrent.futures  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections import deque  # noqa: E402
from collections.abc import Mapping  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from functions import Problem, problems  # noqa: E402

HPOD_METHODS = ("hpod-gp", "hpod-tpe", "hpod-random")
PEER_METHODS = ("optuna-gp", "optuna-tpe", "skopt-gp", "random")
ALL_METHODS = HPOD_METHODS[:2] + PEER_METHODS
MODES = ("seq", "par4")


# -- adapters: ask(pending params) -> (handle, params); tell(handle, value) -------------------------


class HpodAdapter:
    def __init__(self, kind: str, problem: Problem, seed: int, **options: Any) -> None:
        from hpod.space import Space
        from hpod.suggest import make_suggester

        self.suggester = make_suggester(kind, Space.from_dict(problem.space), seed=seed, **options)

    def ask(self, pending: list[dict[str, Any]]) -> tuple[Any, dict[str, Any]]:
        params = self.suggester.suggest(pending)
        return params, params

    def tell(self, handle: Any, value: float) -> None:
        self.suggester.observe(handle, value)


def _optuna_distributions(space: Mapping[str, Any]) -> dict[str, Any]:
    import optuna

    out: dict[str, Any] = {}
    for name, spec in space.items():
        if spec["type"] == "float":
            out[name] = optuna.distributions.FloatDistribution(spec["low"], spec["high"],
                                                               log=spec.get("log", False))
        elif spec["type"] == "int":
            out[name] = optuna.distributions.IntDistribution(spec["low"], spec["high"],
                                                             log=spec.get("log", False))
        else:
            out[name] = optuna.distributions.CategoricalDistribution(spec["choices"])
    return out


class OptunaAdapter:
    def __init__(self, sampler: str, problem: Problem, seed: int) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        if sampler == "gp":
            s = optuna.samplers.GPSampler(seed=seed)
        else:
            s = optuna.samplers.TPESampler(seed=seed, multivariate=True, constant_liar=True)
        self.study = optuna.create_study(sampler=s)
        self.dists = _optuna_distributions(problem.space)

    def ask(self, pending: list[dict[str, Any]]) -> tuple[Any, dict[str, Any]]:
        trial = self.study.ask(self.dists)  # pending trials stay RUNNING in the study
        return trial, dict(trial.params)

    def tell(self, handle: Any, value: float) -> None:
        self.study.tell(handle, value)


class SkoptAdapter:
    """gp_minimize's defaults (GP with gaussian noise, gp_hedge, 10 random points) through the
    Optimizer ask/tell API; pending points are fed to a copy as constant lies (skopt's cl_min)."""

    def __init__(self, problem: Problem, seed: int) -> None:
        from skopt import Optimizer
        from skopt.space import Categorical, Integer, Real
        from skopt.utils import cook_estimator

        dims, self.names = [], list(problem.space)
        for spec in problem.space.values():
            prior = "log-uniform" if spec.get("log") else "uniform"
            if spec["type"] == "float":
                dims.append(Real(spec["low"], spec["high"], prior=prior))
            elif spec["type"] == "int":
                dims.append(Integer(spec["low"], spec["high"], prior=prior))
            else:
                dims.append(Categorical(spec["choices"]))
        has_cat = any(s["type"] == "categorical" for s in problem.space.values())
        rng = np.random.RandomState(seed)
        from skopt.space import Space as SkSpace

        est = cook_estimator("GP", space=SkSpace(dims), random_state=rng.randint(0, 2**31 - 1),
                             noise="gaussian")
        self.opt = Optimizer(dims, est, n_initial_points=10, acq_func="gp_hedge",
                             acq_optimizer="sampling" if has_cat else "lbfgs", random_state=rng,
                             acq_optimizer_kwargs={"n_points": 10000, "n_restarts_optimizer": 5},
                             acq_func_kwargs={"xi": 0.01, "kappa": 1.96})
        self._rng = rng

    def ask(self, pending: list[dict[str, Any]]) -> tuple[Any, dict[str, Any]]:
        if pending and self.opt.yi:
            o = self.opt.copy(random_state=self._rng.randint(0, 2**31 - 1))
            xs = [[p[n] for n in self.names] for p in pending]
            o.tell(xs, [min(self.opt.yi)] * len(xs))
            x = o.ask()
        elif pending:
            x = self.opt.space.rvs(random_state=self._rng)[0]
        else:
            x = self.opt.ask()
        x = [v.item() if hasattr(v, "item") else v for v in x]
        return x, dict(zip(self.names, x))

    def tell(self, handle: Any, value: float) -> None:
        self.opt.tell(list(handle), value)


def make_adapter(method: str, problem: Problem, seed: int,
                 hpod_options: Mapping[str, Any] | None = None) -> Any:
    if method == "hpod-gp":
        return HpodAdapter("gp", problem, seed, **(hpod_options or {}))
    if method == "hpod-tpe":
        return HpodAdapter("tpe", problem, seed)
    if method in ("hpod-random", "random"):
        return HpodAdapter("random", problem, seed)
    if method == "optuna-gp":
        return OptunaAdapter("gp", problem, seed)
    if method == "optuna-tpe":
        return OptunaAdapter("tpe", problem, seed)
    if method == "skopt-gp":
        return SkoptAdapter(problem, seed)
    raise ValueError(f"unknown method {method!r}")


# -- runs -------------------------------------------------------------------------------------------


def run_one(problem_name: str, method: str, mode: str, seed: int, budget: int | None = None,
            hpod_options: Mapping[str, Any] | None = None) -> tuple[str, str, str, int, float, float]:
    """(function, method, mode, seed, final regret, mean seconds per ask)."""
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    problem = problems()[problem_name]
    budget = budget or problem.budget
    adapter = make_adapter(method, problem, seed, hpod_options)
    workers = 1 if mode == "seq" else 4
    outstanding: deque[tuple[Any, dict[str, Any]]] = deque()
    best, asked, ask_time = math.inf, 0, 0.0
    while asked < budget or outstanding:
        if asked < budget and len(outstanding) < workers:
            t0 = time.perf_counter()
            handle, params = adapter.ask([p for _, p in outstanding])
            ask_time += time.perf_counter() - t0
            outstanding.append((handle, params))
            asked += 1
            continue
        handle, params = outstanding.popleft()
        value = problem.objective(params)
        best = min(best, value)
        adapter.tell(handle, value)
    return problem_name, method, mode, seed, best - problem.f_star, ask_time / budget


def time_suggest(method: str, n: int, calls: int,
                 hpod_options: Mapping[str, Any] | None = None) -> list[float]:
    """Seconds per suggest on Hartmann-6 after n observations (random points), warm state."""
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    problem = problems()["hartmann6"]
    rng = np.random.default_rng(n)
    names = list(problem.space)
    history = [dict(zip(names, map(float, rng.random(len(names))))) for _ in range(n)]
    adapter = make_adapter(method, problem, 0, hpod_options)
    warm = 2 if method.startswith("hpod") else 0
    if method == "optuna-gp":
        import optuna

        dists = _optuna_distributions(problem.space)
        adapter.study.add_trials([optuna.trial.create_trial(params=p, distributions=dists,
                                                            value=problem.objective(p))
                                  for p in history[: n - warm]])
    else:
        for p in history[: n - warm]:
            adapter.tell(p, problem.objective(p))
    out = []
    for i in range(warm + calls):
        t0 = time.perf_counter()
        handle, params = adapter.ask([])
        dt = time.perf_counter() - t0
        adapter.tell(handle, problem.objective(params))
        if i >= warm:
            out.append(dt)
    return out


# -- report -----------------------------------------------------------------------------------------


def regret_table(results: list[tuple[str, str, str, int, float, float]], methods: list[str]) -> str:
    lines = []
    keys = sorted({(f, m) for f, _, m, *_ in results}, key=lambda k: (k[0], MODES.index(k[1])))
    lines.append(f"{'function':<12} {'mode':<5} {'method':<12} {'median':>10} {'q25':>10} "
                 f"{'q75':>10} {'s/ask':>8} {'vs best peer':>13} {'p(worse)':>9}")
    for func, mode in keys:
        rows = {m: [r for r in results if r[0] == func and r[2] == mode and r[1] == m] for m in methods}
        med = {m: float(np.median([r[4] for r in rs])) for m, rs in rows.items() if rs}
        peers = [med[m] for m in PEER_METHODS if m in med]
        best_peer = min(peers) if peers else math.nan
        best_peer_runs = next(([r[4] for r in rows[m]] for m in PEER_METHODS
                               if m in med and med[m] == best_peer), [])
        for m, rs in rows.items():
            if not rs:
                continue
            reg = np.array([r[4] for r in rs])
            q25, q75 = np.percentile(reg, [25, 75])
            ratio = med[m] / best_peer if best_peer > 0 else (1.0 if med[m] <= best_peer else math.inf)
            tag = ""
            if m in HPOD_METHODS:
                tag = f"{ratio:13.2f} {_p_worse(list(reg), best_peer_runs):9.2f}"
            lines.append(f"{func:<12} {mode:<5} {m:<12} {med[m]:10.4g} {q25:10.4g} {q75:10.4g} "
                         f"{np.mean([r[5] for r in rs]):8.3f} {tag}")
        lines.append("")
    return "\n".join(lines)


def _p_worse(ours: list[float], theirs: list[float]) -> float:
    """One-sided Mann-Whitney U: the p-value of "our regrets are larger than the best peer's".
    With 10 seeds a median ratio of 1.2 is often noise; p < 0.05 is a real loss."""
    if not ours or not theirs:
        return math.nan
    from scipy.stats import mannwhitneyu

    return float(mannwhitneyu(ours, theirs, alternative="greater").pvalue)


def parallel_penalty(results: list[tuple[str, str, str, int, float, float]]) -> str:
    lines = ["par4 / seq median regret (goal for hpod-gp: <= 1.5)"]
    for func in sorted({r[0] for r in results}):
        for m in sorted({r[1] for r in results}):
            seq = [r[4] for r in results if r[0] == func and r[1] == m and r[2] == "seq"]
            par = [r[4] for r in results if r[0] == func and r[1] == m and r[2] == "par4"]
            if seq and par:
                s, p = float(np.median(seq)), float(np.median(par))
                lines.append(f"  {func:<12} {m:<12} {p / s if s > 0 else math.inf:8.2f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--first-seed", type=int, default=0,
                    help="seeds run are first-seed .. first-seed + seeds - 1 (repeat a measurement "
                         "on fresh seeds)")
    ap.add_argument("--functions", default=",".join(problems()))
    ap.add_argument("--methods", default=",".join(ALL_METHODS))
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--timing", default="50,100,500", help="observation counts for the speed table ('' to skip)")
    ap.add_argument("--timing-calls", type=int, default=20,
                    help="timed suggest calls per observation count (Optuna: half at 500)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--budget", type=int, default=None, help="override every function's budget")
    ap.add_argument("--quick", action="store_true", help="smoke run: branin, 2 seeds, budget 20, hpod + random")
    ap.add_argument("--hpod-options", default="{}", help="JSON options for hpod-gp (A/B runs)")
    ap.add_argument("--peer-cache", default=None,
                    help="JSON-lines file of peer runs: reused when present, appended to otherwise "
                         "(peers do not change between hpod iterations; hpod runs are never cached)")
    ap.add_argument("--runs-out", default=None,
                    help="write every run (function, method, mode, seed, final regret, s/ask) as a "
                         "JSON line to this file, for per-seed analyses the medians hide")
    args = ap.parse_args(argv)
    if args.quick:
        args.seeds, args.functions, args.budget = 2, "branin", 20
        args.methods, args.timing, args.timing_calls = "hpod-gp,hpod-tpe,random", "50", 2
    cache = _load_cache(args.peer_cache, args.budget)

    def tasks_of(m: str) -> list[tuple[str, str, str, int]]:
        return [(f, m, mode, s) for f in args.functions.split(",") for mode in args.modes.split(",")
                for s in range(args.first_seed, args.first_seed + args.seeds)]

    # A peer that cannot run here (Optuna's GPSampler needs torch) still belongs in the table
    # when the cache holds every run it needs: without it "vs best peer" compares with the
    # wrong peer.
    methods = [m for m in args.methods.split(",") if m]
    cached = [m for m in methods if all(t in cache for t in tasks_of(m))]
    runnable = _available(methods)
    for m in sorted(set(cached) - set(runnable)):
        print(f"# NOTE: {m} is in the table from the peer cache (it cannot run here: no timing)",
              flush=True)
    methods = [m for m in methods if m in cached or m in runnable]
    tasks = [t for m in methods for t in tasks_of(m)]
    hpod_options = json.loads(args.hpod_options)
    results = [cache[t] for t in tasks if t in cache]
    todo = [t for t in tasks if t not in cache]
    t_start = time.time()
    with concurrent.futures.ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(run_one, *t, args.budget, hpod_options) for t in todo]
        for i, fut in enumerate(concurrent.futures.as_completed(futures), 1):
            r = fut.result()
            results.append(r)
            if args.peer_cache and not r[1].startswith("hpod"):
                with open(args.peer_cache, "a") as fh:
                    fh.write(json.dumps({"run": list(r), "budget": args.budget}) + "\n")
            if i % 20 == 0 or i == len(futures):
                print(f"# {i}/{len(futures)} runs done ({time.time() - t_start:.0f} s)", file=sys.stderr, flush=True)
    if args.runs_out:
        with open(args.runs_out, "w") as fh:
            for r in sorted(results, key=lambda r: r[:4]):
                fh.write(json.dumps(list(r)) + "\n")
    if hpod_options:
        print(f"# hpod-gp options: {hpod_options}")
    print(f"# seeds={args.first_seed}..{args.first_seed + args.seeds - 1} jobs={args.jobs} wall={time.time() - t_start:.0f}s; {_versions()}")
    print(regret_table(results, methods))
    print(parallel_penalty(results))
    if args.timing:
        # The mean, not the median: hpod refits its kernel only every max(1, n // 30) calls, so a
        # median of a few calls would leave the refits out and flatter it.
        print(f"\nseconds per suggest on Hartmann-6 (mean of {args.timing_calls} timed calls, "
              "refits included; one process, 1 thread)")
        print(f"{'n obs':>6} {'hpod-gp':>10} {'optuna-gp':>10} {'ratio':>8}")
        for n in (int(x) for x in args.timing.split(",")):
            ours = float(np.mean(time_suggest("hpod-gp", n, args.timing_calls, hpod_options)))
            theirs = math.nan
            if "optuna-gp" in methods and "optuna-gp" in runnable:  # timed live, never cached
                calls = args.timing_calls if n < 500 else max(2, args.timing_calls // 2)
                theirs = float(np.mean(time_suggest("optuna-gp", n, calls)))
            print(f"{n:>6} {ours:10.4f} {theirs:10.4f} {theirs / ours:8.1f}", flush=True)
    return 0


def _load_cache(path: str | None, budget: int | None) -> dict[tuple[str, str, str, int], tuple]:
    out: dict[tuple[str, str, str, int], tuple] = {}
    if path and os.path.exists(path):
        with open(path) as fh:
            for line in fh:
                rec = json.loads(line)
                if rec.get("budget") == budget:
                    r = tuple(rec["run"])
                    out[(r[0], r[1], r[2], r[3])] = r
    return out


def _available(methods: list[str]) -> list[str]:
    out = []
    for m in methods:
        module = {"optuna-gp": "torch", "optuna-tpe": "optuna", "skopt-gp": "skopt"}.get(m)
        if module is not None:
            try:
                __import__(module)
                if m == "optuna-gp":
                    __import__("optuna")
                if m == "skopt-gp":
                    _check_skopt()
            except Exception as e:  # noqa: BLE001 - any import failure means "skip this peer"
                print(f"# NOTE: skipping {m}: {type(e).__name__}: {e}", flush=True)
                continue
        out.append(m)
    return out


def _check_skopt() -> None:
    """scikit-optimize is unmaintained; fail early (and skip it) if it breaks on this numpy."""
    from skopt import Optimizer

    o = Optimizer([(0.0, 1.0)], n_initial_points=2, random_state=0)
    for _ in range(3):
        x = o.ask()
        o.tell(x, float(x[0] ** 2))


def _versions() -> str:
    import scipy

    parts = [f"numpy {np.__version__}", f"scipy {scipy.__version__}"]
    for mod in ("optuna", "torch", "skopt"):
        try:
            parts.append(f"{mod} {__import__(mod).__version__}")
        except Exception:  # noqa: BLE001
            parts.append(f"{mod} missing")
    return ", ".join(parts)


if __name__ == "__main__":
    raise SystemExit(main())
