"""run_tui: what `hpod tui` and `hpod run` (on a terminal) call."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from hpod.store import StoreReader, StoreUnavailable


def run_tui(db_path: Path, *, exit_when: Callable[[], bool] | None = None) -> int:
    """Open the live UI on the database at `db_path`; returns the process exit code.

    The database must exist already (the daemon creates it): a wrong path is reported at once,
    on stderr, instead of an empty screen. `exit_when` closes the app once it returns True.
    """
    try:
        StoreReader(db_path).close()
    except StoreUnavailable as error:
        print(f"hpod tui: {error}", file=sys.stderr)
        return 2
    # Imported here: starting Textual costs time, and the error above needs none of it.
    from .app import HpodApp

    app = HpodApp(Path(db_path), exit_when=exit_when)
    app.run()
    return app.return_code or 0
