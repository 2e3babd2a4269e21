"""One contract test over every scheduler kind (syne-tune's API test, optuna's shared suite)."""

from __future__ import annotations

import math

import pytest

from hpod import make_scheduler
from hpod.decision import Decision
from hpod.schedule.base import Reported, Scheduler
from hpod.schedule.curves import power_law_curves
from hpod.schedule.simulate import Curve, simulate
from hpod.store.records import TrialState

KINDS = {
    "fifo": {},
    "sh": {"max_resource": 27, "cohort_size": 9},
    "hyperband": {"max_resource": 27},
    "asha": {"max_resource": 27},
    "asha-pause": {"max_resource": 27, "mode": "pause"},
    "async-hyperband": {"max_resource": 27},
    "async-hyperband-pause": {"max_resource": 27, "mode": "pause"},
    "median": {},
}
NAN_TRIAL = 20


def build(label: str, **extra) -> Scheduler:
    kind = label.removesuffix("-pause")
    return make_scheduler(kind, **{**KINDS[label], **extra})


def curves(sign: float = 1.0) -> list[Curve]:
    base = power_law_curves(48, n_steps=27, seed=7, noise=0.02, cost_spread=0.5)
    out = [Curve(tuple(sign * v for v in c.values), c.seconds_per_step) for c in base]
    out[NAN_TRIAL] = Curve((math.nan,) * 27, 1.0)
    return out


@pytest.fixture(params=list(KINDS))
def label(request):
    return request.param


def test_is_a_scheduler_and_every_decision_is_a_decision(label):
    scheduler = build(label)
    assert isinstance(scheduler, Scheduler)
    result = simulate(scheduler, curves(), workers=4)
    assert result.decisions and all(isinstance(d, Decision) for d in result.decisions)
    assert len(result.decisions) == sum(isinstance(e, Reported) for e in result.events)
    assert result.best is not None and math.isfinite(result.best)


def test_replay_reproduces_decisions_and_state(label):
    live = build(label)
    result = simulate(live, curves(), workers=4)
    fresh = build(label)
    assert fresh.replay(result.events) == list(result.decisions)
    assert fresh.rungs_snapshot() == live.rungs_snapshot()
    assert [fresh.next_milestone(t.trial_id) for t in result.trials] == [
        live.next_milestone(t.trial_id) for t in result.trials
    ]


@pytest.mark.parametrize("fraction", [0.2, 0.5])
def test_replay_after_a_cut_answers_the_controller_like_the_live_scheduler(label, fraction):
    full = simulate(build(label), curves(), workers=4)
    live = build(label)
    cut = simulate(live, curves(), workers=4, max_seconds=full.total_time * fraction)
    fresh = build(label)
    fresh.replay(cut.events)
    assert fresh.rungs_snapshot() == live.rungs_snapshot()
    assert fresh.take_stopped() == live.take_stopped()
    assert fresh.should_start_new() == live.should_start_new()
    assert [fresh.next_resume() for _ in range(5)] == [live.next_resume() for _ in range(5)]
    # And they go on to decide alike.
    running = [t.trial_id for t in cut.trials if t.state is TrialState.RUNNING]
    for scheduler in (fresh, live):
        scheduler.on_start(1000)
    probe = [(t, 27 * 2, 0.0) for t in running] + [(1000, 1, 0.5), (1000, 3, 0.4)]
    assert [fresh.on_report(*p) for p in probe] == [live.on_report(*p) for p in probe]


def test_replay_needs_a_fresh_scheduler(label):
    scheduler = build(label)
    scheduler.on_start(0)
    with pytest.raises(RuntimeError, match="fresh"):
        scheduler.replay([])


def test_maximize_with_negated_values_makes_the_same_decisions(label):
    low = simulate(build(label), curves(), workers=4)
    high = simulate(build(label, direction="maximize"), curves(sign=-1.0), workers=4)
    assert high.decisions == low.decisions
    assert [t.state for t in high.trials] == [t.state for t in low.trials]
    assert high.best == -low.best


def test_nan_counts_as_worst(label):
    result = simulate(build(label), curves(), workers=4)
    nan_trial = result.trials[NAN_TRIAL]
    if label == "fifo":
        assert nan_trial.state is TrialState.COMPLETE
    else:
        assert nan_trial.state is not TrialState.COMPLETE
    assert all(not math.isnan(value) for _, value in result.incumbent)


# --- construction ---------------------------------------------------------------------------


def test_unknown_kind_suggests_the_closest_and_lists_all():
    with pytest.raises(ValueError, match=r"'asha'\?.*fifo, sh, hyperband, asha, async-hyperband"):
        make_scheduler("ashaa")


def test_unknown_option_suggests_the_closest_and_lists_the_kinds_options():
    with pytest.raises(ValueError, match=r"`reduction_factor`\?.*direction, max_resource"):
        make_scheduler("asha", max_resource=9, reduction_facter=2)
    with pytest.raises(ValueError, match="no option `brackets`"):
        make_scheduler("asha", max_resource=9, brackets=2)


@pytest.mark.parametrize(
    ("kind", "options", "match"),
    [
        ("asha", {"max_resource": 9, "reduction_factor": 1}, "`reduction_factor` must be a number"),
        ("asha", {"max_resource": 9, "reduction_factor": True}, "`reduction_factor`"),
        ("asha", {"max_resource": 9, "min_resource": 9}, "must be greater than `min_resource`"),
        ("asha", {"max_resource": 9, "min_resource": -1}, "`min_resource` must be"),
        ("asha", {"max_resource": math.inf}, "`max_resource` must be"),
        ("asha", {"max_resource": 9, "mode": "pasue"}, "Did you mean 'pause'"),
        ("asha", {"max_resource": 9, "direction": "max"}, "`direction` must be"),
        ("asha", {}, "`max_resource` is required"),
        ("async-hyperband", {}, "`max_resource` is required"),
        ("sh", {"max_resource": 9, "cohort_size": 2.5}, "`cohort_size` must be a whole"),
        ("fifo", {"max_resource": 0}, "`max_resource` must be"),
    ],
)
def test_options_are_validated_with_the_option_named(kind, options, match):
    with pytest.raises(ValueError, match=match):
        make_scheduler(kind, **options)


def test_fifo_never_stops():
    scheduler = make_scheduler("fifo")
    scheduler.on_start(0)
    decisions = {scheduler.on_report(0, s, v) for s, v in [(1, math.nan), (2, 1e9)]}
    assert decisions == {Decision.CONTINUE}


def test_options_given_as_none_take_their_defaults():
    scheduler = make_scheduler("asha", max_resource=27, min_resource=None, reduction_factor=None)
    assert scheduler.levels == (1, 3, 9)
    with pytest.raises(ValueError, match="`max_resource` is required"):
        make_scheduler("asha", max_resource=None)
