"""Fixture trial: report once, wait until the file named by the `gate` param exists, then
report the objective and exit 0. Trials held at a gate all finish at the same moment.

Params: x (float), gate (path). Writes its pid to `pid` in the trial folder.
"""

import os
import time
from pathlib import Path

import hpod.trial as trial

params = trial.params()
x = float(params["x"])
(trial.trial_dir() / "pid").write_text(str(os.getpid()))
trial.report(0, loss=x + 1.0)
gate = Path(params["gate"])
while not gate.exists():
    time.sleep(0.01)
trial.report(1, loss=x)
