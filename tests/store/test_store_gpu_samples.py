"""GPU samples and trials' peak GPU memory over a real SQLite file, read by the writer and by a
separate read-only reader (the `view` fixture)."""

from __future__ import annotations

import math

import pytest
from hpod.store import GpuSample, TrialState


def round_at(t: float, utils: list[float | None], used: float = 100.0) -> list[GpuSample]:
    """One sampling round: every GPU at the same time, as one probe read gives them."""
    return [GpuSample(t, gpu, util, used * (gpu + 1), 16376.0) for gpu, util in enumerate(utils)]


async def test_an_empty_store_has_no_samples(view) -> None:
    assert await view.latest_gpu_samples() == []
    assert await view.recent_gpu_samples(600) == {}


async def test_the_latest_round_and_a_recent_window_per_gpu(store, view) -> None:
    for i, t in enumerate((100.0, 110.0, 120.0, 130.0)):
        await store.add_gpu_samples(round_at(t, [10.0 * i, None, 50.0]))

    latest = await view.latest_gpu_samples()
    assert latest == [GpuSample(130.0, 0, 30.0, 100.0, 16376.0),
                      GpuSample(130.0, 1, None, 200.0, 16376.0),
                      GpuSample(130.0, 2, 50.0, 300.0, 16376.0)]

    recent = await view.recent_gpu_samples(20.0)  # up to 20 s before the newest round
    assert list(recent) == [0, 1, 2]
    assert [s.time for s in recent[0]] == [110.0, 120.0, 130.0]  # oldest first
    assert [s.utilization for s in recent[0]] == [10.0, 20.0, 30.0]
    assert [s.utilization for s in recent[1]] == [None, None, None]
    assert [s.time for s in (await view.recent_gpu_samples(0.0))[2]] == [130.0]


async def test_a_gpu_left_out_of_the_newest_round_is_not_reported_as_current(store, view) -> None:
    # A daemon restarted with --gpus 0 samples only GPU 0 from then on.
    await store.add_gpu_samples(round_at(100.0, [10.0, 20.0]))
    await store.add_gpu_samples(round_at(110.0, [15.0]))
    assert [s.gpu for s in await view.latest_gpu_samples()] == [0]


async def test_a_trials_peak_gpu_memory_keeps_the_highest_reading(store, view, make_trial) -> None:
    trial = await make_trial(TrialState.RUNNING)
    other = await make_trial(TrialState.RUNNING)
    assert trial.peak_gpu_memory_mb is None  # nothing seen yet

    await store.add_gpu_samples(round_at(100.0, [50.0]), {trial.id: 1200.0})
    await store.add_gpu_samples([], {trial.id: 800.0, other.id: 64.0})  # lower: kept at 1200
    assert (await view.get_trial(trial.id)).peak_gpu_memory_mb == 1200.0
    assert (await view.get_trial(other.id)).peak_gpu_memory_mb == 64.0

    await store.add_gpu_samples([], {trial.id: 4096.5})
    finished = await store.transition(trial.id, TrialState.COMPLETE, value=0.5)
    assert finished.peak_gpu_memory_mb == 4096.5  # kept through the trial's end
    assert len(await view.recent_gpu_samples(math.inf)) == 1  # the peaks-only rounds add no rows


async def test_nothing_to_write_is_no_transaction(store, view) -> None:
    await store.add_gpu_samples([], {})
    await store.add_gpu_samples([])
    assert await view.latest_gpu_samples() == []


async def test_pruning_deletes_only_the_older_samples(store, view) -> None:
    for t in (100.0, 200.0, 300.0):
        await store.add_gpu_samples(round_at(t, [1.0, 2.0]))
    assert await store.prune_gpu_samples(200.0) == 2  # both GPUs' round at t=100
    recent = await view.recent_gpu_samples(math.inf)
    assert {gpu: [s.time for s in samples] for gpu, samples in recent.items()} == {
        0: [200.0, 300.0], 1: [200.0, 300.0]}
    assert await store.prune_gpu_samples(0.0) == 0


async def test_a_negative_window_is_refused(view) -> None:
    with pytest.raises(ValueError, match="window"):
        await view.recent_gpu_samples(-1.0)
