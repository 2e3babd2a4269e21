"""Soak test: a night's worth of faults in minutes, then an exact account of every trial.

    python benchmarks/soak.py [--trials 2000] [--studies 8] [--kill-every 300] [--slots 4]
    python benchmarks/soak.py --quick        # 200 trials, a kill every 60: about two minutes

Runs `hpod serve` on a temporary folder of STUDIES studies sharing TRIALS short trials. The trial
script (written by this benchmark) reports three steps; by its parameter x, 5 % of the trials crash
after one report and 5 % hang after one report until `[trial] stall_timeout` kills them. Every
KILL_EVERY finished trials the daemon gets `kill -9` and is started again. Throughout, a reader
thread polls the store read-only the way the TUI does, and another samples the daemon's RSS.

Afterwards it checks, and prints:
- every planned trial is accounted for exactly once: numbers 0..n-1 per study, each in a final
  state, the faulty ones failed and the others complete;
- zero lost reports: each trial appends what it reported to a file in its folder; every report
  of a trial's last attempt is in the store (reports of attempts cut by a kill -9 within the
  write batch may be lost by design, docs/operations.md; they are counted apart);
- PRAGMA integrity_check is ok, the reader never saw "database is locked";
- no trial process outlives the daemon;
- the daemon's RSS is flat: within each daemon life, growth beyond 10 % after warm-up is flagged.
Exit code 0 when every check passes.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CRASH_BELOW, HANG_BELOW = 0.05, 0.10  # x < 0.05 crashes, x < 0.10 hangs: 10 % faulty
FINAL = {"complete", "stopped", "failed"}

TRIAL_SCRIPT = """\
import os, sys, time
import hpod.trial as trial

x = float(trial.params()["x"])
log = os.path.join(os.environ["HPOD_TRIAL_DIR"], "soak_reports.log")
attempt = os.environ.get("HPOD_ATTEMPT", "0")

def report(step):
    loss = round(x + step, 9)
    trial.report(step, loss=loss)
    with open(log, "a") as f:  # after the report: a line here means hpod was sent it
        f.write(f"{attempt} {step} {loss!r}\\n")

report(0)
if x < CRASH_BELOW:
    sys.exit(3)
if x < HANG_BELOW:
    time.sleep(3600)  # no more reports: stall_timeout ends it
for step in (1, 2):
    time.sleep(0.02)
    report(step)
