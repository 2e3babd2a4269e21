"""Parameter importance: hpod's GP Sobol indices against Optuna's fANOVA, on known answers.

    .venv/bin/python benchmarks/importance.py [--seeds 10] [--sizes 50,200]

Each function's true first-order indices are known in closed form (Ishigami, Sobol's G) or
computed by quasi-Monte Carlo on the function itself with 2**15 base points (Hartmann-6, the
example `quick`'s loss over its mixed space). Two rows add noise with the function's own
variance to every result (half of the results' variation is noise between runs); their true
shares are the function's. Each method then sees n results, drawn at random over the space or
proposed by an optimiser (Optuna's TPE, whose points crowd the optimum as a night's study
does), and says each parameter's share.

Optuna's fANOVA (`FanovaImportanceEvaluator`, its default: a random forest of 64 trees) returns
main-effect shares normalised to sum to 1, so both methods are compared on normalised
first-order shares: the error is the mean absolute difference from the true normalised shares,
in percentage points; "top" is how often the most important parameter is named first. The
table gives medians over seeds, the ratio hpod / fANOVA seed by seed (median; < 1: hpod closer),
and the median seconds per evaluation.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from functions import hartmann6  # noqa: E402

from hpod.importance import _sobol_indices, importance  # noqa: E402
from hpod.space import CategoricalParam, FloatParam, IntParam, Space  # noqa: E402
from hpod.suggest._lattice import Lattice  # noqa: E402


@dataclass(frozen=True)
class Function:
    name: str
    space: Space
    f: Callable[[Mapping[str, Any]], float]
    truth: np.ndarray | None = None  # normalised first-order shares, when known in closed form
    noise: float = 0.0  # standard deviation of the N(0, noise^2) added to each result


def _ishigami(p: Mapping[str, Any], a: float = 7.0, b: float = 0.1) -> float:
    return (math.sin(p["x1"]) + a * math.sin(p["x2"]) ** 2
            + b * p["x3"] ** 4 * math.sin(p["x1"]))


def _ishigami_truth(a: float = 7.0, b: float = 0.1) -> np.ndarray:
    v1 = 0.5 * (1 + b * math.pi ** 4 / 5) ** 2
    v2 = a ** 2 / 8
    s = np.array([v1, v2, 0.0])
    return s / s.sum()


_G_A = (0.0, 0.5, 3.0, 9.0, 99.0, 99.0)


def _g_function(p: Mapping[str, Any]) -> float:
    return float(np.prod([(abs(4 * p[f"x{i}"] - 2) + a) / (1 + a) for i, a in enumerate(_G_A)]))


def _g_truth() -> np.ndarray:
    v = np.array([1 / (3 * (1 + a) ** 2) for a in _G_A])
    return v / v.sum()


def _hartmann6(p: Mapping[str, Any]) -> float:
    return hartmann6(np.array([p[f"x{i}"] for i in range(6)]))


_ACT = {"gelu": 0.0, "relu": 0.02, "tanh": 0.06}


def _quick_loss(p: Mapping[str, Any]) -> float:
    """examples/quick/train.py's final loss after its 10 epochs, without the noise."""
    d_lr = math.log10(p["lr"] / 3e-3)
    d_units = math.log2(p["units"] / 128) / 2
    d_dropout = (p["dropout"] - 0.1) * 4
    floor = 0.05 + 0.1 * d_lr ** 2 + 0.05 * d_units ** 2 + 0.03 * d_dropout ** 2 + _ACT[p["act"]]
    rate = 0.1 + 0.15 * (math.log10(p["lr"]) + 5)
    return floor + (2.3 - floor) * math.exp(-rate * 10)


def functions() -> list[Function]:
    pi = math.pi
    unit6 = Space(tuple(FloatParam(f"x{i}", 0.0, 1.0) for i in range(6)))
    return [
        Function("ishigami", Space(tuple(FloatParam(f"x{i}", -pi, pi) for i in (1, 2, 3))),
                 _ishigami, _ishigami_truth()),
        Function("sobol-g6", unit6, _g_function, _g_truth()),
        Function("hartmann6", unit6, _hartmann6),
        # Noise with the function's own variance: half of every result's variation is noise
        # between runs, as on a small validation set. The true shares are those of the function.
        Function("sobol-g6 + noise", unit6, _g_function, _g_truth(), noise=0.76),
        Function("hartmann6 + noise", unit6, _hartmann6, noise=0.38),
        Function("quick (mixed)", Space((
            FloatParam("lr", 1e-5, 1e-1, log=True), FloatParam("dropout", 0.0, 0.5, step=0.1),
            IntParam("units", 16, 512, log=True),
            CategoricalParam("act", ("relu", "tanh", "gelu")))), _quick_loss),
    ]


