"""Suggesters: propose the next point of a search space (ask/tell).

`make_suggester(name, space, seed=..., direction=...)` is the one constructor; each kind lives
in its own module, imported only when asked for.
"""

from __future__ import annotations

import importlib
import inspect
from typing import TYPE_CHECKING, Any

from hpod.spec_fields import did_you_mean

if TYPE_CHECKING:
    from hpod.space import Space
    from hpod.suggest.base import Suggester

__all__ = ["make_suggester", "suggester_kinds", "suggester_options"]

# The arguments every suggester takes; anything else is a kind-specific option.
_COMMON = ("space", "seed", "direction")


class _NotImplementedKind(ValueError):
    """A kind that is listed but whose module is not there (yet)."""


def _kinds() -> dict[str, str]:
    """kind -> "module:Class". Built per call (no module-level registry); one line per kind."""
    return {
        "random": "hpod.suggest.random:RandomSuggester",
        "grid": "hpod.suggest.grid:GridSuggester",
        "gp": "hpod.suggest.gp.suggester:GPSuggester",
        "gp-grid": "hpod.suggest.gp_grid:GPGridSuggester",
        "tpe": "hpod.suggest.tpe:TPESuggester",
    }


def suggester_kinds() -> list[str]:
    """The kinds make_suggester can build."""
    return list(_kinds())


def _load(name: str) -> type:
    kinds = _kinds()
    if name not in kinds:
        guess = did_you_mean(str(name), kinds)
        hint = f" Did you mean {guess!r}?" if guess else ""
        raise ValueError(f"unknown suggester {name!r}.{hint} Known kinds: {', '.join(kinds)}")
    module, _, cls = kinds[name].partition(":")
    try:
        return getattr(importlib.import_module(module), cls)
    except ModuleNotFoundError as e:
        if e.name is not None and (module == e.name or module.startswith(e.name + ".")):
            # A kind listed before its module exists; an import error inside it propagates.
            raise _NotImplementedKind(f"suggester {name!r} is not available in this version") from e
        raise



def suggester_options(name: str) -> frozenset[str] | None:
    """Option names the kind accepts beyond space/seed/direction; None if the kind is not
    implemented (the study-file parser then passes its options through unchecked)."""
    if name not in _kinds():
        return None
    try:
        cls = _load(name)
    except _NotImplementedKind:
        return None
    params = inspect.signature(cls).parameters
    return frozenset(p for p in params if p not in _COMMON)


def make_suggester(name: str, space: Space, *, seed: int | None = None,
                   direction: str = "minimize", **options: Any) -> Suggester:
    """Build a suggester of kind `name` (one of suggester_kinds(): "random", "grid", ...).

    Raises ValueError for an unknown kind or option, SpaceError when the space does not suit the
    kind (grid over a float without `step`).
    """
    cls = _load(name)
    try:
        inspect.signature(cls).bind(space, seed=seed, direction=direction, **options)
    except TypeError:
        allowed = sorted(suggester_options(name) or ())
        unknown = sorted(set(options) - set(allowed))
        raise ValueError(f"suggester {name!r} does not take option(s) {', '.join(unknown)}; "
                         f"it takes: {', '.join(allowed) or 'none'}") from None
    return cls(space, seed=seed, direction=direction, **options)
