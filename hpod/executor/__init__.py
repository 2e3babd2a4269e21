"""Executors start trials and carry the pipe protocol; see executor/base.py for the contract."""

from hpod.executor.base import Executor, RunningTrial, TrialExit
from hpod.executor.local import LocalExecutor, LocalTrial

__all__ = ["Executor", "RunningTrial", "TrialExit", "LocalExecutor", "LocalTrial"]