def true_shares(fn: Function) -> np.ndarray:
    if fn.truth is not None:
        return fn.truth
    space = fn.space

    def surface(X: np.ndarray) -> np.ndarray:
        return np.array([fn.f(space.from_unit(x)) for x in X])

    first, _ = _sobol_indices(surface, Lattice(space), np.random.default_rng(12345), 1 << 15)
    return first / first.sum()


def _distributions(space: Space) -> dict[str, Any]:
    from optuna.distributions import (CategoricalDistribution, FloatDistribution,
                                      IntDistribution)

    out: dict[str, Any] = {}
    for p in space.params:
        if isinstance(p, CategoricalParam):
            out[p.name] = CategoricalDistribution(list(p.choices))
        elif isinstance(p, IntParam):
            out[p.name] = IntDistribution(p.low, p.high, log=p.log)
        else:
            out[p.name] = FloatDistribution(p.low, p.high, log=p.log, step=p.step)
    return out


def draw(fn: Function, n: int, seed: int, how: str) -> tuple[list[dict[str, Any]], list[float]]:
    """n results of `fn`: uniform over the space, or the trials of an Optuna TPE run."""
    noise = np.random.default_rng([seed, 1])

    def measure(p: Mapping[str, Any]) -> float:
        return fn.f(p) + (float(noise.normal(scale=fn.noise)) if fn.noise else 0.0)

    if how == "random":
        rng = np.random.default_rng(seed)
        points = [fn.space.sample(rng) for _ in range(n)]
        return points, [measure(p) for p in points]
    import optuna

    dists = _distributions(fn.space)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed))
    study.optimize(lambda t: measure({k: t._suggest(k, d) for k, d in dists.items()}),
                   n_trials=n)
    return [t.params for t in study.trials], [float(t.value) for t in study.trials]


def hpod_shares(fn: Function, points: list[dict[str, Any]], values: list[float]) -> np.ndarray:
    imp = importance(fn.space, points, values)
    by_name = {p.name: p.alone for p in imp.params}
    first = np.array([by_name[p.name] for p in fn.space.params])
    return first / first.sum() if first.sum() > 0 else first


def fanova_shares(fn: Function, points: list[dict[str, Any]], values: list[float],
                  seed: int) -> np.ndarray:
    import optuna
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances

    dists = _distributions(fn.space)
    study = optuna.create_study()
    study.add_trials([optuna.trial.create_trial(params=p, distributions=dists, value=v)
                      for p, v in zip(points, values)])
    got = get_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=seed),
                                normalize=True)
    return np.array([got[p.name] for p in fn.space.params])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--sizes", default="50,200", help="numbers of results, comma-separated")
    parser.add_argument("--data", default="random,tpe", help="random and/or tpe")
    parser.add_argument("--functions", default="",
                        help="only these functions, comma-separated (default: all)")
    args = parser.parse_args()
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sizes = [int(s) for s in args.sizes.split(",")]
    print("| function | results | data | hpod error | fANOVA error | hpod / fANOVA | "
          "hpod top | fANOVA top | hpod s | fANOVA s |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    chosen = set(filter(None, args.functions.split(",")))
    for fn in functions():
        if chosen and fn.name not in chosen:
            continue
        truth = true_shares(fn)
        for n in sizes:
            for how in args.data.split(","):
                errors: dict[str, list[float]] = {"hpod": [], "fanova": []}
                tops = {"hpod": 0, "fanova": 0}
                secs: dict[str, list[float]] = {"hpod": [], "fanova": []}
                ratios = []
                for seed in range(args.seeds):
                    points, values = draw(fn, n, seed, how)
                    for method in ("hpod", "fanova"):
                        start = time.perf_counter()
                        got = (hpod_shares(fn, points, values) if method == "hpod"
                               else fanova_shares(fn, points, values, seed))
                        secs[method].append(time.perf_counter() - start)
                        errors[method].append(100 * float(np.mean(np.abs(got - truth))))
                        tops[method] += int(np.argmax(got) == np.argmax(truth))
                    ratios.append(errors["hpod"][-1] / max(errors["fanova"][-1], 1e-9))
                med = statistics.median
                print(f"| {fn.name} | {n} | {how} | {med(errors['hpod']):.1f} | "
                      f"{med(errors['fanova']):.1f} | {med(ratios):.2f} | "
                      f"{tops['hpod']}/{args.seeds} | {tops['fanova']}/{args.seeds} | "
                      f"{med(secs['hpod']):.2f} | {med(secs['fanova']):.2f} |", flush=True)
        print(f"<!-- {fn.name}: true shares "
              f"{', '.join(f'{p.name} {s:.3f}' for p, s in zip(fn.space.params, truth))} -->",
              flush=True)


if __name__ == "__main__":
    main()
