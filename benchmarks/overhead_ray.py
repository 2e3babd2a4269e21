"""The Ray executor's per-trial cost against the local executor's, side by side in one run.

    python benchmarks/overhead_ray.py [--trials 100] [--json results.json]

N no-op trials (each reads its params and reports once), two at a time, through `hpod serve
--exit-when-idle`: once on the local executor (`--slots 2`), once on the Ray executor against a
local Ray instance with 2 CPUs that this script starts first, as a cluster would be running
already (the daemon connects with `--ray-address`). Trials/s is counted from the first trial's
start to the last one's end, so neither Ray's nor the daemon's start-up is in it; the whole
run, connection included, is reported too. Needs `pip install 'hpod[ray]'`.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

NOOP_TRIAL = """\
import hpod.trial as trial
params = trial.params()
trial.report(1, loss=float(params.get("x", 0.0)))
"""


def write_study(folder: Path, script: Path, trials: int, executor: str) -> None:
    (folder / "noop.toml").write_text(
        f"command = {json.dumps(['python', str(script)])}\n"
        'objective = { metric = "loss", direction = "minimize" }\n'
        f"budget = {{ trials = {trials} }}\n"
        "parallel = 2\n"
        "seed = 0\n"
        f"{executor}\n"
        "[space]\n"
        'x = { type = "float", low = 0.0, high = 1.0 }\n'
    )


def run(folder: Path) -> dict[str, float]:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "hpod", "serve", str(folder), "--slots", "2",
                    "--exit-when-idle", "--log-level", "warning"], check=True)
    total = time.perf_counter() - started
    con = sqlite3.connect(folder / ".hpod" / "hpod.db")
    try:
        first, last, complete, n = con.execute(
            "SELECT min(started_at), max(finished_at), sum(state = 'complete'), count(*) "
            "FROM trials").fetchone()
    finally:
        con.close()
    if complete != n:
        raise SystemExit(f"only {complete} of {n} trials completed in {folder}")
    span = last - first
    return {"trials": n, "span_s": span, "trials_per_s": n / span, "total_s": total}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    address = ray.get_runtime_context().gcs_address
    try:
        with tempfile.TemporaryDirectory(prefix="hpod-bench-ray-") as tmp:
            work = Path(tmp)
            script = work / "noop.py"
            script.write_text(NOOP_TRIAL)
            results = {}
            ray_table = f'executor = {{ kind = "ray", address = "{address}" }}'
            for name, table in (("local", ""), ("ray", ray_table)):
                folder = work / name
                folder.mkdir()
                write_study(folder, script, args.trials, table)
                results[name] = run(folder)
    finally:
        ray.shutdown()
    local, on_ray = results["local"], results["ray"]
    # Two trials run at once: each trial's own cost is twice the span per trial.
    extra_per_trial = 2 * (on_ray["span_s"] - local["span_s"]) / args.trials
    summary = {
        "local": local,
        "ray": on_ray,
        "ratio_trials_per_s": on_ray["trials_per_s"] / local["trials_per_s"],
        "extra_seconds_per_trial": extra_per_trial,
    }
    print(f"{args.trials} no-op trials, 2 at a time (trials/s from first start to last end)")
    for name, r in (("local", local), ("ray", on_ray)):
        print(f"  {name:5}  {r['trials_per_s']:6.2f} trials/s   whole run {r['total_s']:6.1f} s")
    print(f"  ray/local throughput ratio: {summary['ratio_trials_per_s']:.2f}; "
          f"extra per trial on Ray: {1000 * extra_per_trial:.0f} ms")
    if args.json is not None:
        args.json.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
