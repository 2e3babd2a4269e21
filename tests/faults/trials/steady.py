"""Fixture trial: a slow, deterministic run that checkpoints after every step and resumes.

Params: x (float), `steps` (int), `sleep` (seconds per step). Each start appends
"<attempt> <first step>" to `runs` in the trial folder, so a test can tell a resume from its
checkpoint (first step > 1) from a restart from scratch (first step 1).
"""

import os
import time

import hpod.trial as trial

params = trial.params()
x = float(params["x"])
steps = int(params.get("steps", 10))
folder = trial.trial_dir()
(folder / "pid").write_text(str(os.getpid()))
resume = trial.resume_from()
first = int(resume.read_text()) + 1 if resume is not None else 1
with open(folder / "runs", "a") as runs:
    runs.write(f"{os.environ['HPOD_ATTEMPT']} {first}\n")
for step in range(first, steps + 1):
    time.sleep(float(params.get("sleep", 0.0)))
    trial.report(step, loss=(x - 0.3) ** 2 + 1.0 / step)
    checkpoint = folder / f"ckpt-{step}"
    checkpoint.write_text(str(step))
    trial.checkpoint(checkpoint)
