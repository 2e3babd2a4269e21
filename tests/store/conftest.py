"""Fixtures for the store tests: a real SQLite file in tmp_path, a settable clock, factories."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from hpod.store import (
    ALLOWED_TRANSITIONS,
    Direction,
    Store,
    StoreReader,
    StudyRecord,
    TrialRecord,
    TrialState,
    open_store,
)


class Clock:
    """A clock the test sets by hand, so every time column can be asserted exactly."""

    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float = 1.0) -> float:
        self.now += seconds
        return self.now


class AsyncView:
    """The reader's sync read methods behind the writer's async call shape.

    It lets one read-contract test run unchanged against the writer and the reader.
    """

    def __init__(self, reader: StoreReader) -> None:
        self._reader = reader

    def __getattr__(self, name: str) -> Callable[..., Awaitable[Any]]:
        method = getattr(self._reader, name)

        async def call(*args: Any, **kwargs: Any) -> Any:
            return method(*args, **kwargs)

        return call


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "studies" / ".hpod" / "hpod.db"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def store(db_path: Path, clock: Clock) -> AsyncIterator[Store]:
    async with open_store(db_path, clock=clock) as opened:
        yield opened


@pytest.fixture(params=["writer", "reader"])
async def view(request: pytest.FixtureRequest, store: Store, db_path: Path) -> AsyncIterator[Any]:
    """Read access through the writer itself or through a separate read-only connection."""
    if request.param == "writer":
        yield store
    else:
        with StoreReader(db_path) as reader:
            yield AsyncView(reader)


@pytest.fixture
def make_study(store: Store) -> Callable[..., Awaitable[StudyRecord]]:
    names = itertools.count()

    async def create(name: str | None = None, **overrides: Any) -> StudyRecord:
        fields: dict[str, Any] = {
            "spec": {"metric": "loss", "space": {"lr": [1e-4, 1e-1]}},
            "identity": "id-0",
            "direction": Direction.MINIMIZE,
            "metric": "loss",
        }
        fields.update(overrides)
        study_name = name if name is not None else f"study-{next(names)}"
        return await store.create_study(study_name, f"{study_name}.toml", **fields)

    return create


@pytest.fixture
def make_trial(
    store: Store, make_study: Callable[..., Awaitable[StudyRecord]]
) -> Callable[..., Awaitable[TrialRecord]]:
    """create(state=X) walks a new trial through legal moves until it is in state X."""

    async def create(
        state: TrialState = TrialState.QUEUED, *, study_id: int | None = None, **params: Any
    ) -> TrialRecord:
        if study_id is None:
            study_id = (await make_study()).id
        trial = await store.create_trial(study_id, params or {"lr": 0.01})
        for step in path_to(state)[1:]:
            trial = await store.transition(trial.id, step)
        return trial

    return create


def path_to(target: TrialState) -> list[TrialState]:
    """The shortest chain of legal moves from QUEUED to `target` (breadth-first)."""
    paths = {TrialState.QUEUED: [TrialState.QUEUED]}
    frontier = [TrialState.QUEUED]
    while frontier:
        state = frontier.pop(0)
        for nxt in sorted(ALLOWED_TRANSITIONS[state]):
            if nxt not in paths:
                paths[nxt] = [*paths[state], nxt]
                frontier.append(nxt)
    return paths[target]
