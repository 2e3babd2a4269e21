"""The options a study's suggester is built with: the file's, plus the defaults that depend on
the rest of the study (its scheduler). Used to build it and, earlier, to check the file."""

from __future__ import annotations

from typing import Any

from hpod.spec_sections import SchedulerSpec, SuggesterSpec


def suggester_options(suggester: SuggesterSpec, scheduler: SchedulerSpec) -> dict[str, Any]:
    options = dict(suggester.options)
    top = scheduler.max_resource
    # Under a scheduler the GP models every level each trial reached (MOBSTER-JOINT), not one:
    # over 200 seeds of benchmarks/multifidelity.py it was better at half the budget and at
    # the end with rungs from epoch 1 or 3 (docs/benchmarks.md). Its level axis counts the
    # resource from 1 (epochs, steps): a resource in fractions (max_resource <= 1) keeps the
    # single-level model.
    if suggester.kind == "gp" and scheduler.kind != "fifo" and (top is None or top > 1):
        options.setdefault("fidelity", "joint")
    # The joint GP places a final result at the scheduler's full resource unless told otherwise.
    if options.get("fidelity") == "joint" and "max_resource" not in options and top is not None:
        options["max_resource"] = top
    return options
