"""Files caught half-written in the watched folder, through the daemon's intake with a real store.

A trial that writes a large JSON where it runs (the study file's folder, by default) can be read
between two of its writes: that reads as a broken study. Once whole, the file holds no study,
and the broken study it was recorded as must not stay in the list for good. A file seen holding
a study's keys is still reported when it is rewritten without them (test_serve's
test_a_broken_study_rewritten_without_its_keys_stays_reported), and a study that ever had a
definition is never forgotten.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from helpers import quadratic_study, study_status, wait_until, write_study
from hpod.config import DaemonConfig
from hpod.intake import StudyIntake
from hpod.store import StudyState, open_store
from hpod.watcher import StudyFileEvent

WHOLE = json.dumps({"loss": [0.5, 0.25, 0.125], "epochs": 3})
HALF = WHOLE[:17]


async def _intake(folder: Path, store) -> tuple[StudyIntake, list[str]]:
    started: list[str] = []
    config = DaemonConfig(db_path=folder / ".hpod" / "hpod.db", folder=folder)
    intake = StudyIntake(config, store, start=lambda spec, _rec: started.append(spec.name),
                         live={})
    return intake, started


async def save(intake: StudyIntake, path: Path, text: str) -> None:
    """Write the file and hand the intake the event the watcher would send for it."""
    path.write_text(text)
    await intake.handle(StudyFileEvent(path, present=True))


async def test_a_file_caught_half_written_that_holds_no_study_is_forgotten(tmp_path: Path) -> None:
    path = tmp_path / "metrics.json"
    async with open_store(tmp_path / ".hpod" / "hpod.db") as store:
        intake, started = await _intake(tmp_path, store)
        await save(intake, path, HALF)
        (broken,) = await store.list_studies()
        assert (broken.name, broken.state) == ("metrics", StudyState.INVALID)
        assert "JSON syntax error" in (broken.error or "")

        await save(intake, path, WHOLE)
        assert await store.list_studies() == [] and started == []
        messages = [event.message for event in await store.list_events()]
        assert any("study metrics, which never had a valid definition, is removed" in m
                   for m in messages), messages
        assert messages[-1].startswith(f"{path} is ignored: not a study file")

        # Written again, and again whole: nothing more to record or say.
        await save(intake, path, WHOLE.replace("3}", "4}"))
        assert len(await store.list_events()) == len(messages)
        assert await store.list_studies() == []
        # Caught half-written again at its next write: recorded, and forgotten again.
        await save(intake, path, HALF)
        assert [s.name for s in await store.list_studies()] == ["metrics"]
        await save(intake, path, WHOLE)
        assert await store.list_studies() == []


async def test_a_file_seen_as_a_broken_study_is_still_reported_once_it_fails_to_parse(
        tmp_path: Path) -> None:
    # Keys first (a study being written), then a syntax error, then none of a study's keys:
    # it was seen as a study, so the edit in progress is still reported.
    path = tmp_path / "draft.json"
    async with open_store(tmp_path / ".hpod" / "hpod.db") as store:
        intake, _ = await _intake(tmp_path, store)
        for text in ('{"command": ["python", "x.py"], "paralel": 2}', '{"command": ["py',
                     '{"title": "draft"}'):
            await save(intake, path, text)
        (draft,) = await store.list_studies()
        assert draft.state is StudyState.INVALID
        assert "not a study file" in (draft.error or "")


async def test_after_a_restart_a_never_valid_record_of_a_file_holding_no_study_goes(
        tmp_path: Path) -> None:
    path = tmp_path / "losses.json"
    db = tmp_path / ".hpod" / "hpod.db"
    async with open_store(db) as store:
        intake, _ = await _intake(tmp_path, store)
        path.write_text(HALF)
        await intake.handle(StudyFileEvent(path, present=True, initial=True))
        assert [s.state for s in await store.list_studies()] == [StudyState.INVALID]
    path.write_text(WHOLE)  # finished while no daemon ran
    async with open_store(db) as store:
        intake, _ = await _intake(tmp_path, store)
        await intake.handle(StudyFileEvent(path, present=True, initial=True))
        assert await store.list_studies() == []


async def test_a_broken_file_removed_leaves_no_study_behind(tmp_path: Path) -> None:
    path = tmp_path / "typo.toml"
    async with open_store(tmp_path / ".hpod" / "hpod.db") as store:
        intake, _ = await _intake(tmp_path, store)
        await save(intake, path, 'command = ["python", "x.py"]\nparalel = 2\n')
        assert [s.name for s in await store.list_studies()] == ["typo"]
        path.unlink()
        await intake.handle(StudyFileEvent(path, present=False))
        assert await store.list_studies() == []
        messages = [event.message for event in await store.list_events()]
        assert messages[-1] == ("study typo, which never had a valid definition, is removed: its "
                                "study file typo.toml was removed")


async def test_a_study_that_had_a_definition_is_kept_when_its_file_holds_none(
        tmp_path: Path) -> None:
    path = write_study(tmp_path, "kept", quadratic_study(trials=2))
    async with open_store(tmp_path / ".hpod" / "hpod.db") as store:
        intake, started = await _intake(tmp_path, store)
        await intake.handle(StudyFileEvent(path, present=True))
        assert started == ["kept"]
        await save(intake, path, '{"not": "toml"')
        await save(intake, path, 'title = "notes"\n')
        (kept,) = await store.list_studies()
        assert kept.spec is not None and "not a study file" in (kept.error or "")


def test_a_daemon_forgets_a_file_it_caught_half_written(tmp_path: Path, start_daemon) -> None:
    daemon = start_daemon(tmp_path)
    path = tmp_path / "results.json"
    path.write_text(HALF)
    wait_until(lambda: (study_status(tmp_path, "results") or {}).get("state") == "invalid",
               what="the half-written file recorded as a broken study")
    path.write_text(WHOLE)
    wait_until(lambda: study_status(tmp_path, "results") is None,
               what="the broken study forgotten", timeout=30)
    assert daemon.terminate() == 0, daemon.log()


async def test_a_trials_half_written_file_named_like_its_study_neither_marks_nor_blocks_it(
        tmp_path: Path) -> None:
    # results.json took the stem `results`: its syntax error went onto study `results`, and
    # once it was whole, a save of results.toml was refused as a second file of that name.
    study = write_study(tmp_path, "results", quadratic_study(trials=2))
    side = tmp_path / "results.json"
    async with open_store(tmp_path / ".hpod" / "hpod.db") as store:
        intake, started = await _intake(tmp_path, store)
        await intake.handle(StudyFileEvent(study, present=True))
        await save(intake, side, HALF)
        results = await store.find_study("results")
        assert results is not None and results.error is None
        broken = await store.find_study("results.json")
        assert broken is not None and broken.state is StudyState.INVALID
        await save(intake, side, WHOLE)
        assert [s.name for s in await store.list_studies()] == ["results"]
        await save(intake, study, quadratic_study(trials=4))  # more budget: applied, not refused
        assert started == ["results", "results"]
        results = await store.find_study("results")
        assert results is not None and results.error is None


async def test_at_a_start_a_half_written_file_read_first_does_not_take_its_studys_name(
        tmp_path: Path) -> None:
    study = write_study(tmp_path, "results", quadratic_study(trials=2))
    db = tmp_path / ".hpod" / "hpod.db"
    async with open_store(db) as store:
        intake, _ = await _intake(tmp_path, store)
        await intake.handle(StudyFileEvent(study, present=True, initial=True))
    side = tmp_path / "results.json"
    side.write_text(HALF)  # a killed trial's, found at the next start, read first (sorted)
    async with open_store(db) as store:
        intake, started = await _intake(tmp_path, store)
        for path in (side, study):
            await intake.handle(StudyFileEvent(path, present=True, initial=True))
        assert started == ["results"]
        results = await store.find_study("results")
        assert results is not None and results.error is None


async def test_a_file_caught_half_written_beside_a_broken_one_of_its_stem_leaves_that_one(
        tmp_path: Path) -> None:
    broken = tmp_path / "exp.toml"
    broken.write_text('command = ["python", "x.py"]\nparalel = 2\n')
    side = tmp_path / "exp.json"
    async with open_store(tmp_path / ".hpod" / "hpod.db") as store:
        intake, _ = await _intake(tmp_path, store)
        await intake.handle(StudyFileEvent(broken, present=True))
        await save(intake, side, HALF)
        await save(intake, side, WHOLE)
        (exp,) = await store.list_studies()
        assert (exp.name, exp.state, exp.path) == ("exp", StudyState.INVALID, str(broken))
        assert "paralel" in (exp.error or "")


async def test_a_broken_file_removed_while_no_daemon_ran_leaves_no_study_at_the_next_start(
        tmp_path: Path) -> None:
    gone, kept = tmp_path / "gone.toml", tmp_path / "kept.toml"
    db = tmp_path / ".hpod" / "hpod.db"
    async with open_store(db) as store:
        intake, _ = await _intake(tmp_path, store)
        for path in (gone, kept):
            await save(intake, path, 'command = ["python", "x.py"]\nparalel = 2\n')
        assert [s.name for s in await store.list_studies()] == ["gone", "kept"]
    gone.unlink()
    async with open_store(db) as store:
        intake, _ = await _intake(tmp_path, store)
        watching = asyncio.create_task(intake.run())
        await asyncio.wait_for(intake.initial_scan_done.wait(), 60)
        intake.stop()
        await asyncio.wait_for(watching, 60)
        assert [s.name for s in await store.list_studies()] == ["kept"]
