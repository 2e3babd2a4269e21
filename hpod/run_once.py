"""`hpod run FILE`: one study in the foreground with a progress line; exits when it is done."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TextIO

from hpod.config import DaemonConfig, default_db_path, default_slots
from hpod.controller import StudyProgress
from hpod.errors import DaemonError
from hpod.report import best_of_study
from hpod.store.records import StudyState

BAR_WIDTH = 24


class ProgressLine:
    """A redrawn line on a terminal; one line per change otherwise (logs, CI)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._tty = stream.isatty()
        self._last = ""

    def update(self, progress: StudyProgress) -> None:
        text = render(progress)
        if text == self._last:
            return
        self._last = text
        if self._tty:
            self._stream.write("\r\x1b[2K" + text)
        else:
            self._stream.write(text + "\n")
        self._stream.flush()

    def close(self) -> None:
        if self._tty and self._last:
            self._stream.write("\n")
            self._stream.flush()


def render(progress: StudyProgress) -> str:
    counts = progress.counts
    done = counts.get("complete", 0) + counts.get("stopped", 0) + counts.get("failed", 0)
    budget = progress.budget_runs
    if budget:
        filled = min(BAR_WIDTH, round(BAR_WIDTH * done / budget))
        bar = f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {done}/{budget}"
    else:
        bar = f"{done} done"
    parts = [f"{progress.name} {bar}", f"{counts.get('running', 0)} running"]
    if counts.get("failed"):
        parts.append(f"{counts['failed']} failed")
    if counts.get("stopped"):
        parts.append(f"{counts['stopped']} stopped")
    if progress.best_value is not None:
        parts.append(f"best {progress.best_value:.6g} (#{progress.best_number})")
    return " · ".join(parts)


def run_study_file(path: Path, *, db: Path | None, slots: int | None, gpus: str = "all",
                   min_free_memory_mb: int = 1024, stream: TextIO = sys.stderr) -> int:
    from hpod.daemon import Daemon
    from hpod.spec import load_study_file
    from hpod.store.reader import StoreReader

    spec = load_study_file(path)  # a broken file is reported here, before anything starts
    db_path = db.resolve() if db is not None else default_db_path(path.parent)
    config = DaemonConfig(
        db_path=db_path,
        study_files=(path,),
        slots=default_slots() if slots is None else slots,
        exit_when_idle=True,
        gpus=gpus,
        min_free_memory_mb=min_free_memory_mb,
    )
    line = ProgressLine(stream)
    try:
        asyncio.run(Daemon(config, on_progress=line.update).run())
    finally:
        line.close()
    with StoreReader(db_path) as reader:
        study = reader.find_study(spec.name)
        if study is None:
            raise DaemonError(f"study {spec.name} was not recorded in {db_path}")
        # The best configuration, as `hpod best` says it: with [trial] repeats, by its mean.
        best = best_of_study(reader, study)
    if study.error:
        print(f"study {spec.name}: {study.error}", file=stream)
    if best is not None and best["value"] is not None:
        which = (f"configuration #{best['trial']}, mean of {len(best['values'])} runs"
                 if "runs" in best else f"trial #{best['trial']}")
        print(f"study {spec.name} {study.state.value}: best {spec.objective.metric} = "
              f"{best['value']:.6g} ({which}) with {best['params']}", file=stream)
    else:
        print(f"study {spec.name} {study.state.value}: no trial completed, so there is no "
              f"best {spec.objective.metric} (`hpod trials` says why each ended)", file=stream)
    # The commands to read them, as they must be typed: with --db when it is not the default.
    where = str(path.parent) if db is None else f"{path.parent} --db {db_path}"
    print(f"results: {db_path} (hpod status {where}, hpod trials {where} {spec.name})",
          file=stream)
    # A study that ran out of budget with nothing to show did not succeed (a CI smoke run).
    has_result = best is not None and best["value"] is not None
    return 0 if study.state is StudyState.COMPLETE and has_result else 1


def report_unfinished(db_path: Path, folder: Path, stream: TextIO = sys.stderr) -> int:
    """Name, one line each, the studies of `folder`'s files that did not complete (failed,
    stopped, paused, or an invalid file); how many. What `hpod serve --exit-when-idle` ends
    with, so that a script can tell a night that went wrong from one that did not."""
    from hpod.reasons import reason_in_one_line
    from hpod.store.reader import StoreReader

    with StoreReader(db_path) as reader:
        # lexists: a broken link or a folder named x.toml is an invalid study file, not none.
        ours = [s for s in reader.list_studies()
                if Path(s.path).parent == folder and os.path.lexists(s.path)]
        # A study that spent its budget with no trial complete has nothing to show either.
        empty = {s.id for s in ours if s.state is StudyState.COMPLETE
                 and reader.count_trials(s.id).complete == 0}
    unfinished = [s for s in ours if s.state is not StudyState.COMPLETE or s.id in empty]
    for study in unfinished:
        if study.id in empty:
            why = " with no trial complete (`hpod trials` says why each ended)"
        else:
            why = f": {reason_in_one_line(study.error)}" if study.error else ""
        print(f"hpod: study {study.name} ({Path(study.path).name}) is {study.state.value}{why}",
              file=stream)
    return len(unfinished)


def run_with_tui(path: Path, plain_argv: list[str]) -> int:
    """`hpod run` on a terminal: the study runs in a plain `hpod run` child (its log beside
    the database), the live UI shows it, and both end when the study is done. Quitting the UI
    early stops the study cleanly (its running trials are requeued at the next run)."""
    from hpod.spec import load_study_file
    from hpod.tui.entry import run_tui

    spec = load_study_file(path)  # a broken file is reported here, before anything starts
    db_flag = plain_argv.index("--db") + 1 if "--db" in plain_argv else None
    db_path = Path(plain_argv[db_flag]) if db_flag else default_db_path(path.parent)
    db_path.parent.mkdir(parents=True, exist_ok=True)
    log_path = db_path.parent / f"run-{spec.name}.log"
    with log_path.open("w") as log:
        child = subprocess.Popen([sys.executable, "-m", "hpod", *plain_argv],
                                 stdout=log, stderr=subprocess.STDOUT)
        try:
            if not wait_for_database(db_path, child):
                print(log_path.read_text(), file=sys.stderr)
                return child.wait()
            run_tui(db_path, exit_when=lambda: child.poll() is not None)
        finally:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
            code = child.wait()
    if code < 0:  # ended by our SIGTERM: the UI was quit before the study was done
        code = 128 - code
    # The child's last lines are its summary: the best trial and where the results are.
    print("\n".join(log_path.read_text().splitlines()[-3:]))
    return code


def wait_for_database(db_path: Path, child: subprocess.Popen[bytes], timeout: float = 60.0) -> bool:
    """Until the child has created and initialised the database (True) or died (False)."""
    from hpod.store.errors import StoreError
    from hpod.store.reader import StoreReader

    deadline = time.monotonic() + timeout
    while child.poll() is None and time.monotonic() < deadline:
        try:
            StoreReader(db_path).close()
            return True
        except StoreError:
            time.sleep(0.05)  # another process is creating it: nothing to await but time
    return False
