"""The benchmark's objectives (benchmarks/functions.py) have the optima the regret is taken from."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from functions import problems  # noqa: E402

from hpod.space import Space  # noqa: E402

OPTIMA = {
    "branin": {"x0": math.pi, "x1": 2.275},
    "hartmann6": dict(zip([f"x{i}" for i in range(6)],
                          (0.20169, 0.150011, 0.476874, 0.275332, 0.311652, 0.6573))),
    "rosenbrock4": {f"x{i}": 1.0 for i in range(4)},
    "ackley5": {f"x{i}": 0.0 for i in range(5)},
    "mixed": {"lr": 10 ** (4 * 0.20154541 - 4), "depth": 3, "width": 14, "a": 0.27525276,
              "b": 0.31172363, "act": "relu"},
}


@pytest.mark.parametrize("name", sorted(OPTIMA))
def test_known_minimiser_reaches_f_star_and_lies_in_the_space(name):
    problem = problems()[name]
    point = OPTIMA[name]
    Space.from_dict(problem.space).validate(point)
    assert problem.objective(point) == pytest.approx(problem.f_star, abs=2e-5)

