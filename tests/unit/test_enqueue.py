"""Enqueued points: typed from `name=value` words, completed within the space."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hpod.enqueue import complete_point, domain_hint, parse_assignments, waiting_user_points
from hpod.errors import SpaceError
from hpod.space import CategoricalParam, FloatParam, IntParam, Space

SPACE = Space.from_dict({
    "lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True},
    "dropout": {"type": "float", "low": 0.0, "high": 0.5, "step": 0.1},
    "units": {"type": "int", "low": 16, "high": 256, "step": 16},
    "layers": {"type": "int", "low": 1, "high": 4},
    "act": {"type": "categorical", "choices": ["relu", "tanh", "1"]},
    "flag": {"type": "categorical", "choices": [True, False, None, 2, 0.5]},
    "epochs": 30,
    "sizes": [64, 32],
})


def error(words: list[str]) -> SpaceError:
    with pytest.raises(SpaceError) as info:
        parse_assignments(SPACE, words)
    return info.value


# -- parse_assignments -----------------------------------------------------------------------

def test_values_are_typed_by_the_space_and_ordered_like_it() -> None:
    point = parse_assignments(SPACE, ["units=48", "act=tanh", "lr=1e-3", "dropout=0.3",
                                      "layers=2"])
    assert point == {"lr": 0.001, "dropout": 0.3, "units": 48, "layers": 2, "act": "tanh"}
    assert list(point) == ["lr", "dropout", "units", "layers", "act"]
    assert type(point["units"]) is int and type(point["lr"]) is float
    # 0.1 + 0.1 + 0.1 is not 0.3: a stepped float comes back as the grid value itself
    assert parse_assignments(SPACE, ["dropout=0.30000000000000004"]) == {"dropout": 0.3}


def test_whole_numbers_may_be_written_as_floats() -> None:
    assert parse_assignments(SPACE, ["units=64.0", "layers=3e0"]) == {"units": 64, "layers": 3}
    assert parse_assignments(SPACE, [" layers = 4 "]) == {"layers": 4}


@pytest.mark.parametrize("text, value", [
    ("true", True), ("True", True), ("false", False), ("null", None), ("none", None),
    ("2", 2), ("2.0", 2), ("0.5", 0.5), ("5e-1", 0.5)])
def test_non_string_choices_match_by_their_text(text: str, value) -> None:
    point = parse_assignments(SPACE, [f"flag={text}"])
    assert point == {"flag": value}
    assert type(point["flag"]) is type(value)


def test_a_string_choice_spelt_exactly_wins_over_a_number() -> None:
    assert parse_assignments(SPACE, ["act=1"]) == {"act": "1"}


@pytest.mark.parametrize("words, field, fragment, fix", [
    (["lr=0.5"], "lr", "0.5 is outside [0.0001, 0.1]", "use a number in [0.0001, 0.1]"),
    (["lr=abc"], "lr", "'abc' is not a number", "use a number in [0.0001, 0.1]"),
    (["lr=nan"], "lr", "must be a finite number", "use a number in [0.0001, 0.1]"),
    (["lr=inf"], "lr", "must be a finite number", "use a number in [0.0001, 0.1]"),
    (["units=40"], "units", "not on the step grid", "use one of 16, 32, 48, ..., 256"),
    (["units=4.5"], "units", "must be a whole number, got '4.5'", "use one of 16, 32"),
    (["layers=9"], "layers", "9 is outside [1, 4]", "use a whole number in [1, 4]"),
    (["dropout=0.25"], "dropout", "not on the step grid", "use one of 0.0, 0.1, 0.2, ..., 0.5"),
    (["act=gelu"], "act", "'gelu' is not a choice", "use one of: relu, tanh, 1"),
    (["act=Relu"], "act", "Did you mean 'relu'?", "use one of: relu, tanh, 1"),
    (["flag=1"], "flag", "'1' is not a choice", "use one of: true, false, null, 2, 0.5"),
    (["lrr=0.01"], "lrr", "unknown parameter 'lrr'. Did you mean 'lr'?",
     "use one of: lr, dropout, units, layers, act, flag"),
    (["epochs=10"], "epochs", "'epochs' is fixed in [space] to 30", "make it a searched"),
    (["sizes=[1]"], "sizes", "is fixed", "remove it from the point"),
    (["lr=0.01", "lr=0.02"], "lr", "is given twice", "give each parameter once"),
    (["lr"], None, "'lr' is not a name=value pair", "write it as lr=0.0001"),
    (["=0.1"], None, "'=0.1' is not a name=value pair", "write it as lr=0.0001"),
    ([], None, "no parameter given", "e.g. lr=0.0001"),
])
def test_errors_name_the_parameter_and_the_fix(words, field, fragment, fix) -> None:
    e = error(words)
    assert e.field == field
    assert fragment in e.message
    assert e.fix is not None and fix in e.fix
    assert isinstance(e, ValueError)  # SpaceError is both a project error and a ValueError
    if field is not None:
        assert str(e).startswith(f"field `{field}`: ")


def test_the_value_may_contain_equals_signs() -> None:
    space = Space.from_dict({"tag": {"type": "categorical", "choices": ["a=b", "c"]}})
    assert parse_assignments(space, ["tag=a=b"]) == {"tag": "a=b"}


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=20), max_size=4))
def test_any_words_parse_or_raise_space_error(words: list[str]) -> None:
    try:
        point = parse_assignments(SPACE, words)
    except SpaceError as e:
        assert e.fix
        return
    assert SPACE.validate(point) == point


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=0, max_value=2**32 - 1))
def test_what_a_point_prints_parses_back(seed: int) -> None:
    """A sampled point written as name=value words (as `hpod trials` shows it) reads back."""
    point = SPACE.sample(np.random.default_rng(seed))
    words = [f"{p.name}={_text(point[p.name])}" for p in SPACE.params]
    searched = {p.name: point[p.name] for p in SPACE.params}
    assert parse_assignments(SPACE, words) == searched


def _text(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value) if isinstance(value, str) else repr(value)


# -- complete_point --------------------------------------------------------------------------

def test_a_partial_point_is_completed_from_the_suggestion() -> None:
    suggestion = SPACE.from_unit([0.5, 0.5, 0.5, 0.5, 0, 0])
    point = complete_point(SPACE, {"lr": 0.01, "act": "tanh"}, suggestion)
    assert point == {**suggestion, "lr": 0.01, "act": "tanh"}
    assert list(point) == SPACE.names
    assert point["epochs"] == 30 and point["sizes"] == [64, 32]
    point["sizes"].append(1)  # the caller owns its copy
    assert SPACE.fixed["sizes"] == [64, 32]


def test_a_full_point_ignores_the_suggestion() -> None:
    full = {"lr": 0.001, "dropout": 0.1, "units": 16, "layers": 1, "act": "relu", "flag": None}
    other = SPACE.from_unit([1, 1, 1, 1, 1, 1])
    assert complete_point(SPACE, full, other) == {**full, "epochs": 30, "sizes": [64, 32]}


def test_completion_normalises_the_values() -> None:
    point = complete_point(SPACE, {"units": 64.0, "dropout": 0.30000000000000004},
                           SPACE.from_unit([0] * 6))
    assert point["units"] == 64 and type(point["units"]) is int
    assert point["dropout"] == 0.3


def test_completion_refuses_a_bad_partial_or_suggestion() -> None:
    good = SPACE.from_unit([0] * 6)
    with pytest.raises(SpaceError) as info:
        complete_point(SPACE, {"lr": 2.0}, good)
    assert info.value.field == "params.lr"
    with pytest.raises(SpaceError) as info:
        complete_point(SPACE, {"epochs": 31}, good)
    assert info.value.field == "params.epochs"
    incomplete = {k: v for k, v in good.items() if k != "layers"}
    with pytest.raises(SpaceError) as info:
        complete_point(SPACE, {"lr": 0.01}, incomplete)
    assert info.value.field == "params.layers" and "missing" in info.value.message
    assert complete_point(SPACE, {"layers": 2}, incomplete)["layers"] == 2


@settings(max_examples=100, deadline=None)
@given(seed=st.integers(min_value=0, max_value=2**32 - 1),
       keep=st.lists(st.booleans(), min_size=6, max_size=6))
def test_completed_points_always_lie_in_the_space(seed: int, keep: list[bool]) -> None:
    rng = np.random.default_rng(seed)
    wanted, suggested = SPACE.sample(rng), SPACE.sample(rng)
    partial = {p.name: wanted[p.name] for p, k in zip(SPACE.params, keep) if k}
    point = complete_point(SPACE, partial, suggested)
    assert SPACE.validate(point) == point
    assert set(point) == set(SPACE.names)
    for p, k in zip(SPACE.params, keep):
        assert point[p.name] == (wanted if k else suggested)[p.name]


# -- domain_hint -----------------------------------------------------------------------------

@pytest.mark.parametrize("param, text", [
    (FloatParam("a", 1e-4, 0.1, log=True), "a number in [0.0001, 0.1]"),
    (FloatParam("a", 0.0, 0.3, step=0.1), "one of 0.0, 0.1, 0.2, 0.3"),
    (IntParam("a", 1, 4), "a whole number in [1, 4]"),
    (IntParam("a", 0, 4, step=2), "one of 0, 2, 4"),
    (IntParam("a", 16, 256, step=16), "one of 16, 32, 48, ..., 256"),
    (CategoricalParam("a", ("x", True, None, 3)), "one of x, true, null, 3"),
])
def test_domain_hint(param, text: str) -> None:
    assert domain_hint(param) == text


def test_waiting_user_points_are_those_without_a_trial_oldest_first() -> None:
    applied = [(7, {"x": 0.7}), (3, {"x": 0.3}), (5, {"x": 0.5})]
    origins = [None, "user:5", "file:0", None]
    assert waiting_user_points(applied, origins) == [("user:3", {"x": 0.3}),
                                                     ("user:7", {"x": 0.7})]
    assert waiting_user_points(applied, []) == [("user:3", {"x": 0.3}), ("user:5", {"x": 0.5}),
                                                ("user:7", {"x": 0.7})]
    assert waiting_user_points([], ["user:1"]) == []


def test_trials_made_before_origins_named_their_command_stand_for_the_oldest_points() -> None:
    """A database from before: its `hpod enqueue` trials say only "user"; points became trials
    in the order they came, so two such trials mean the two oldest commands are done."""
    applied = [(2, {"x": 0.2}), (4, {"x": 0.4}), (9, {"x": 0.9})]
    assert waiting_user_points(applied, ["user", None, "user"]) == [("user:9", {"x": 0.9})]
    assert waiting_user_points(applied, ["user", "user:9"]) == [("user:4", {"x": 0.4})]


def test_name_colon_equals_gives_the_json_type_exactly() -> None:
    # Choices that look alike on a command line ("1" and 1, "true" and true, "null" and null):
    # the number, the boolean and null could not be enqueued at all.
    space = Space.from_dict({"c": {"type": "categorical",
                                   "choices": ["1", 1, True, "true", None, "null"]}})
    assert parse_assignments(space, ["c=1"]) == {"c": "1"}  # as documented: the string wins
    assert parse_assignments(space, ["c:=1"]) == {"c": 1}
    assert parse_assignments(space, ["c:=true"]) == {"c": True}
    assert parse_assignments(space, ["c:=null"]) == {"c": None}
    assert parse_assignments(space, ['c:="null"']) == {"c": "null"}
    with pytest.raises(SpaceError) as info:
        parse_assignments(space, ["c=2"])
    assert 'use one of (as JSON, with name:=VALUE): "1", 1, true, "true", null, "null"' \
        in str(info.value)
    assert parse_assignments(SPACE, ["layers:=3", "lr:=0.01"]) == {"lr": 0.01, "layers": 3}
    with pytest.raises(SpaceError, match="not a number"):
        parse_assignments(SPACE, ['layers:="3"'])
