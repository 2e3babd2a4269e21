"""`python -m hpod.tui PATH/TO/hpod.db`: the live UI without the rest of the CLI."""

from __future__ import annotations

import sys
from pathlib import Path

from .entry import run_tui

USAGE = "usage: python -m hpod.tui PATH/TO/hpod.db  (or: hpod tui FOLDER)"
if len(sys.argv) == 2 and sys.argv[1] in ("-h", "--help"):
    print(USAGE)
    sys.exit(0)
if len(sys.argv) != 2:
    print(USAGE, file=sys.stderr)
    sys.exit(2)
sys.exit(run_tui(Path(sys.argv[1])))
