"""The three parameter domains of a search space and their encoding to one unit-cube coordinate.

Encoding (the GP works in it; random search samples uniformly in it):
- float: (v - low) / (high - low), on log v when `log`; continuous.
- int, and float with a `step`: the bounds are padded by step/2 before normalising (after that, logs
  for log ints) so every grid value owns an equal share of [0, 1] (optuna _gp/search_space.py).
- categorical: the choice *index* as a float, not scaled (kernels treat it with a Hamming distance).

Each class validates itself on construction (SpaceError naming `space.<name>.<attr>`), so a
Space built in code is held to the same rules as one read from a study file.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation, localcontext
from typing import Any

from hpod.errors import SpaceError
from hpod.spec_fields import describe

NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]{0,99}")
# Ints travel through float64 in the encoded space: beyond 2**53 they would stop being exact.
INT_LIMIT = 2**53
# A float `step` grid is counted with Decimal; past this many values it is not a grid anyway.
MAX_FLOAT_GRID = 10**15


def _fail(name: str, attr: str | None, message: str, fix: str | None = None) -> SpaceError:
    field = f"space.{name}" + (f".{attr}" if attr else "")
    return SpaceError(message, field=field, fix=fix)


def check_name(name: Any) -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        shown = repr(name) if isinstance(name, str) else describe(name)
        raise SpaceError(f"invalid parameter name {shown}", field=f"space.{name}",
                         fix="use letters, digits, '_', '.', '-' (starting with a letter or '_'), "
                             "at most 100 characters")
    return name


def _is_real(value: Any) -> bool:
    """Python's and numpy's real numbers (numpy registers its scalars with `numbers`); a bool is
    a truth value, not a number."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def real_float(value: Any, error: Callable[[str], Exception]) -> float:
    """A real number (`_is_real`) as a Python float. Anything else raises error(got), `got`
    saying what came instead: the value described, or an integer beyond the float range.
    The caller phrases the error: a parameter's names its field, a suggester's its argument."""
    if not _is_real(value):
        raise error(describe(value))
    try:
        return float(value)
    except OverflowError:
        raise error("an integer beyond the float range (about 1.8e308)") from None


def _number(name: str, value: Any) -> float:
    """A parameter value as a float; bools and strings are not numbers."""
    return real_float(value, lambda got: SpaceError(f"must be a number, got {got}",
                                                    field=f"params.{name}"))


def _whole(value: Any) -> int | None:
    """An integral number, or a real one with no fraction, as a Python int; None otherwise."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    if _is_real(value):
        try:
            number = float(value)
        except OverflowError:  # a Fraction beyond the float range
            return None
        if number.is_integer():
            return int(number)
    return None


def _finite(value: Any) -> float | None:
    """A real number as a Python float, None when no finite float holds it (inf, nan, an
    integer beyond the float range)."""
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _integer(name: str, value: Any) -> int:
    """A parameter value as an int: an integral number, or a real one with no fraction."""
    number = _whole(value)
    if number is None:
        raise SpaceError(f"must be an integer, got {describe(value)}", field=f"params.{name}")
    return number


def _to_unit(name: str, value: Any, bounds: tuple[float, float], log: bool) -> float:
    """A numeric param's value as a position in [0, 1] between its (log-scaled) bounds."""
    v = _number(name, value)
    lo, hi = bounds
    if log:
        if v <= 0:
            raise SpaceError(f"must be > 0 on a log scale, got {v!r}", field=f"params.{name}")
        v = math.log(v)
    return (v - lo) / (hi - lo)


def _dec(value: float) -> Decimal:
    # repr() is the shortest text that round-trips, i.e. what the user wrote: 0.1 stays 0.1.
    return Decimal(repr(float(value)))


