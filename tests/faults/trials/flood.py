"""Fixture trial: report `steps` steps as fast as the pipe takes them (heavy metric writes).

Params: x (float), `steps` (int). Writes its pid to `pid` in the trial folder first.
"""

import os

import hpod.trial as trial

params = trial.params()
x = float(params["x"])
steps = int(params.get("steps", 100_000))
(trial.trial_dir() / "pid").write_text(str(os.getpid()))
for step in range(steps):
    trial.report(step, loss=x + 1.0 / (step + 1), acc=step / steps)
