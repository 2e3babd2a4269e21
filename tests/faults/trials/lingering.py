"""Fixture trial: like quadratic.py, but told to pause it reports one more step before it
checkpoints (at the step it was paused at) and exits, as a trainer finishing its epoch would.

Params: x (float), `steps` (int), `sleep` (seconds per step).
"""

import sys
import time

import hpod.trial as trial

params = trial.params()
trial.declare_resumable()
x = float(params["x"])
steps = int(params.get("steps", 9))
resume = trial.resume_from()
first = int(resume.read_text()) + 1 if resume is not None else 1
for step in range(first, steps + 1):
    time.sleep(float(params.get("sleep", 0.0)))
    decision = trial.report(step, loss=(x - 0.3) ** 2 + 1.0 / step)
    if decision == "pause":
        if step < steps:
            trial.report(step + 1, loss=(x - 0.3) ** 2 + 1.0 / (step + 1))  # too late
        checkpoint = trial.trial_dir() / f"ckpt-{step}"
        checkpoint.write_text(str(step))
        trial.checkpoint(checkpoint)
        sys.exit(0)
    if decision == "stop":
        sys.exit(0)
