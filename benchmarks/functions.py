"""Synthetic objectives with known optima for the suggester benchmark (algorithms.md 4.2).

Each Problem carries an hpod `[space]` table, the objective over a params dict, its minimum and
the evaluation budget. Constants follow BoTorch's test_functions/synthetic.py.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

_H6_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])
_H6_A = np.array([[10, 3, 17, 3.5, 1.7, 8], [0.05, 10, 17, 0.1, 8, 14],
                  [3, 3.5, 1.7, 10, 17, 8], [17, 8, 0.05, 10, 0.1, 14]], dtype=float)
_H6_P = 1e-4 * np.array([[1312, 1696, 5569, 124, 8283, 5886], [2329, 4135, 8307, 3736, 1004, 9991],
                         [2348, 1451, 3522, 2883, 3047, 6650], [4047, 8828, 8732, 5743, 1091, 381]],
                        dtype=float)


def branin(x: np.ndarray) -> float:
    x1, x2 = x
    b, c, t = 5.1 / (4 * math.pi ** 2), 5 / math.pi, 1 / (8 * math.pi)
    return float((x2 - b * x1 ** 2 + c * x1 - 6) ** 2 + 10 * (1 - t) * math.cos(x1) + 10)


def hartmann6(x: np.ndarray) -> float:
    inner = np.sum(_H6_A * (np.asarray(x)[None, :] - _H6_P) ** 2, axis=1)
    return float(-np.sum(_H6_ALPHA * np.exp(-inner)))


def rosenbrock(x: np.ndarray) -> float:
    x = np.asarray(x)
    return float(np.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (x[:-1] - 1) ** 2))


def ackley(x: np.ndarray) -> float:
    x = np.asarray(x)
    d = len(x)
    return float(-20 * math.exp(-0.2 * math.sqrt(np.sum(x ** 2) / d))
                 - math.exp(np.sum(np.cos(2 * math.pi * x)) / d) + 20 + math.e)


# Mixed space: Hartmann-6 read through a log float, a linear int, a log int, two floats and a
# categorical that picks the sixth coordinate.
_ACT_COORD = {"relu": 0.65, "tanh": 0.3, "sigmoid": 0.95}


def _mixed(p: Mapping[str, Any]) -> float:
    u = np.array([(math.log10(p["lr"]) + 4.0) / 4.0, p["depth"] / 20.0,
                  math.log(p["width"]) / math.log(256.0), p["a"], p["b"], _ACT_COORD[p["act"]]])
    return hartmann6(u)


def mixed_optimum() -> float:
    """The minimum of the mixed problem by enumeration of its discrete part plus L-BFGS-B over
    the continuous coordinates (used to derive MIXED_F_STAR; see the unit test)."""
    import scipy.optimize

    best = math.inf
    for act in _ACT_COORD:
        for depth in range(21):
            for width in range(1, 257):
                fixed = (depth / 20.0, math.log(width) / math.log(256.0), _ACT_COORD[act])

                def f(z: np.ndarray) -> float:
                    return hartmann6(np.array([z[0], fixed[0], fixed[1], z[1], z[2], fixed[2]]))

                if abs(fixed[0] - 0.15) > 0.2 or abs(fixed[1] - 0.48) > 0.2:
                    continue  # far from the Hartmann-6 basin; cannot hold the minimum
                r = scipy.optimize.minimize(f, np.array([0.2, 0.27, 0.31]), method="L-BFGS-B",
                                            bounds=[(0, 1)] * 3)
                best = min(best, float(r.fun))
    return best


MIXED_F_STAR = -3.3209766  # mixed_optimum(): act="relu", depth=3, width=14


@dataclass(frozen=True)
class Problem:
    name: str
    space: dict[str, Any]
    objective: Callable[[Mapping[str, Any]], float]
    f_star: float
    budget: int


def _box(names: list[str], low: float, high: float) -> dict[str, Any]:
    return {n: {"type": "float", "low": low, "high": high} for n in names}


def _vec(names: list[str], fn: Callable[[np.ndarray], float]) -> Callable[[Mapping[str, Any]], float]:
    return lambda p: fn(np.array([p[n] for n in names], dtype=float))


def problems() -> dict[str, Problem]:
    x2, x4, x5, x6 = ([f"x{i}" for i in range(k)] for k in (2, 4, 5, 6))
    branin_space = {"x0": {"type": "float", "low": -5.0, "high": 10.0},
                    "x1": {"type": "float", "low": 0.0, "high": 15.0}}
    mixed_space = {"lr": {"type": "float", "low": 1e-4, "high": 1.0, "log": True},
                   "depth": {"type": "int", "low": 0, "high": 20},
                   "width": {"type": "int", "low": 1, "high": 256, "log": True},
                   "a": {"type": "float", "low": 0.0, "high": 1.0},
                   "b": {"type": "float", "low": 0.0, "high": 1.0},
                   "act": {"type": "categorical", "choices": list(_ACT_COORD)}}
    return {
        "branin": Problem("branin", branin_space, _vec(x2, branin), 0.397887, 50),
        "hartmann6": Problem("hartmann6", _box(x6, 0.0, 1.0), _vec(x6, hartmann6), -3.32237, 100),
        "rosenbrock4": Problem("rosenbrock4", _box(x4, -5.0, 10.0), _vec(x4, rosenbrock), 0.0, 100),
        "ackley5": Problem("ackley5", _box(x5, -32.768, 32.768), _vec(x5, ackley), 0.0, 100),
        "mixed": Problem("mixed", mixed_space, _mixed, MIXED_F_STAR, 100),
    }
