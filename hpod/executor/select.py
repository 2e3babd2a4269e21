"""Which executor a daemon runs its trials with, and the daemon's part in its life.

`build_executor` is the one place that chooses; an executor for another kind of machine (a Ray
cluster) adds its branch there. An executor may hold processes of its own between trials (the
warm starts' spares): `retire_study` ends what a study no longer needs (once its budget is
spent, and when it ends), and `close_executor` ends everything at shutdown. Both do nothing for
an executor that holds none.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from hpod.config import DaemonConfig
from hpod.executor.base import Executor, RunningTrial
from hpod.executor.fd_slots import ChildFdSlots
from hpod.executor.local import LocalExecutor
from hpod.executor.spare_pool import runnable_elsewhere
from hpod.executor.spawn import find_setpriv
from hpod.executor.warm import WarmExecutor

if TYPE_CHECKING:
    from hpod.spec import StudySpec

SPARES_FOLDER = "spares"  # under the daemon's state folder, beside trials/


@runtime_checkable
class HoldsProcesses(Protocol):
    """An executor with processes of its own between trials."""

    async def retire(self, slot: str | None = None) -> None: ...

    async def aclose(self) -> None: ...


def build_executor(config: DaemonConfig, *, fd_slots: ChildFdSlots | None = None) -> Executor:
    """The daemon's executor for `config`: local trials, warm-started for studies with
    `[trial] preload` unless `config.spares` is "off". With `--executor ray` it is for the
    studies that choose `local`; the others run on the daemon's RayCluster (runs_on_ray).
    `fd_slots` (the process's descriptors 3 and 4, claimed at start-up) and a setpriv on PATH
    let trials start without a fork of the daemon (executor/spawn.py)."""
    if config.executor == "ray":
        from hpod.executor.ray import require_ray

        require_ray()  # a clear DaemonError at start-up, not at the first study
    setpriv = find_setpriv() if fd_slots is not None else None
    local = LocalExecutor(fd_slots=fd_slots, setpriv=setpriv)
    if config.spares == "off":
        return local
    return WarmExecutor(
        local,
        spare_dir=config.state_dir / SPARES_FOLDER,
        # "ignore-load": count only hpod's own busy processes against the cores.
        running=None if config.spares == "ignore-load" else runnable_elsewhere,
    )


def spare_slot(study: str) -> str:
    """The `slot` a study's launches pass: its trials share its spares, one per running trial."""
    return study


async def retire_study(executor: Executor, study: str) -> None:
    """The study has ended or will create no more trials: its spares go (they would wait for
    trials that never come). A later launch of the study starts cold, and wants a spare again."""
    if isinstance(executor, HoldsProcesses):
        await executor.retire(spare_slot(study))


def notify_launched(executor: Executor, then: Callable[[], None]) -> Executor:
    """`executor`, calling `then()` when each launch has returned or failed: the moment a spare
    may have been started behind the trial, and no spare is needed for that launch any more."""
    return _Notifying(executor, then)


class _Notifying:
    def __init__(self, inner: Executor, then: Callable[[], None]) -> None:
        self._inner = inner
        self._then = then

    def __repr__(self) -> str:
        return f"<notifying launches of {self._inner!r}>"

    async def launch(self, argv: Sequence[str], *, env: Mapping[str, str], cwd: Path,
                     trial_dir: Path, **options: Any) -> RunningTrial:
        # Forwarded as given: TrialRun names preload and slot only for a `preload` study.
        try:
            return await self._inner.launch(argv, env=env, cwd=cwd, trial_dir=trial_dir,
                                             **options)
        finally:
            self._then()


async def close_executor(executor: Executor) -> None:
    """The daemon is stopping: every spare goes (the trials were ended by their runners)."""
    if isinstance(executor, HoldsProcesses):
        await executor.aclose()


def runs_on_ray(spec: StudySpec, config: DaemonConfig) -> bool:
    """Whether a study's trials go to a Ray cluster: its `[executor] kind`, else the daemon's
    `--executor` (executor/ray.py; the daemon keeps one RayCluster for all such studies)."""
    return (spec.executor.kind or config.executor) == "ray"
