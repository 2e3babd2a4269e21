"""[trial] keep_checkpoints: which ended trials' checkpoints go, and what deleting one may touch."""

from __future__ import annotations

import math
import os

import pytest

from hpod.checkpoint_keep import CheckpointKeeper, Removal, remove_checkpoint
from hpod.store.records import Direction, TrialRecord, TrialState

C, S, F = TrialState.COMPLETE, TrialState.STOPPED, TrialState.FAILED


def trial(number: int, state: TrialState, value: float | None,
          checkpoint: str | None = "ckpt", step: int = 1) -> TrialRecord:
    return TrialRecord(id=number + 1, study_id=1, number=number, params={}, state=state,
                       attempt=0, value=value, last_step=step, reason=None, exit_code=None,
                       checkpoint=checkpoint, placement=None, created_at=0.0,
                       started_at=0.0, finished_at=1.0)


def numbers(trials: list[TrialRecord]) -> list[int]:
    return sorted(t.number for t in trials)


@pytest.mark.parametrize("direction,best", [(Direction.MINIMIZE, [0, 3]),
                                            (Direction.MAXIMIZE, [1, 2])])
def test_the_n_best_complete_trials_keep_theirs_in_either_direction(direction, best) -> None:
    keeper = CheckpointKeeper(direction)
    for t in (trial(0, C, 0.1), trial(1, C, 0.9), trial(2, C, 0.5), trial(3, C, 0.2)):
        keeper.ended(t)
    assert numbers(keeper.to_delete(2)) == sorted({0, 1, 2, 3} - set(best))
    assert keeper.to_delete(2) == []  # each is handed out once


def test_failed_and_nan_trials_lose_theirs_and_stopped_ones_rank_after_complete_ones() -> None:
    keeper = CheckpointKeeper(Direction.MINIMIZE)
    for t in (trial(0, S, 0.01), trial(1, F, 0.001), trial(2, C, math.nan), trial(3, C, 0.5)):
        keeper.ended(t)
    assert numbers(keeper.to_delete(5)) == [1, 2]
    assert numbers(keeper.to_delete(1)) == [0]  # complete first, whatever the values


def test_stopped_trials_rank_by_how_far_they_got_then_by_value() -> None:
    # A study whose budget ran out before any paused trial was trained to the end keeps the
    # best of the furthest trained, not nothing.
    keeper = CheckpointKeeper(Direction.MAXIMIZE)
    for t in (trial(0, S, 0.97, step=9), trial(1, S, 0.99, step=3), trial(2, S, 0.95, step=9)):
        keeper.ended(t)
    assert numbers(keeper.to_delete(1)) == [1, 2]


def test_nothing_goes_while_the_field_is_unset_and_all_of_it_once_it_is() -> None:
    keeper = CheckpointKeeper(Direction.MINIMIZE)
    for t in (trial(0, C, 0.3), trial(1, S, 0.1), trial(2, C, 0.2), trial(3, C, 0.9, None)):
        keeper.ended(t)
    assert keeper.to_delete(None) == []
    assert numbers(keeper.to_delete(1)) == [0, 1]  # a live edit that sets it
    keeper.ended(trial(4, C, 0.1))  # the new best pushes the old best's out
    assert numbers(keeper.to_delete(1)) == [2]
    assert numbers(keeper.to_delete(0)) == [4]


def test_ties_keep_the_earlier_trial() -> None:
    keeper = CheckpointKeeper(Direction.MINIMIZE)
    for t in (trial(5, C, 0.2), trial(2, C, 0.2)):
        keeper.ended(t)
    assert numbers(keeper.to_delete(1)) == [5]


def test_a_file_a_folder_and_a_link_inside_the_trial_folder_are_deleted(tmp_path) -> None:
    folder = tmp_path / "00001"
    (folder / "ckpt").mkdir(parents=True)
    (folder / "ckpt" / "w.bin").write_bytes(b"w")
    (folder / "model.keras").write_bytes(b"m")
    elsewhere = tmp_path / "shared.bin"
    elsewhere.write_bytes(b"s")
    (folder / "link").symlink_to(elsewhere)
    assert remove_checkpoint(str(folder / "ckpt"), folder) is Removal.DELETED
    assert remove_checkpoint(str(folder / "model.keras"), folder) is Removal.DELETED
    assert remove_checkpoint(str(folder / "link"), folder) is Removal.DELETED
    assert elsewhere.exists()  # the link went, not what it pointed to
    assert remove_checkpoint(str(folder / "model.keras"), folder) is Removal.MISSING
    assert sorted(os.listdir(folder)) == []


def test_nothing_outside_the_trial_folder_nor_its_logs_is_deleted(tmp_path) -> None:
    folder = tmp_path / "trials" / "00001"
    folder.mkdir(parents=True)
    (folder / "stderr.log").write_text("log")
    outside = tmp_path / "models" / "best.keras"
    outside.parent.mkdir()
    outside.write_bytes(b"m")
    (tmp_path / "trials" / "000012").mkdir()  # a sibling whose name starts with the folder's
    (folder / "up").symlink_to(tmp_path / "models", target_is_directory=True)
    for path in (outside, folder, folder / "stderr.log", folder / ".." / ".." / "models",
                 tmp_path / "trials" / "000012", folder / "up" / "best.keras"):
        assert remove_checkpoint(str(path), folder) is Removal.OUTSIDE, path
    # What a shell trial may announce as written: the folder itself, or the one above it.
    for text in (f"{folder}/", f"{folder}/.", f"{folder}/..", f"{folder}/../",
                 f"{folder}//stderr.log"):
        assert remove_checkpoint(text, folder) is Removal.OUTSIDE, text
    assert sorted(os.listdir(folder)) == ["stderr.log", "up"]
    assert outside.exists() and (folder / "stderr.log").exists()
    assert (tmp_path / "trials" / "000012").exists()