""".replace("CRASH_BELOW", repr(CRASH_BELOW)).replace("HANG_BELOW", repr(HANG_BELOW))


@dataclass
class Shared:
    """What the reader thread sees, for the main loop."""

    finished: int = 0
    studies_done: int = 0
    polls: int = 0
    errors: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)


def write_studies(folder: Path, script: Path, trials: int, studies: int) -> dict[str, int]:
    plan: dict[str, int] = {}
    for i in range(studies):
        n = trials // studies + (1 if i < trials % studies else 0)
        name = f"soak-{i}"
        plan[name] = n
        path = folder / f"{name}.toml"
        path.write_text(
            f'command = ["python", "{script}"]\n'
            'objective = { metric = "loss", direction = "minimize" }\n'
            f"budget = {{ trials = {n} }}\n"
            "parallel = 2\n"
            f"seed = {i}\n"
            "max_failures = 1000000\n"
            "[trial]\ntimeout = 60\nstall_timeout = 1.0\ngrace = 1\n"
            "[space]\n"
            'x = { type = "float", low = 0.0, high = 1.0 }\n')
        path.chmod(0o600)
    return plan


def reader_loop(db: Path, shared: Shared, studies: int) -> None:
    """Poll like the TUI: studies, their counts and trials, read-only, as fast as it likes."""
    from hpod.store import StoreReader

    reader = None
    while not shared.stop.is_set():
        try:
            if reader is None:
                reader = StoreReader(db)
            finished = done = 0
            for study in reader.list_studies():
                counts = reader.count_trials(study.id)
                finished += counts.complete + counts.stopped + counts.failed
                done += study.state.value == "complete"
                reader.list_trials(study.id)
            shared.finished, shared.studies_done = finished, done
            shared.polls += 1
        except Exception as e:  # noqa: BLE001 - every error is a finding to report
            text = f"{type(e).__name__}: {e}"
            if "not an initialised" not in text and "no hpod database" not in text.lower() \
                    and "does not exist" not in text:
                shared.errors.append(text)
            if reader is not None:
                reader.close()
            reader = None
        shared.stop.wait(0.05)
    if reader is not None:
        reader.close()


def rss_kb(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def start_daemon(folder: Path, slots: int, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "hpod", "serve", str(folder), "--slots", str(slots),
         "--gpus", "none", "--log-level", "warning"],
        stdout=subprocess.DEVNULL, stderr=log.open("a"),
        env={**os.environ, "PYTHONUNBUFFERED": "1"})


def trial_processes(folder: Path) -> list[int]:
    """Live processes whose environment names a trial folder under `folder`."""
    needle = f"HPOD_TRIAL_DIR={folder}".encode()
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as f:
                if needle in f.read():
                    with open(f"/proc/{entry.name}/stat", "rb") as s:
                        stat = s.read()
                    if stat[stat.rfind(b")") + 2:].split()[0] != b"Z":
                        found.append(int(entry.name))
        except OSError:
            continue
    return found


def rss_growth(samples: list[tuple[int, float, int]]) -> list[tuple[int, float, int, int, float]]:
    """Per daemon life with enough samples: (life, seconds, warm RSS, end RSS, growth)."""
    lives: dict[int, list[tuple[float, int]]] = {}
    for life, t, kb in samples:
        lives.setdefault(life, []).append((t, kb))
    out = []
    for life, points in sorted(lives.items()):
        if len(points) < 20:
            continue  # too short a life to tell warm-up from growth
        n = len(points)
        warm = statistics.median(kb for _, kb in points[n // 4: n // 4 + max(1, n // 10)])
        end = statistics.median(kb for _, kb in points[-max(1, n // 10):])
        out.append((life, points[-1][0] - points[0][0], int(warm), int(end), end / warm - 1))
    return out


def check(folder: Path, db: Path, plan: dict[str, int]) -> dict[str, object]:
    from hpod.store import StoreReader

    result: dict[str, object] = {}
    problems: list[str] = []
    lost_final = lost_cut = stored = written = 0
    by_state: dict[str, int] = {}
    with StoreReader(db) as reader:
        for name, n in plan.items():
            study = reader.find_study(name)
            if study is None:
                problems.append(f"{name}: not in the store")
                continue
            trials = reader.list_trials(study.id)
            numbers = sorted(t.number for t in trials)
            if numbers != list(range(n)):
                problems.append(f"{name}: trial numbers {numbers[:5]}... ({len(numbers)}), "
                                f"expected 0..{n - 1}")
            for t in trials:
                by_state[t.state.value] = by_state.get(t.state.value, 0) + 1
                if t.state.value not in FINAL:
                    problems.append(f"{name}#{t.number}: left {t.state.value}")
                    continue
                faulty = float(t.params["x"]) < HANG_BELOW
                if faulty != (t.state.value == "failed"):
                    problems.append(f"{name}#{t.number}: x={t.params['x']:.3f} but "
                                    f"{t.state.value} ({t.reason})")
                folder_t = folder / ".hpod" / "trials" / name / f"{t.number:05d}"
                log = folder_t / "soak_reports.log"
                lines = log.read_text().split("\n") if log.exists() else []
                sent = [line.split() for line in lines if line]
                have = {(p.step, round(p.value, 9)) for _, p in reader.metrics(t.id)
                        if p.name == "loss"}
                stored += len(have)
                for attempt, step, loss in sent:
                    written += 1
                    if (int(step), round(float(loss), 9)) not in have:
                        if int(attempt) == t.attempt:
                            lost_final += 1
                            problems.append(f"{name}#{t.number}: report of step {step} lost")
                        else:
                            lost_cut += 1
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        integrity = "; ".join(r[0] for r in conn.execute("PRAGMA integrity_check"))
    finally:
        conn.close()
    if integrity != "ok":
        problems.append(f"integrity_check: {integrity}")
    result.update(planned=sum(plan.values()), by_state=by_state, reports_written=written,
                  reports_stored=stored, lost_in_final_attempts=lost_final,
                  lost_in_attempts_cut_by_kill9=lost_cut, integrity=integrity, problems=problems)
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=2000)
    parser.add_argument("--studies", type=int, default=8)
    parser.add_argument("--kill-every", type=int, default=300)
    parser.add_argument("--slots", type=int, default=4)
    parser.add_argument("--quick", action="store_true", help="200 trials, a kill every 60")
    parser.add_argument("--timeout", type=float, default=3600.0, help="give up after (s)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    if args.quick:
        args.trials, args.kill_every = 200, 60
    folder = Path(tempfile.mkdtemp(prefix="hpod-soak-"))
    folder.chmod(0o700)
    script = folder / "soak_trial.py"
    script.write_text(TRIAL_SCRIPT)
    script.chmod(0o600)
    plan = write_studies(folder, script, args.trials, args.studies)
    db, log = folder / ".hpod" / "hpod.db", folder / "daemon.log"
    print(f"soak: {args.trials} trials in {args.studies} studies, kill -9 every "
          f"{args.kill_every} finished trials, --slots {args.slots}; folder {folder}", flush=True)

    shared = Shared()
    samples: list[tuple[int, float, int]] = []
    life = 0
    daemon = start_daemon(folder, args.slots, log)
    started = time.monotonic()

    def sample_rss() -> None:
        while not shared.stop.wait(0.25):
            kb = rss_kb(daemon.pid)
            if kb is not None:
                samples.append((life, time.monotonic() - started, kb))

    threads = [threading.Thread(target=reader_loop, args=(db, shared, args.studies), daemon=True),
               threading.Thread(target=sample_rss, daemon=True)]
    for thread in threads:
        thread.start()
    kills, next_kill, timed_out = 0, args.kill_every, False
    while shared.studies_done < args.studies or shared.finished < args.trials:
        if time.monotonic() - started > args.timeout:
            timed_out = True
            break
        if daemon.poll() is not None:
            print(f"  daemon exited by itself with {daemon.returncode}; starting it again",
                  flush=True)
            life += 1
            daemon = start_daemon(folder, args.slots, log)
        if shared.finished >= next_kill:
            daemon.kill()  # SIGKILL: no chance to clean up, as after an OOM kill
            daemon.wait()
            kills += 1
            next_kill += args.kill_every
            print(f"  {time.monotonic() - started:7.1f} s: kill -9 #{kills} at "
                  f"{shared.finished} finished trials", flush=True)
            life += 1
            daemon = start_daemon(folder, args.slots, log)
        time.sleep(0.1)
    elapsed = time.monotonic() - started
    daemon.send_signal(signal.SIGTERM)
    daemon.wait(timeout=120)
    shared.stop.set()
    for thread in threads:
        thread.join(timeout=10)
    deadline = time.monotonic() + 10
    while (orphans := trial_processes(folder)) and time.monotonic() < deadline:
        time.sleep(0.2)

    result = check(folder, db, plan)
    growth = rss_growth(samples)
    flagged = [g for g in growth if g[4] > 0.10]
    problems: list[str] = list(result["problems"])  # type: ignore[arg-type]
    if timed_out:
        problems.append(f"not finished after {args.timeout:g} s")
    if shared.errors:
        problems.append(f"reader errors: {len(shared.errors)} (first: {shared.errors[0]})")
    if orphans:
        problems.append(f"trial processes left running: {orphans}")
    problems += [f"daemon life {g[0]}: RSS {g[2]} -> {g[3]} KiB (+{g[4]:.0%})" for g in flagged]
    print(f"finished in {elapsed:.1f} s: {result['planned']} trials planned, "
          f"{sum(result['by_state'].values())} in the store "  # type: ignore[union-attr]
          f"{json.dumps(result['by_state'], sort_keys=True)}; {kills} kill -9")
    print(f"reports: {result['reports_written']} lines written by trials (all attempts), "
          f"{result['reports_stored']} distinct reports stored; "
          f"lost in final attempts: {result['lost_in_final_attempts']}; "
          f"lost in attempts cut by kill -9: {result['lost_in_attempts_cut_by_kill9']}")
    print(f"integrity_check: {result['integrity']}; reader: {shared.polls} polls, "
          f"{len(shared.errors)} errors; orphans: {len(orphans)}")
    for life_no, seconds, warm, end, g in growth:
        print(f"RSS life {life_no}: {seconds:6.1f} s, after warm-up {warm / 1024:.1f} MiB, "
              f"at the end {end / 1024:.1f} MiB ({g:+.1%})")
    if all_kb := [kb for _, _, kb in samples]:
        print(f"RSS over the run: min {min(all_kb) / 1024:.1f} MiB, max {max(all_kb) / 1024:.1f} MiB"
              f" ({len(samples)} samples)")
    for problem in problems[:30]:
        print(f"PROBLEM: {problem}")
    print("soak: " + ("OK" if not problems else f"{len(problems)} problem(s)"))
    if not args.keep and not problems:
        subprocess.run(["rm", "-rf", str(folder)], check=False)
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
