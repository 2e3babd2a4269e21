"""Fixture trial: reports its objective and exits 0, leaving behind a process in a session of
its own that holds the report pipe open (what a data-loader worker started with setsid might
do). The daemon then waits a few seconds for the pipe to drain after the trial's exit.

Writes its own pid to `pid` and the holder's to `holder` in its trial folder.
"""

import os
import subprocess
import sys

import hpod.trial as trial

folder = trial.trial_dir()
trial.report(1, loss=0.25)
fd = int(os.environ["HPOD_REPORT_FD"])
holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"],
                          start_new_session=True, pass_fds=(fd,))
(folder / "holder").write_text(str(holder.pid))
(folder / "pid").write_text(str(os.getpid()))
