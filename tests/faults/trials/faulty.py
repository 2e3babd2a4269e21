"""Fixture trial that misbehaves in one chosen way: `faulty.py MODE`.

Every mode first writes its pid to `pid` in the trial folder (and a forked child's to
`child_pid`), so a test can check afterwards that nothing outlived the trial.

    exit3        report, write to stderr, exit 3
    segv         report, then die of SIGSEGV
    oom          report, write an out-of-memory message, then SIGKILL itself (as the OOM killer)
    hang         never report, never exit
    stall        report once, then never again and never exit
    garbage      junk lines between good reports, then exit 0
    nan / inf    the objective's last value is NaN / +Infinity
    megaline     a 5 MiB line on the report pipe between good reports
    close_exit   close the report and control pipes (and stdout/stderr) without reporting, exit 0
    close_hang   report, close the pipes, then never exit
    fork_fail    fork a child that holds the pipes and sleeps for ever; the parent exits 1
    fork_ok      the same child, the parent reports the objective and exits 0
    fork_run     the same child, the parent reports the objective and never exits
    term_hang    ignore SIGTERM and never exit (needs SIGKILL)
    transient    exit 1 on attempts 0 and 1 (as a CUDA OOM would), report on attempt 2;
                 appends "start <t>" / "end <t>" lines to `times` in the trial folder
    odd_fail     exit 1 on odd trial numbers, report on even ones
    ok           report the objective and exit 0
"""

import math
import os
import signal
import sys
import time

import hpod.trial as trial

mode = sys.argv[1]
folder = trial.trial_dir()
(folder / "pid").write_text(str(os.getpid()))
report_fd = int(os.environ["HPOD_REPORT_FD"])
control_fd = int(os.environ["HPOD_CONTROL_FD"])
x = float(trial.params()["x"])


def raw(data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(report_fd, view):]


def forever() -> None:
    while True:
        time.sleep(3600)


def fork_child() -> None:
    child = os.fork()
    if child == 0:
        forever()
    (folder / "child_pid").write_text(str(child))


if mode == "exit3":
    trial.report(0, loss=x)
    print("OSError: [Errno 122] Disk quota exceeded (simulated)", file=sys.stderr)
    sys.exit(3)
elif mode == "segv":
    trial.report(0, loss=x)
    print("about to crash in native code", file=sys.stderr, flush=True)
    os.kill(os.getpid(), signal.SIGSEGV)
elif mode == "oom":
    trial.report(0, loss=x)
    print("torch.OutOfMemoryError: CUDA out of memory (simulated)", file=sys.stderr, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
elif mode == "hang":
    forever()
elif mode == "stall":
    trial.report(0, loss=x)
    forever()
elif mode == "garbage":
    trial.report(0, loss=x + 1)
    raw(b"this is not json\n")
    raw(b"\xff\xfe\x00 binary \x00\n")
    raw(b"[1, 2, 3]\n")
    raw(b'{"step": -1, "loss": 1}\n')
    raw(b'{"loss": 1}\n')
    raw(b'{"step": 1, "loss": "low"}\n')
    raw(b"\n")
    trial.report(1, loss=x)
elif mode in ("nan", "inf"):
    trial.report(0, loss=x)
    trial.report(1, loss=math.nan if mode == "nan" else math.inf)
elif mode == "megaline":
    trial.report(0, loss=x + 1)
    raw(b'{"step": 1, "blob": "' + b"m" * (5 << 20) + b'"}\n')
    trial.report(2, loss=x)
elif mode == "close_exit":
    for fd in (report_fd, control_fd, 1, 2):
        os.close(fd)
    time.sleep(0.2)
    sys.exit(0)
elif mode == "close_hang":
    trial.report(0, loss=x)
    for fd in (report_fd, control_fd, 1, 2):
        os.close(fd)
    forever()
elif mode == "fork_fail":
    fork_child()
    trial.report(0, loss=x)
    print("parent gives up, its child lives on", file=sys.stderr)
    sys.exit(1)
elif mode == "fork_ok":
    fork_child()
    trial.report(0, loss=x)
    sys.exit(0)
elif mode == "fork_run":
    fork_child()
    trial.report(0, loss=x)
    forever()
elif mode == "term_hang":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    trial.report(0, ready=1)
    forever()
elif mode == "transient":
    with open(folder / "times", "a") as times:
        times.write(f"start {time.time()!r}\n")
    if int(os.environ["HPOD_ATTEMPT"]) < 2:
        print("RuntimeError: CUDA error: out of memory (simulated)", file=sys.stderr)
        with open(folder / "times", "a") as times:
            times.write(f"end {time.time()!r}\n")
        sys.exit(1)
    trial.report(0, loss=x)
elif mode == "odd_fail":
    if int(os.environ["HPOD_TRIAL_NUMBER"]) % 2:
        print("odd trial numbers fail", file=sys.stderr)
        sys.exit(1)
    trial.report(0, loss=x)
elif mode == "ok":
    trial.report(0, loss=x)
else:
    sys.exit(f"unknown mode {mode!r}")
