"""The search space: searched parameters, fixed values, and the unit-cube encoding suggesters use.

Notations: `dim` is the number of searched parameters, in the order of the `[space]` table; an
encoded point `x` has shape (dim,), a batch of n points shape (n, dim). Numeric coordinates lie in
[0, 1]; a categorical coordinate is the choice index (0 .. n_choices - 1) as a float. The domains
and their encodings are in hpod.space_params.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from hpod.errors import SpaceError
from hpod.space_params import CategoricalParam, FloatParam, IntParam, Param, check_name
from hpod.spec_fields import Fields, clean_error, describe, did_you_mean

__all__ = ["Space", "Param", "FloatParam", "IntParam", "CategoricalParam"]

_TYPES = ("float", "int", "categorical")
_KEYS = {"float": ("type", "low", "high", "log", "step"),
         "int": ("type", "low", "high", "log", "step"),
         "categorical": ("type", "choices")}
_MAX_PARAMS = 1000
_MAX_FIXED_DEPTH = 32


@dataclass(frozen=True)
class Space:
    """Searched `params` (in table order) and `fixed` values handed unchanged to every trial."""

    params: tuple[Param, ...]
    fixed: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", tuple(self.params))
        object.__setattr__(self, "fixed", dict(self.fixed))
        seen: set[str] = set()
        for p in self.params:
            if not isinstance(p, (FloatParam, IntParam, CategoricalParam)):
                raise SpaceError(f"not a parameter: {describe(p)}", field="space",
                                 fix="use FloatParam, IntParam or CategoricalParam")
            if p.name in seen:
                raise SpaceError(f"duplicate parameter {p.name!r}", field=f"space.{p.name}",
                                 fix="give each parameter its own name")
            seen.add(p.name)
        for name, value in self.fixed.items():
            check_name(name)
            if name in seen:
                raise SpaceError(f"{name!r} is both searched and fixed", field=f"space.{name}")
            _check_fixed(name, value)

    # -- construction --------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, table: Mapping[str, Any]) -> Space:
        """Build from a study file's `[space]` table: a table with `type` is searched, a bare
        value (a list included) is fixed. Raises SpaceError naming the field (`space.lr.low`)."""
        try:
            return cls._from_dict(table)
        except SpaceError as e:
            raise clean_error(e) from None

    @classmethod
    def _from_dict(cls, table: Mapping[str, Any]) -> Space:
        fields = Fields(error=SpaceError)
        fields.table(table, "space")
        params: list[Param] = []
        fixed: dict[str, Any] = {}
        for name, value in table.items():
            check_name(name)
            if isinstance(value, Mapping):
                params.append(_param_from_table(fields, name, value))
            else:
                fixed[name] = value
        if not params:
            raise SpaceError("has no searched parameter", field="space",
                             fix='add one, e.g. lr = { type = "float", low = 1e-4, high = 1e-1, log = true }')
        if len(params) > _MAX_PARAMS:
            raise SpaceError(f"has {len(params)} searched parameters (at most {_MAX_PARAMS})",
                             field="space", fix="search fewer parameters")
        return cls(tuple(params), fixed)

    def to_dict(self) -> dict[str, Any]:
        """The `[space]` table that from_dict turns back into this space (JSON-able)."""
        table: dict[str, Any] = {p.name: p.to_table() for p in self.params}
        table.update(copy.deepcopy(self.fixed))
        return table

    # -- shape ---------------------------------------------------------------------------------

    @property
    def names(self) -> list[str]:
        """Every name a trial receives: searched ones first, then fixed ones."""
        return [p.name for p in self.params] + list(self.fixed)

    @property
    def dim(self) -> int:
        return len(self.params)

    def __len__(self) -> int:
        return self.dim

    @cached_property
    def is_categorical(self) -> np.ndarray:
        """(dim,) bool: True where the coordinate is a choice index."""
        out = np.array([isinstance(p, CategoricalParam) for p in self.params], dtype=bool)
        out.flags.writeable = False
        return out

    @cached_property
    def n_choices(self) -> np.ndarray:
        """(dim,) int: the number of choices of each categorical, 0 for numeric coordinates."""
        out = np.array([p.count if isinstance(p, CategoricalParam) else 0 for p in self.params],
                       dtype=np.int64)
        out.flags.writeable = False
        return out

    def param(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    # -- encoding ------------------------------------------------------------------------------

    def to_unit(self, params: Mapping[str, Any]) -> np.ndarray:
        """Encode one point: (dim,) float64. Fixed and unknown keys are ignored."""
        x = np.empty(self.dim, dtype=np.float64)
        for i, p in enumerate(self.params):
            if p.name not in params:
                raise SpaceError("is missing", field=f"params.{p.name}")
            x[i] = p.encode(params[p.name])
        return x

    def to_unit_many(self, points: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Encode n points: (n, dim) float64."""
        out = np.empty((len(points), self.dim), dtype=np.float64)
        for row, params in enumerate(points):
            out[row] = self.to_unit(params)
        return out

    def from_unit(self, x: Sequence[float] | np.ndarray) -> dict[str, Any]:
        """Decode (dim,) to a full params dict (fixed values added), plain JSON-able Python types.

        Numeric coordinates are clipped to [0, 1], ints and stepped floats snapped to their grid,
        categorical indices rounded and clipped.
        """
        x = np.asarray(x, dtype=np.float64)
        if x.shape != (self.dim,):
            raise ValueError(f"expected an array of shape ({self.dim},), got {x.shape}")
        if np.isnan(x).any():
            raise ValueError("cannot decode a point with NaN coordinates")
        out = {p.name: p.decode(float(u)) for p, u in zip(self.params, x)}
        out.update(copy.deepcopy(self.fixed))
        return out

    def sample(self, rng: np.random.Generator) -> dict[str, Any]:
        """One point drawn uniformly in the encoded space (log-uniform for log parameters, equal
        mass per int value, uniform categoricals). Uses exactly one `rng.random(dim)` call."""
        u = rng.random(self.dim)
        # (dim,): categoricals become an index in 0 .. n - 1 with equal mass each.
        x = np.where(self.is_categorical, np.floor(u * self.n_choices), u)
        return self.from_unit(x)

    # -- grid ----------------------------------------------------------------------------------

    def is_finite(self) -> bool:
        """True when every searched parameter has finitely many values (no step-less float)."""
        return all(p.count is not None for p in self.params)

    def _counts(self) -> list[int]:
        """Number of values of each parameter; SpaceError naming a float without a step."""
        counts = [p.count for p in self.params]
        for p, count in zip(self.params, counts):
            if count is None:
                raise SpaceError(f"float parameter {p.name!r} has no `step`, so it has no grid",
                                 field=f"space.{p.name}",
                                 fix='give it a `step`, or use kind = "random"/"gp"')
        return counts  # type: ignore[return-value]  # no None left

    def grid_size(self) -> int:
        """Number of points of the Cartesian product (1 for an empty product)."""
        return math.prod(self._counts())

    def grid_values(self, param: Param | str) -> list[Any]:
        """Every value of one parameter, in order; SpaceError for a step-less float."""
        p = self.param(param) if isinstance(param, str) else param
        if p.count is None:
            raise SpaceError(f"float parameter {p.name!r} has no `step`, so it has no grid",
                             field=f"space.{p.name}",
                             fix='give it a `step`, or use kind = "random"/"gp"')
        return [p.grid_value(k) for k in range(p.count)]

    def grid_point(self, index: int) -> dict[str, Any]:
        """Point number `index` of the product in itertools.product order (last param fastest),
        fixed values added. A mixed-radix counter: nothing is materialised."""
        counts = self._counts()
        size = math.prod(counts)
        if not 0 <= index < size:
            raise IndexError(f"grid index {index} out of range 0..{size - 1}")
        values: list[Any] = []
        for p, count in zip(reversed(self.params), reversed(counts)):
            index, digit = divmod(index, count)
            values.append(p.grid_value(digit))
        out = {p.name: v for p, v in zip(self.params, reversed(values))}
        out.update(copy.deepcopy(self.fixed))
        return out

    def grid_index(self, params: Mapping[str, Any]) -> int:
        """Inverse of grid_point."""
        index = 0
        for p, count in zip(self.params, self._counts()):
            if p.name not in params:
                raise SpaceError("is missing", field=f"params.{p.name}")
            index = index * count + p.grid_digit(params[p.name])
        return index

    # -- checking ------------------------------------------------------------------------------

    def validate(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Check a full or partial point; return it normalised, in `names` order.

        Raises SpaceError (field `params.<name>`) for an unknown name, a value out of range, not
        a choice, off the step grid, or a fixed name given another value.
        """
        names = self.names
        for name in params:
            if name not in names:
                guess = did_you_mean(str(name), names)
                hint = f" Did you mean {guess!r}?" if guess else ""
                raise SpaceError(f"unknown parameter {name!r}.{hint}", field=f"params.{name}",
                                 fix=f"use one of: {', '.join(names)}")
        out: dict[str, Any] = {}
        for p in self.params:
            if p.name in params:
                out[p.name] = p.normalise(params[p.name])
        for name, value in self.fixed.items():
            if name in params:
                if _canonical(params[name]) != _canonical(value):
                    raise SpaceError(f"is fixed to {value!r}, got {params[name]!r}",
                                     field=f"params.{name}")
                out[name] = copy.deepcopy(value)
        return out

    def key(self, params: Mapping[str, Any]) -> tuple[Any, ...]:
        """Canonical hashable identity of a point's searched values (the grid index of a stepped
        float or a categorical, the value of an int or a continuous float), used to de-duplicate
        points. Not a grid position: that is grid_index."""
        out = []
        for p in self.params:
            if p.name not in params:
                raise SpaceError("is missing", field=f"params.{p.name}")
            out.append(p.key_of(params[p.name]))
        return tuple(out)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _param_from_table(fields: Fields, name: str, table: Mapping[str, Any]) -> Param:
    prefix = f"space.{name}"
    fields.table(table, prefix)
    if "type" not in table:
        fields.fail(f"{prefix}.type", "is missing: a table in [space] is a searched parameter",
                    f'add type = "float", "int" or "categorical"; for a fixed value write {name} = <value>')
    kind = fields.choice(table["type"], f"{prefix}.type", _TYPES)
    allowed = _KEYS[kind]
    for key in table:
        if key not in allowed and any(key in keys for keys in _KEYS.values()):
            fields.fail(f"{prefix}.{key}", f"{key!r} does not apply to type {kind!r}",
                        f"remove it (valid keys for {kind}: {', '.join(allowed)})")
    fields.known_keys(table, prefix, allowed, context=f"for type {kind!r}")
    if kind == "categorical":
        choices = fields.required(table, "choices", prefix, 'add choices = ["a", "b"]')
        return CategoricalParam(name, choices)
    low = fields.required(table, "low", prefix, "add low = <smallest value>")
    high = fields.required(table, "high", prefix, "add high = <largest value>")
    log = fields.boolean(table.get("log", False), f"{prefix}.log")
    if kind == "int":
        return IntParam(name, low, high, log=log, step=table.get("step", 1))
    step = table.get("step")
    if step is not None:
        step = fields.number(step, f"{prefix}.step")
    return FloatParam(name, low, high, log=log, step=step)


def _check_fixed(name: str, value: Any) -> None:
    """Fixed values travel to trials as JSON: refuse what JSON cannot say exactly."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    budget = 100_000
    while stack:
        item, depth = stack.pop()
        budget -= 1
        if depth > _MAX_FIXED_DEPTH or budget < 0:
            raise SpaceError("is nested too deeply or too large", field=f"space.{name}",
                             fix="simplify the value")
        if item is None or isinstance(item, (str, bool)):
            continue
        if isinstance(item, int):
            if abs(item) > 2**63:
                raise SpaceError(f"is too large: {describe(item)}", field=f"space.{name}",
                                 fix="use a smaller number or a string")
            continue
        if isinstance(item, float):
            if not math.isfinite(item):
                raise SpaceError(f"must be finite, got {item!r}", field=f"space.{name}",
                                 fix="use a finite number or a string")
            continue
        if isinstance(item, (list, tuple)):
            stack.extend((v, depth + 1) for v in item)
            continue
        if isinstance(item, Mapping) and depth > 0:
            for k, v in item.items():
                if not isinstance(k, str):
                    raise SpaceError(f"has a key that is not a string: {describe(k)}",
                                     field=f"space.{name}", fix="quote the key")
                stack.append((v, depth + 1))
            continue
        raise SpaceError(f"cannot be passed to a trial as JSON: {describe(item)}",
                         field=f"space.{name}",
                         fix="use a string, number, boolean or list (quote dates)")
