"""hpod.best_region: where the best tenth of the results lie, per parameter."""

from __future__ import annotations

import math

from hpod.best_region import best_region, format_best_region
from hpod.space import CategoricalParam, FloatParam, IntParam, Space

SPACE = Space((FloatParam("lr", 1e-5, 1e-1, log=True), IntParam("units", 16, 512),
               CategoricalParam("act", ("relu", "tanh", "gelu")),
               CategoricalParam("bn", (True, False))))


def point(lr: float, units: int, act: str, bn: bool = True) -> dict[str, object]:
    return {"lr": lr, "units": units, "act": act, "bn": bn}


def test_the_best_tenth_but_at_least_three_results_span_the_region() -> None:
    points = [point(10 ** -(1 + i % 4), 16 + 10 * i, ["relu", "tanh", "gelu"][i % 3])
              for i in range(40)]
    values = [float(i) for i in range(40)]  # minimisation form: the first four are the best
    region = best_region(SPACE, points, values)
    assert region is not None and (region.results, region.of) == (4, 40)
    lr = region.params["lr"]
    assert (lr.low, lr.high) == (1e-4, 1e-1)
    assert (region.params["units"].low, region.params["units"].high) == (16, 46)
    assert region.params["act"].choices == ("relu", "tanh", "gelu")  # in the space's order
    assert region.params["bn"].choices == (True,)
    text = format_best_region(region, ["units", "lr", "act", "bn"])
    lines = text.splitlines()
    assert lines[0].startswith("where the best 4 of 40 results lie")
    assert lines[1].split() == ["units", "16", "…", "46", "[16", "…", "512]"]
    assert lines[2].split()[:4] == ["lr", "0.0001", "…", "0.1"]
    assert lines[4].split() == ["bn", "true", "[true,", "false]"]


def test_diverged_results_are_never_among_the_best_and_too_few_say_nothing() -> None:
    points = [point(1e-3, 100, "relu"), point(1e-2, 200, "tanh"), point(1e-4, 300, "gelu"),
              point(1e-5, 16, "gelu")]
    region = best_region(SPACE, points, [math.nan, 0.5, 0.7, 0.9])
    assert region is not None and region.results == 3 and region.of == 3
    assert region.params["act"].choices == ("tanh", "gelu")
    assert best_region(SPACE, points[:3], [math.nan, 0.5, math.inf]) is None
    assert region.params["units"].as_dict() == {"low": 16, "high": 300}
    assert region.params["act"].as_dict() == {"choices": ["tanh", "gelu"]}
