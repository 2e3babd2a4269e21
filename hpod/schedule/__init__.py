"""Early-stopping schedulers: pure, synchronous decision makers behind one contract.

    scheduler = make_scheduler("asha", max_resource=81, direction="minimize")
    scheduler.on_start(0)
    scheduler.on_report(0, step=1, value=0.7)   # -> Decision.CONTINUE | STOP | PAUSE

See `hpod.schedule.base` for the contract and docs/schedulers.md for the kinds.
"""

from __future__ import annotations

import difflib
from typing import Any

from hpod.schedule.base import Scheduler, reject_unknown

__all__ = ["SCHEDULER_OPTIONS", "Scheduler", "make_scheduler"]

_LADDER = frozenset({"direction", "min_resource", "max_resource", "reduction_factor"})
# The options each kind takes: what make_scheduler accepts, and what a study file may give it.
SCHEDULER_OPTIONS: dict[str, frozenset[str]] = {
    "fifo": frozenset({"direction", "min_resource", "max_resource"}),
    "sh": _LADDER | {"cohort_size"},
    "hyperband": _LADDER,
    "asha": _LADDER | {"mode"},
    "async-hyperband": _LADDER | {"mode", "brackets", "seed"},
    "median": frozenset({"direction", "grace", "min_trials", "max_resource"}),
}


def make_scheduler(name: str, **options: Any) -> Scheduler:
    """Build the scheduler `name` ("fifo", "sh", "hyperband", "asha", "async-hyperband",
    "median") from its options; unknown names and options raise ValueError. An option given
    as None counts as not given (its default applies), as in a parsed study file."""
    from hpod.schedule.asha import ASHAScheduler
    from hpod.schedule.async_hyperband import AsyncHyperbandScheduler
    from hpod.schedule.fifo import FIFOScheduler
    from hpod.schedule.hyperband import HyperbandScheduler
    from hpod.schedule.median import MedianStoppingScheduler
    from hpod.schedule.sh import SuccessiveHalvingScheduler

    kinds: dict[str, type] = {
        "fifo": FIFOScheduler,
        "sh": SuccessiveHalvingScheduler,
        "hyperband": HyperbandScheduler,
        "asha": ASHAScheduler,
        "async-hyperband": AsyncHyperbandScheduler,
        "median": MedianStoppingScheduler,
    }
    if name not in kinds:
        close = difflib.get_close_matches(str(name), kinds, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"unknown scheduler kind {name!r}.{hint} Known kinds: {', '.join(kinds)}."
        )
    cls = kinds[name]
    reject_unknown(name, options, SCHEDULER_OPTIONS[name])
    given = {key: value for key, value in options.items() if value is not None}
    return cls(**given)
