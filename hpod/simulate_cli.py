"""The `hpod simulate` subcommand: its parser, and the table or JSON it prints.

Kept out of hpod.cli, which builds every parser on each start: importing this module is cheap
(the simulation, numpy and the suggesters are imported when the command runs).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hpod.simulation import StudySimulation

__all__ = ["add_simulate_parser", "run_simulate", "format_simulation", "simulation_dict",
           "positive_int"]


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1 (also for hpod.cli's --slots and --limit)."""
    return _whole_number(text, 1)


def non_negative_int(text: str) -> int:
    """argparse type: a whole number >= 0 (hpod.cli's --step: steps may count from 0)."""
    return _whole_number(text, 0)


def _whole_number(text: str, least: int) -> int:
    try:
        value = int(text)
    except ValueError:
        value = least - 1
    if value < least:
        raise argparse.ArgumentTypeError(f"must be a whole number >= {least}, got {text!r}")
    return value


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"must be a whole number from 0 to 2**63 - 1, got "
                                          f"{text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text!r}")
    return value


def add_simulate_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add `hpod simulate STUDY_FILE [--workers N] [--curves synthetic|STORE_DB] [--seed S]
    [--trials N] [--epoch-seconds S] [--json]`."""
    parser = subparsers.add_parser(
        "simulate",
        help="replay a study on a virtual clock: what it would reach, and by when",
        description="Replay the study in STUDY_FILE without training anything: its suggester "
        "and scheduler (the daemon's own code) run N virtual workers against learning curves, "
        "and the table shows what the study would have reached by when. Curves are synthetic "
        "(over the study's own space: they cross, are noisy, and some configurations train "
        "slower than others) or recorded by a real run of the study (--curves "
        "FOLDER/.hpod/hpod.db: each simulated trial replays the recorded complete trial with "
        "the nearest params). The same seed gives the same output. See docs/schedulers.md.",
    )
    parser.add_argument("file", type=Path, metavar="STUDY_FILE", help="the study file")
    parser.add_argument("--workers", type=positive_int, metavar="N",
                        help="virtual workers (default: the study's `parallel`)")
    parser.add_argument("--curves", default="synthetic", metavar="synthetic|STORE_DB",
                        help="`synthetic` (default), or an hpod database holding a run of "
                        "the study (same name)")
    parser.add_argument("--seed", type=_seed, default=0, metavar="S",
                        help="seed of the synthetic curves, and of the suggester when the study "
                        "file sets none (default 0)")
    parser.add_argument("--trials", type=positive_int, metavar="N",
                        help="start at most N trials (default: the budget's trials; "
                        "1000 when the budget gives only hours, which run on the virtual clock)")
    parser.add_argument("--epoch-seconds", type=_positive_float, default=1.0, metavar="S",
                        help="synthetic curves: the mean seconds a step (epoch) takes "
                        "(default 1; each configuration is up to e ≈ 2.7 times faster or slower)")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    return parser


def run_simulate(args: argparse.Namespace) -> int:
    from hpod.recorded_curves import RecordedCurves
    from hpod.simulation import CurveSource, SimulationError, simulate_study, synthetic_curves
    from hpod.spec import load_study_file
    from hpod.store import StoreUnavailable

    spec = load_study_file(args.file)
    curves: CurveSource
    if args.curves == "synthetic":
        curves = synthetic_curves(spec, seed=args.seed, epoch_seconds=args.epoch_seconds)
        label = "synthetic"
    else:
        db = Path(args.curves)
        if not db.is_file():
            raise SimulationError("no such database", path=str(db), field="--curves",
                                  fix="give FOLDER/.hpod/hpod.db of a folder where the study "
                                  "ran, or `synthetic`")
        try:
            curves = RecordedCurves.load(db, spec)
        except StoreUnavailable as error:
            raise SimulationError(f"cannot read it as an hpod database ({error})", path=str(db),
                                  field="--curves",
                                  fix="give FOLDER/.hpod/hpod.db of a folder where the study "
                                  "ran, or `synthetic`") from None
        label = str(db.resolve())
    sim = simulate_study(spec, workers=args.workers, curves=curves, curves_label=label,
                         seed=args.seed, max_trials=args.trials)
    doc = simulation_dict(sim)
    print(json.dumps(doc, indent=2) if args.json else format_simulation(doc))
    return 0


def simulation_dict(sim: StudySimulation) -> dict[str, Any]:
    from hpod.schedule.rank_agreement import weak_first_rung_advice

    spec = sim.spec
    trials = sim.result.trials
    best = sim.best_trial()
    counts: dict[str, int] = {}
    for trial in trials:
        counts[trial.state.value] = counts.get(trial.state.value, 0) + 1
    return {
        "study": spec.name,
        "file": str(spec.path),
        "suggester": spec.suggester.kind,
        "scheduler": spec.scheduler.kind,
        "mode": spec.scheduler.mode,
        "objective": {"metric": spec.objective.metric,
                      "direction": spec.objective.direction.value},
        "workers": sim.workers,
        "curves": sim.curves,
        "seed": sim.seed,
        "trial_cap": sim.capped,
        "notes": list(sim.notes),
        "virtual_seconds": sim.result.total_time,
        "steps_trained": sim.result.total_steps,
        "trials": len(trials),
        "states": counts,
        "timeline": sim.timeline(),
        "rank_agreement": [
            {"level": a.level, "curves": a.curves,
             "spearman": a.spearman if math.isfinite(a.spearman) else None}
            for a in sim.rank_agreement],
        "advice": weak_first_rung_advice(sim.rank_agreement, spec.scheduler.kind),
        "best": None if best is None else {
            "trial": best[0], "value": best[1], "at": best[2], "params": sim.params[best[0]]},
    }


def format_simulation(doc: dict[str, Any]) -> str:
    total = doc["virtual_seconds"]
    metric = doc["objective"]["metric"]
    mode = f" ({doc['mode']} mode)" if doc["scheduler"] not in ("fifo", "median") else ""
    curves = "synthetic curves" if doc["curves"] == "synthetic" else f"curves from {doc['curves']}"
    lines = [
        f"study {doc['study']} ({doc['file']}), simulated: {doc['suggester']} suggester, "
        f"{doc['scheduler']} scheduler{mode}, {doc['workers']} worker"
        f"{'' if doc['workers'] == 1 else 's'}, {curves}, seed "
        f"{doc['seed']}",
        f"{doc['trials']} trials ({_states(doc['states'])}) in {_time(total, total)} of virtual "
        f"time, {doc['steps_trained']} steps trained",
    ]
    lines += [f"({note})" for note in doc["notes"]]
    if doc["states"].get("paused"):
        lines.append(f"({doc['states']['paused']} trials were left paused, never promoted: the "
                     "daemon stops them once the budget is spent)")
    head = ("virtual time", "started", "stopped", "complete", f"best {metric}")
    rows = [(_time(r["time"], total), str(r["started"]), str(r["stopped"]), str(r["complete"]),
             "-" if r["best"] is None else f"{r['best']:.6g}") for r in doc["timeline"]]
    widths = [max(len(row[i]) for row in (head, *rows)) for i in range(len(head))]
    lines.append("")
    for row in (head, *rows):
        lines.append("  ".join(cell.rjust(width) for cell, width in zip(row, widths)))
    lines.append("")
    lines += _agreement_lines(doc)
    best = doc["best"]
    if best is None:
        lines.append("no trial completed: no best value")
    else:
        lines.append(f"best {metric} = {best['value']:.6g}: trial #{best['trial']}, complete at "
                     f"{_time(best['at'], total)} of virtual time")
        lines.append("  " + ", ".join(f"{k} = {_value(v)}" for k, v in best["params"].items()))
    return "\n".join(lines)


def _agreement_lines(doc: dict[str, Any]) -> list[str]:
    """The rank correlation of each rung's values with the final ones, and the advice."""
    rows = doc["rank_agreement"]
    if not rows:
        return []
    table = [["resource", *(_value(r["level"]) for r in rows)],
             ["Spearman", *("-" if r["spearman"] is None else f"{r['spearman']:.2f}" for r in rows)],
             ["curves", *(str(r["curves"]) for r in rows)]]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    lines = ["how well each rung ranks trials: Spearman correlation of the values there with the "
             "final values"]
    lines += ["  " + "  ".join(cell.ljust(w) if i == 0 else cell.rjust(w)
                               for i, (cell, w) in enumerate(zip(row, widths))) for row in table]
    if all(r["spearman"] is None for r in rows):
        lines.append("  (- : fewer than 5 curves judged there, or all their values tie)")
    if doc["advice"]:
        lines += _wrap(f"note: {doc['advice']}")
    return [*lines, ""]


def _wrap(text: str, width: int = 100) -> list[str]:
    """Wrapped lines that never break inside a `code span` (it is copied into study files)."""
    glue = "\u00a0"
    kept = re.sub(r"`[^`]*`", lambda m: m.group(0).replace(" ", glue), text)
    return [line.replace(glue, " ") for line in
            textwrap.wrap(kept, width=width, subsequent_indent="  ", break_on_hyphens=False)]


def _states(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "none"


def _time(seconds: float, total: float) -> str:
    """Seconds with a decimal for short simulations, h:mm:ss for the rest."""
    if total < 600:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    return f"{whole // 3600}:{whole % 3600 // 60:02d}:{whole % 60:02d}"


def _value(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else json.dumps(value)
