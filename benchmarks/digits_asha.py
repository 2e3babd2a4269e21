"""The digits example under the real daemon, with and without early stopping (issue 4).

Runs examples/digits (a Keras MLP on scikit-learn's bundled digits; needs the `tensorflow` extra)
twice per seed with `hpod run`: under `asha` (stop mode, rungs at epochs 1, 3 and 9 of 15) and
under `fifo`, each for the same wall-clock budget, with the example's random suggester and the
same seed, so both draw the same stream of configurations. From each run's store it prints:

- where each stopped trial stopped, against the rung levels (a trial stopped exactly at a rung
  boundary has the rung's epoch as its last step: the stop reached it in the answer to that
  epoch's report);
- the best val_accuracy of a complete trial at 50 % and 100 % of the budget, and when each run
  first held a complete trial at or above a target.

The two runs of a seed follow each other on the same cores; nothing else should load the machine
(a time budget measures the machine). Three seeds of 3.6 minutes take 22 minutes:

    .venv/bin/python benchmarks/digits_asha.py --seeds 3 --minutes 3.6
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections import Counter
from pathlib import Path
from typing import Any

from hpod.schedule.rungs import rung_levels
from hpod.store.reader import StoreReader
from hpod.store.records import TrialState

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "digits"
EPOCHS = 15
ETA = 3
TARGETS = (0.975, 0.98)


def study_file(folder: Path, kind: str, seed: int, minutes: float, min_resource: int) -> Path:
    """The example's study, renamed, with this scheduler, seed and a time-only budget (JSON, which
    hpod reads as well as TOML)."""
    spec: dict[str, Any] = tomllib.loads((EXAMPLE / "digits.toml").read_text())
    spec["name"] = f"digits-{kind}"
    spec["seed"] = seed
    spec["budget"] = {"hours": minutes / 60.0}
    spec["space"]["epochs"] = EPOCHS
    spec["scheduler"] = {"kind": "fifo"} if kind == "fifo" else {
        "kind": kind, "resource": "epoch", "min_resource": min_resource,
        "max_resource": EPOCHS, "reduction_factor": ETA}
    folder.mkdir(parents=True)
    shutil.copy(EXAMPLE / "train.py", folder / "train.py")
    path = folder / "digits.json"
    path.write_text(json.dumps(spec, indent=2))
    return path


def run_study(path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "hpod", "run", "--plain", str(path)],
                          cwd=path.parent, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"hpod run {path} failed ({done.returncode}):\n{done.stdout[-2000:]}"
                         f"{done.stderr[-2000:]}")


def summarise(folder: Path, kind: str, minutes: float) -> dict[str, Any]:
    with StoreReader(folder / ".hpod" / "hpod.db") as reader:
        study = reader.find_study(f"digits-{kind}")
        assert study is not None, f"no study digits-{kind} in {folder}"
        trials = reader.list_trials(study.id)
    t0 = min(t.started_at for t in trials if t.started_at is not None)
    complete = sorted((t.finished_at - t0, t.value) for t in trials
                      if t.state == TrialState.COMPLETE and t.value is not None
                      and t.finished_at is not None)

    def best_by(seconds: float) -> float:
        return max((v for at, v in complete if at <= seconds), default=float("nan"))

    running = _running_best(complete)
    reached = {target: next((at for at, best in running if best >= target), None)
               for target in TARGETS}
    return {
        "trials": len(trials),
        "complete": len(complete),
        "stopped_at": Counter(t.last_step for t in trials if t.state == TrialState.STOPPED),
        "half": best_by(minutes * 30.0),
        "full": best_by(float("inf")),
        "reached": reached,
    }


def _running_best(complete: list[tuple[float, float]]) -> list[tuple[float, float]]:
    out, best = [], float("-inf")
    for at, value in complete:
        best = max(best, value)
        out.append((at, best))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--minutes", type=float, default=3.6, help="each run's wall-clock budget")
    parser.add_argument("--min-resource", type=int, default=1, help="asha's first rung (epochs)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="keep the runs' folders here (default: a temporary folder)")
    args = parser.parse_args()
    levels = [int(level) for level in rung_levels(args.min_resource, EPOCHS, ETA)]
    root = args.workdir or Path(tempfile.mkdtemp(prefix="hpod-digits-"))
    print(f"# {args.minutes} min per run, asha rungs at epochs {levels} of {EPOCHS}; runs in {root}")
    print(f"{'seed':>4} {'scheduler':<9} {'trials':>6} {'complete':>8} {'stopped at (epoch: n)':<26} "
          f"{'best @50%':>9} {'best @100%':>10} " + " ".join(f"{'>= ' + str(t):>9}" for t in TARGETS))
    off_rung = 0
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        for kind in ("asha", "fifo"):
            folder = root / f"seed{seed}-{kind}"
            run_study(study_file(folder, kind, seed, args.minutes, args.min_resource))
            s = summarise(folder, kind, args.minutes)
            off_rung += sum(n for step, n in s["stopped_at"].items() if step not in levels)
            stops = ", ".join(f"{step}: {n}" for step, n in sorted(s["stopped_at"].items())) or "-"
            when = ["never" if s["reached"][t] is None else f"{s['reached'][t]:.0f} s"
                    for t in TARGETS]
            print(f"{seed:>4} {kind:<9} {s['trials']:>6} {s['complete']:>8} {stops:<26} "
                  f"{s['half']:>9.4f} {s['full']:>10.4f} " + " ".join(f"{w:>9}" for w in when),
                  flush=True)
    print(f"# stopped trials whose last epoch is not a rung level: {off_rung}")
    if args.workdir is None:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
