"""One study's internal failure fails that study, recorded, and the daemon and the others go on.

The fault is injected at the executor boundary: a wrapper around the real LocalExecutor that
raises a programming-error-like exception for one study's command.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from hpod.config import DaemonConfig
from hpod.daemon import Daemon
from hpod.executor.base import RunningTrial
from hpod.executor.local import LocalExecutor
from hpod.store import StoreReader

from helpers import quadratic_study, write_study


class ExplodingForOneStudy:
    def __init__(self) -> None:
        self._real = LocalExecutor()

    async def launch(self, argv: Sequence[str], *, env: Mapping[str, str], cwd: Path,
                     trial_dir: Path) -> RunningTrial:
        if env.get("HPOD_STUDY") == "broken":
            raise ZeroDivisionError("a bug deep inside hpod")
        return await self._real.launch(argv, env=env, cwd=cwd, trial_dir=trial_dir)


async def test_a_study_with_an_internal_error_fails_alone(tmp_path: Path) -> None:
    write_study(tmp_path, "broken", quadratic_study(trials=3))
    write_study(tmp_path, "healthy", quadratic_study(trials=4))
    db = tmp_path / ".hpod" / "hpod.db"
    config = DaemonConfig(db_path=db, folder=tmp_path, slots=2, exit_when_idle=True)
    await Daemon(config, executor=ExplodingForOneStudy()).run()

    with StoreReader(db) as reader:
        broken = reader.find_study("broken")
        healthy = reader.find_study("healthy")
        assert broken.state.value == "failed"
        assert "ZeroDivisionError: a bug deep inside hpod" in broken.error
        assert all(t.state.value != "running" for t in reader.list_trials(broken.id))
        assert healthy.state.value == "complete"
        assert reader.count_trials(healthy.id).complete == 4
        events = [e.message for e in reader.list_events(study_id=broken.id)]
        assert any("internal error" in message for message in events)