@dataclass(frozen=True)
class FloatParam:
    name: str
    low: float
    high: float
    log: bool = False
    step: float | None = None

    def __post_init__(self) -> None:
        check_name(self.name)
        for attr in ("low", "high"):
            value = getattr(self, attr)
            if not _is_real(value):
                raise _fail(self.name, attr, f"must be a number, got {describe(value)}",
                            "write a number (no quotes)")
            number = _finite(value)
            if number is None:
                raise _fail(self.name, attr, f"must be a finite number, got {describe(value)}",
                            "write a finite number")
            object.__setattr__(self, attr, number)
        if not isinstance(self.log, bool):
            raise _fail(self.name, "log", f"must be true or false, got {describe(self.log)}",
                        "write log = true or log = false (no quotes)")
        if self.low >= self.high:
            raise _fail(self.name, "low", f"low ({self.low!r}) must be less than high ({self.high!r})",
                        "swap them or widen the range; a single value is a fixed parameter")
        if not math.isfinite(self.high - self.low):
            raise _fail(self.name, "high", "the range high - low overflows", "narrow the range")
        if self.log and self.low <= 0:
            raise _fail(self.name, "low", f"a log-scale parameter needs low > 0, got {self.low!r}",
                        "use a positive low (e.g. 1e-6) or drop `log`")
        if self.step is not None:
            self._check_step()

    def _check_step(self) -> None:
        step = _finite(self.step) if _is_real(self.step) else None
        if step is None:
            raise _fail(self.name, "step", f"must be a finite number, got {describe(self.step)}",
                        "write a positive number")
        if step <= 0:
            raise _fail(self.name, "step", f"must be greater than 0, got {self.step!r}",
                        "use a positive step")
        if self.log:
            raise _fail(self.name, "step", "`step` and `log` cannot be combined on a float",
                        "drop one of them, or list the values with type = \"categorical\"")
        object.__setattr__(self, "step", step)
        with localcontext() as ctx:
            ctx.prec = 60
            span, dstep = _dec(self.high) - _dec(self.low), _dec(step)
            try:
                count, rest = divmod(span, dstep)
            except InvalidOperation:
                count, rest = Decimal(MAX_FLOAT_GRID + 1), Decimal(0)
        if count >= MAX_FLOAT_GRID:
            raise _fail(self.name, "step", f"step {self.step!r} is too small for the range",
                        "use a larger step, or drop `step` for a continuous parameter")
        if rest != 0:
            raise _fail(self.name, "step",
                        f"step {self.step!r} does not divide the range {self.low!r}..{self.high!r}",
                        f"make high - low a multiple of step (e.g. high = "
                        f"{float(_dec(self.low) + count * dstep)!r})")

    # -- grid ----------------------------------------------------------------------------------

    @property
    def count(self) -> int | None:
        """Number of grid values, None when continuous."""
        if self.step is None:
            return None
        with localcontext() as ctx:
            ctx.prec = 60
            return int((_dec(self.high) - _dec(self.low)) / _dec(self.step)) + 1

    def grid_value(self, k: int) -> float:
        assert self.step is not None
        with localcontext() as ctx:
            ctx.prec = 60
            return float(_dec(self.low) + k * _dec(self.step))

    # -- encoding ------------------------------------------------------------------------------

    def unit_bounds(self) -> tuple[float, float]:
        """The (log-scaled, padded) values that encode to 0 and 1."""
        if self.step is not None:
            return self.low - self.step / 2, self.high + self.step / 2
        if self.log:
            return math.log(self.low), math.log(self.high)
        return self.low, self.high

    def encode(self, value: Any) -> float:
        return _to_unit(self.name, value, self.unit_bounds(), self.log)

    def decode(self, u: float) -> float:
        lo, hi = self.unit_bounds()
        v = lo + min(max(u, 0.0), 1.0) * (hi - lo)
        if self.step is not None:
            last = int((_dec(self.high) - _dec(self.low)) / _dec(self.step))
            return self.grid_value(min(max(round((v - self.low) / self.step), 0), last))
        if self.log:
            v = math.exp(v)
        return float(min(max(v, self.low), self.high))

    def normalise(self, value: Any) -> float:
        v = _number(self.name, value)
        if not (self.low <= v <= self.high):
            raise SpaceError(f"{v!r} is outside [{self.low!r}, {self.high!r}]", field=f"params.{self.name}")
        if self.step is None:
            return v
        return self.grid_value(self._index(v))

    def _index(self, v: float) -> int:
        assert self.step is not None
        k = (v - self.low) / self.step
        if abs(k - round(k)) > 1e-6:
            raise SpaceError(f"{v!r} is not on the step grid ({self.low!r} + k * {self.step!r})",
                             field=f"params.{self.name}")
        return int(round(k))

    def key_of(self, value: Any) -> float | int:
        v = self.normalise(value)
        return v if self.step is None else self._index(v)

    def grid_digit(self, value: Any) -> int:
        """k such that grid_value(k) is `value` (a stepped parameter only)."""
        return self._index(self.normalise(value))

    def to_table(self) -> dict[str, Any]:
        table: dict[str, Any] = {"type": "float", "low": self.low, "high": self.high}
        if self.log:
            table["log"] = True
        if self.step is not None:
            table["step"] = self.step
        return table


def _as_int(name: str, attr: str, value: Any) -> int:
    number = _whole(value)
    if number is None:
        raise _fail(name, attr, f"must be an integer, got {describe(value)}",
                    "write a whole number, or use type = \"float\"")
    if abs(number) > INT_LIMIT:
        raise _fail(name, attr, f"is too large: {describe(number)} (the limit is 2**53)",
                    "use a smaller bound")
    return number


