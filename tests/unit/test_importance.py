"""hpod.importance: Sobol indices of a GP fitted to results, against indices known in closed form."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from hpod.importance import (NotEnoughResults, _clip_outliers, format_importance, importance,
                             min_results)
from hpod.space import CategoricalParam, FloatParam, IntParam, Space

UNIT3 = Space((FloatParam("a", 0.0, 1.0), FloatParam("b", 0.0, 1.0), FloatParam("c", 0.0, 1.0)))


def results(space: Space, f, n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    points = [space.sample(rng) for _ in range(n)]
    return points, [f(p) for p in points]


def shares(imp) -> dict[str, tuple[float, float]]:
    return {p.name: (p.alone, p.with_interactions) for p in imp.params}


def test_an_additive_surface_splits_its_variance_as_its_terms_do() -> None:
    # f = 10a + b: Var = (100 + 1) / 12, so a explains 100/101 and b 1/101; c nothing.
    imp = importance(UNIT3, *results(UNIT3, lambda p: 10 * p["a"] + p["b"], 40))
    got = shares(imp)
    assert got["a"][0] == pytest.approx(100 / 101, abs=0.03)
    assert got["b"][0] == pytest.approx(1 / 101, abs=0.03)
    assert got["c"][1] < 0.02
    for alone, total in got.values():  # no interaction in an additive surface
        assert total == pytest.approx(alone, abs=0.03)
    assert imp.interactions < 0.03
    assert [p.name for p in imp.params] == ["a", "b", "c"]  # most important first


def test_a_pure_interaction_is_in_no_parameter_alone() -> None:
    imp = importance(UNIT3, *results(UNIT3, lambda p: (p["a"] - 0.5) * (p["b"] - 0.5), 60))
    got = shares(imp)
    assert got["a"][0] < 0.05 and got["b"][0] < 0.05
    assert got["a"][1] == pytest.approx(1.0, abs=0.05)
    assert got["b"][1] == pytest.approx(1.0, abs=0.05)
    assert got["c"][1] < 0.05
    assert imp.interactions > 0.9


def test_log_scales_integers_and_categoricals_are_weighed_as_the_space_spreads_them() -> None:
    # Evenly over log10(lr) in [-5, -1] and over the three choices: with
    # f = log10(lr) + 2 [act == "tanh"], Var = 16/12 + 4 * 2/9, so lr explains 0.6 and act 0.4.
    space = Space((FloatParam("lr", 1e-5, 1e-1, log=True), IntParam("units", 16, 512, log=True),
                   CategoricalParam("act", ("relu", "tanh", "gelu"))))

    def f(p):
        return math.log10(p["lr"]) + (2.0 if p["act"] == "tanh" else 0.0)

    got = shares(importance(space, *results(space, f, 60)))
    var_lr, var_act = 16 / 12, 4 * 2 / 9
    assert got["lr"][0] == pytest.approx(var_lr / (var_lr + var_act), abs=0.05)
    assert got["act"][0] == pytest.approx(var_act / (var_lr + var_act), abs=0.05)
    assert got["units"][1] < 0.03


def test_diverged_results_count_as_the_worst_and_the_parameter_behind_them_matters() -> None:
    # Above a = 0.8 (a learning rate too high, say) the trials blow up: NaN, inf, 1e12.
    blown = iter([math.nan, math.inf, 1e12] * 20)

    def f(p):
        return next(blown) if p["a"] > 0.8 else p["b"]

    got = shares(importance(UNIT3, *results(UNIT3, f, 50)))
    assert all(math.isfinite(x) for pair in got.values() for x in pair)
    assert got["a"][1] > 0.5 and got["a"][1] > max(got["b"][1], got["c"][1])


def test_the_same_results_give_the_same_answer_and_the_sign_does_not_matter() -> None:
    points, values = results(UNIT3, lambda p: p["a"] ** 2 + p["b"], 30)
    first = importance(UNIT3, points, values)
    assert importance(UNIT3, points, values) == first
    flipped = shares(importance(UNIT3, points, [-v + 5 for v in values]))
    for name, (alone, total) in shares(first).items():
        assert flipped[name] == pytest.approx((alone, total), abs=0.05)


def test_results_that_never_vary_explain_nothing() -> None:
    points, _ = results(UNIT3, lambda p: 0.0, 10)
    imp = importance(UNIT3, points, [0.25] * 10)
    assert not imp.varies and all(p.alone == p.with_interactions == 0 for p in imp.params)
    assert "every result is the same" in format_importance("s", "loss", imp, source="x")


def test_a_space_that_searches_nothing_is_refused_in_words() -> None:
    with pytest.raises(ValueError, match="searches no parameter"):
        importance(Space((), fixed={"epochs": 3}), [{}] * 5, [1.0, 2.0, 3.0, 4.0, 5.0])


def test_runs_of_one_configuration_that_differ_are_all_noise_not_all_the_same() -> None:
    point = {"a": 0.5, "b": 0.5, "c": 0.5}
    noisy = list(np.random.default_rng(3).normal(size=10))
    imp = importance(UNIT3, [point] * 10, noisy)
    assert imp.varies and imp.unexplained == 1.0
    assert all(p.alone == p.with_interactions == 0 for p in imp.params)
    text = format_importance("s", "loss", imp, source="its 10 complete trials")
    assert "every result is the same" not in text and "not explained" in text


def test_too_few_results_are_refused_with_how_many_are_needed() -> None:
    points, values = results(UNIT3, lambda p: p["a"], min_results(UNIT3) - 1)
    with pytest.raises(NotEnoughResults, match=f"needs at least {min_results(UNIT3)}"):
        importance(UNIT3, points, values)


def test_the_table_ranks_the_parameters_and_says_when_it_is_rough() -> None:
    imp = importance(UNIT3, *results(UNIT3, lambda p: 3 * p["b"] + p["a"], 8))
    text = format_importance("night", "val_loss", imp, source="its 8 complete trials")
    lines = text.splitlines()
    assert lines[0] == "study night: what its 8 complete trials say about val_loss"
    assert lines[2].startswith("b ") and lines[3].startswith("a ")
    assert "rough: 8 results for 3 parameters" in text
    assert imp.as_dict()["params"][0]["name"] == "b"


def test_an_isolated_value_goes_to_the_edge_of_the_bulk_and_a_tail_of_several_stays() -> None:
    values = np.concatenate([np.linspace(0.0, 1.0, 41), [1e12, -1e12, math.nan]])
    cut = _clip_outliers(values)
    assert cut[41] == 1.0 and cut[42] == 0.0  # onto the bulk's top and bottom
    assert np.array_equal(cut[:41], values[:41]) and math.isnan(cut[43])
    tail = np.concatenate([np.linspace(0.0, 1.0, 41), [2.0, 2.1, 2.2]])  # a few far, together
    assert np.array_equal(_clip_outliers(tail), tail)


def test_one_diverged_result_among_forty_does_not_empty_the_table() -> None:
    # f = exp(3a) + b: a explains nearly all of it. One trial diverged to a finite 1e12 (or,
    # in minimisation form, a maximised metric's -1e12).
    for outlier in (1e12, -1e12):
        points, values = results(UNIT3, lambda p: math.exp(3 * p["a"]) + p["b"], 40)
        values[5] = outlier
        got = shares(importance(UNIT3, points, values))
        assert got["a"][0] > 0.5, (outlier, got)


def test_values_near_the_float_limit_are_read_without_a_warning() -> None:
    points, _ = results(UNIT3, lambda p: 0.0, 12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        imp = importance(UNIT3, points, [1e308, -1e308] * 6)
    assert imp.varies and 0.0 <= imp.unexplained <= 1.0
