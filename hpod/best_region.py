"""Where a study's best results lie, parameter by parameter: what to narrow the space to.

Order statistics, no model: the best tenth of the results (at least 3), and for each parameter
the interval its values span there (a number) or the choices they took (a categorical), beside
the range the space gives it. Read with the importance table (hpod.importance): narrowing a
parameter that explains nothing gains nothing, and in a noisy study the best tenth is partly
luck, so leave a margin.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hpod.space import CategoricalParam, Space

BEST_FRACTION = 0.1
AT_LEAST = 3


@dataclass(frozen=True)
class ParamRegion:
    name: str
    low: Any = None  # numbers: the smallest and largest value among the best results
    high: Any = None
    choices: tuple[Any, ...] | None = None  # categoricals: those taken, in the space's order
    space: str = ""  # the space's own range, in words

    def text(self) -> str:
        if self.choices is not None:
            return ", ".join(_word(c) for c in self.choices)
        return f"{_word(self.low)} … {_word(self.high)}"

    def as_dict(self) -> dict[str, Any]:
        if self.choices is not None:
            return {"choices": list(self.choices)}
        return {"low": self.low, "high": self.high}


@dataclass(frozen=True)
class BestRegion:
    results: int  # how many results are "the best"
    of: int  # out of how many with a finite value
    params: dict[str, ParamRegion]

    def as_dict(self) -> dict[str, Any]:
        return {"results": self.results, "of": self.of,
                "params": {name: region.as_dict() for name, region in self.params.items()}}


def best_region(space: Space, points: Sequence[Mapping[str, Any]], values: Sequence[float],
                ) -> BestRegion | None:
    """The region of the best results; `values` in minimisation form, NaN and inf never among
    the best. None when fewer than AT_LEAST results have a finite value."""
    finite = [(v, p) for v, p in zip(values, points) if math.isfinite(v)]
    if len(finite) < AT_LEAST:
        return None
    finite.sort(key=lambda pair: pair[0])
    k = min(len(finite), max(AT_LEAST, math.ceil(BEST_FRACTION * len(finite))))
    best = [p for _v, p in finite[:k]]
    regions = {}
    for param in space.params:
        taken = [p[param.name] for p in best]
        if isinstance(param, CategoricalParam):
            regions[param.name] = ParamRegion(
                param.name, choices=tuple(c for c in param.choices if c in taken),
                space=", ".join(_word(c) for c in param.choices))
        else:
            regions[param.name] = ParamRegion(param.name, min(taken), max(taken),
                                              space=f"{_word(param.low)} … {_word(param.high)}")
    return BestRegion(k, len(finite), regions)


def format_best_region(region: BestRegion, order: Sequence[str]) -> str:
    """The block under the importance table, parameters in `order` (most important first)."""
    lines = [f"where the best {region.results} of {region.of} results lie (the space's own "
             f"range in brackets):"]
    width = max(9, *(len(name) for name in order))
    texts = {name: region.params[name].text() for name in order}
    column = max(len(t) for t in texts.values())
    for name in order:
        lines.append(f"{name:<{width}}  {texts[name]:<{column}}  [{region.params[name].space}]")
    return "\n".join(lines)


def _word(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()  # as a study file writes it
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)