@dataclass(frozen=True)
class IntParam:
    name: str
    low: int
    high: int
    log: bool = False
    step: int = 1

    def __post_init__(self) -> None:
        check_name(self.name)
        for attr in ("low", "high", "step"):
            object.__setattr__(self, attr, _as_int(self.name, attr, getattr(self, attr)))
        if not isinstance(self.log, bool):
            raise _fail(self.name, "log", f"must be true or false, got {describe(self.log)}",
                        "write log = true or log = false (no quotes)")
        if self.low >= self.high:
            raise _fail(self.name, "low", f"low ({self.low}) must be less than high ({self.high})",
                        "swap them or widen the range; a single value is a fixed parameter")
        if self.step <= 0:
            raise _fail(self.name, "step", f"must be greater than 0, got {self.step}", "use a positive step")
        if (self.high - self.low) % self.step:
            raise _fail(self.name, "step",
                        f"step {self.step} does not divide the range {self.low}..{self.high}",
                        f"make high - low a multiple of step (e.g. high = "
                        f"{self.low + (self.high - self.low) // self.step * self.step})")
        if self.log and self.low < 1:
            raise _fail(self.name, "low", f"a log-scale parameter needs low >= 1, got {self.low}",
                        "use low = 1 or more, or drop `log`")
        if self.log and self.step != 1:
            raise _fail(self.name, "step", "`step` and `log` cannot be combined on an int",
                        "drop one of them, or list the values with type = \"categorical\"")

    @property
    def count(self) -> int:
        return (self.high - self.low) // self.step + 1

    def grid_value(self, k: int) -> int:
        return self.low + k * self.step

    def unit_bounds(self) -> tuple[float, float]:
        """The (log-scaled, padded) values that encode to 0 and 1."""
        lo, hi = self.low - self.step / 2, self.high + self.step / 2
        return (math.log(lo), math.log(hi)) if self.log else (lo, hi)

    def encode(self, value: Any) -> float:
        return _to_unit(self.name, value, self.unit_bounds(), self.log)

    def decode(self, u: float) -> int:
        lo, hi = self.unit_bounds()
        v = lo + min(max(u, 0.0), 1.0) * (hi - lo)
        if self.log:
            v = math.exp(v)
        return self.grid_value(min(max(round((v - self.low) / self.step), 0), self.count - 1))

    def normalise(self, value: Any) -> int:
        value = _integer(self.name, value)
        if not (self.low <= value <= self.high):
            raise SpaceError(f"{value} is outside [{self.low}, {self.high}]", field=f"params.{self.name}")
        if (value - self.low) % self.step:
            raise SpaceError(f"{value} is not on the step grid ({self.low} + k * {self.step})",
                             field=f"params.{self.name}")
        return value

    def key_of(self, value: Any) -> int:
        return self.normalise(value)

    def grid_digit(self, value: Any) -> int:
        """k such that grid_value(k) is `value`."""
        return (self.normalise(value) - self.low) // self.step

    def to_table(self) -> dict[str, Any]:
        table: dict[str, Any] = {"type": "int", "low": self.low, "high": self.high}
        if self.log:
            table["log"] = True
        if self.step != 1:
            table["step"] = self.step
        return table


def _choice_key(value: Any) -> tuple[str, Any]:
    """Type-aware identity of a choice: True is not 1, while 1 and 1.0 are the same number."""
    if value is None:
        return ("null", None)
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, (int, float)):
        return ("number", value)
    return ("string", value)


@dataclass(frozen=True)
class CategoricalParam:
    name: str
    choices: tuple[Any, ...]

    def __post_init__(self) -> None:
        check_name(self.name)
        if isinstance(self.choices, (str, bytes)) or not isinstance(self.choices, (list, tuple)):
            raise _fail(self.name, "choices", f"must be a list, got {describe(self.choices)}",
                        'write choices = ["a", "b"]')
        object.__setattr__(self, "choices", tuple(self.choices))
        if not self.choices:
            raise _fail(self.name, "choices", "must not be empty", "list at least one value")
        index: dict[tuple[str, Any], int] = {}
        for i, choice in enumerate(self.choices):
            field = f"choices[{i}]"
            if not (choice is None or isinstance(choice, (str, bool, int, float))):
                raise _fail(self.name, field,
                            f"must be a string, number, boolean or null, got {describe(choice)}",
                            "use scalar choices; pass structured values as a fixed parameter")
            if isinstance(choice, float) and not math.isfinite(choice):
                raise _fail(self.name, field, f"must be finite, got {choice!r}", "remove it")
            if isinstance(choice, int) and not isinstance(choice, bool) and abs(choice) > INT_LIMIT:
                raise _fail(self.name, field, f"is too large: {describe(choice)}", "use a smaller value")
            key = _choice_key(choice)
            if key in index:
                raise _fail(self.name, field, f"duplicate choice {choice!r}", "list each value once")
            index[key] = i
        object.__setattr__(self, "_index", index)

    @property
    def count(self) -> int:
        return len(self.choices)

    def grid_value(self, k: int) -> Any:
        return self.choices[k]

    def index(self, value: Any) -> int:
        try:
            return self._index[_choice_key(value)]  # type: ignore[attr-defined]
        except (KeyError, TypeError):
            raise SpaceError(f"{describe(value)} is not one of {list(self.choices)!r}",
                             field=f"params.{self.name}") from None

    def encode(self, value: Any) -> float:
        return float(self.index(value))

    def decode(self, u: float) -> Any:
        return self.choices[min(max(round(u), 0), len(self.choices) - 1)]

    def normalise(self, value: Any) -> Any:
        return self.choices[self.index(value)]

    def key_of(self, value: Any) -> int:
        return self.index(value)

    def grid_digit(self, value: Any) -> int:
        return self.index(value)

    def to_table(self) -> dict[str, Any]:
        return {"type": "categorical", "choices": list(self.choices)}


Param = FloatParam | IntParam | CategoricalParam
