"""hpod: a hyperparameter-optimization daemon.

The public facade is loaded lazily: `import hpod.trial` inside a trial process must not pay for
numpy/scipy (PEP 562 module __getattr__).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["Space", "make_suggester", "make_scheduler", "Decision", "__version__"]

if TYPE_CHECKING:
    from hpod.decision import Decision
    from hpod.space import Space
    from hpod.suggest import make_suggester
    from hpod.schedule import make_scheduler

_LAZY = {
    "Space": ("hpod.space", "Space"),
    "make_suggester": ("hpod.suggest", "make_suggester"),
    "make_scheduler": ("hpod.schedule", "make_scheduler"),
    "Decision": ("hpod.decision", "Decision"),
}


def __getattr__(name: str) -> Any:
    try:
        module_name, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'hpod' has no attribute {name!r}") from None
    import importlib

    return getattr(importlib.import_module(module_name), attr)
