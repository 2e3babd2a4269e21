"""`make demo`: run the example studies with the real daemon and show them live.

Each example's study file is copied into a fresh demo folder (as JSON, with its command made
absolute, which also shows that JSON study files work); `hpod serve --exit-when-idle` runs
them all at once, sharing the slots fairly, while this script redraws `hpod status` twice a
second. It ends by itself and prints where the results are.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent
EXAMPLES = ("quick/quick.toml", "shell/shell.toml", "digits/digits.toml")


def prepare(folder: Path, examples: list[str]) -> None:
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    for relative in examples:
        source = HERE / relative
        study = tomllib.loads(source.read_text())
        study["command"] = [
            str(source.parent / arg) if (source.parent / arg).exists() else arg
            for arg in study["command"]
        ]
        study.setdefault("workdir", str(source.parent))
        (folder / f"{source.stem}.json").write_text(json.dumps(study, indent=2))


def status(db: Path) -> str:
    from hpod import report
    from hpod.lock import serving_pid
    from hpod.store.errors import StoreError
    from hpod.store.reader import StoreReader

    try:
        with StoreReader(db) as reader:
            return report.format_status(report.status(reader, serving_pid(db)))
    except StoreError:
        return "starting the daemon..."


def show_in_tui(db: Path, daemon: subprocess.Popen[bytes]) -> None:
    """The live terminal UI on the demo's database; it closes when the daemon is done."""
    from hpod.run_once import wait_for_database
    from hpod.tui.entry import run_tui

    if wait_for_database(db, daemon):
        run_tui(db, exit_when=lambda: daemon.poll() is not None)


def print_status_until_done(db: Path, daemon: subprocess.Popen[bytes]) -> None:
    """Not on a terminal (CI, a pipe): `hpod status` again whenever it changes."""
    last = ""
    started = time.monotonic()
    while daemon.poll() is None:
        text = status(db)
        if text != last:
            print(f"[{time.monotonic() - started:5.1f} s]\n{text}\n", flush=True)
            last = text
        time.sleep(0.5)  # a display refresh rate, nothing waits on it


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", type=Path, default=Path("build/demo"))
    parser.add_argument("--slots", type=int, default=2)
    parser.add_argument("--only", action="append", help="run only these examples (e.g. quick)")
    args = parser.parse_args()

    folder = args.folder.resolve()
    examples = [e for e in EXAMPLES if not args.only or e.split("/")[0] in args.only]
    prepare(folder, examples)
    db = folder / ".hpod" / "hpod.db"
    log_path = folder / "daemon.log"
    tty = sys.stdout.isatty()
    print(f"demo: running {', '.join(e.split('/')[0] for e in examples)} in {folder}")
    print(f"demo: the daemon's log is {log_path}\n")
    with log_path.open("w") as log:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "hpod", "serve", str(folder), "--slots", str(args.slots),
             "--exit-when-idle"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        )
        try:
            if tty and sys.stdin.isatty():
                show_in_tui(db, daemon)
            else:
                print_status_until_done(db, daemon)
        except KeyboardInterrupt:
            daemon.terminate()
        code = daemon.wait()
    print("\n" + status(db))
    print(f"\ndemo finished (daemon exit code {code}). Results: {db}")
    print(f"  .venv/bin/hpod status {folder}")
    print(f"  .venv/bin/hpod best {folder} quick")
    print(f"  .venv/bin/hpod importance {folder} quick")
    print(f"  .venv/bin/hpod trials {folder} digits --format csv")
    print(f"  trial logs: {folder / '.hpod' / 'trials'}")
    return code


if __name__ == "__main__":
    sys.exit(main())
