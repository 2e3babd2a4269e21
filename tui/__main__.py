"""`python -m hpod.tui PATH/TO/hpod.db`: the live UI without the rest of the CLI."""

from __future__ import annotations

import sys
from pathlib import Path

from .entry import run_tui

if len(sys.argv) != 2:
    print("usage: python -m hpod.tui PATH/TO/hpod.db", file=sys.stderr)
    sys.exit(2)
sys.exit(run_tui(Path(sys.argv[1])))
