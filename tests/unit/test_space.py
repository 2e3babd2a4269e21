"""hpod.Space: parsing the [space] table, the unit-cube encoding, sampling, the grid, validation."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest

from hpod.errors import SpaceError
from hpod.space import CategoricalParam, FloatParam, IntParam, Space

TABLE = {
    "lr": {"type": "float", "low": 1e-5, "high": 1e-1, "log": True},
    "dropout": {"type": "float", "low": 0.0, "high": 0.5, "step": 0.1},
    "units": {"type": "int", "low": 16, "high": 512, "log": True},
    "act": {"type": "categorical", "choices": ["relu", "tanh", "gelu"]},
    "epochs": 30,
}


@pytest.fixture
def space() -> Space:
    return Space.from_dict(TABLE)


def test_from_dict_reads_the_issue_table(space: Space) -> None:
    assert space.params == (
        FloatParam("lr", 1e-5, 1e-1, log=True),
        FloatParam("dropout", 0.0, 0.5, step=0.1),
        IntParam("units", 16, 512, log=True),
        CategoricalParam("act", ("relu", "tanh", "gelu")),
    )
    assert space.fixed == {"epochs": 30}
    assert space.names == ["lr", "dropout", "units", "act", "epochs"]
    assert space.dim == len(space) == 4
    assert space.is_categorical.tolist() == [False, False, False, True]
    assert space.n_choices.tolist() == [0, 0, 0, 3]
    with pytest.raises(ValueError):
        space.is_categorical[0] = True  # read-only: shared by every caller


def test_bare_values_and_bare_lists_are_fixed() -> None:
    space = Space.from_dict({"x": {"type": "int", "low": 0, "high": 3}, "layers": [64, 32],
                             "name": "mlp", "flag": True, "nested": [{"a": 1}]})
    assert space.fixed == {"layers": [64, 32], "name": "mlp", "flag": True, "nested": [{"a": 1}]}
    assert space.dim == 1


def test_to_dict_round_trips(space: Space) -> None:
    table = space.to_dict()
    assert Space.from_dict(table) == space
    assert json.loads(json.dumps(table)) == table
    stepped = Space.from_dict({"b": {"type": "int", "low": 0, "high": 64, "step": 16}})
    assert Space.from_dict(stepped.to_dict()) == stepped


# -- encoding --------------------------------------------------------------------------------

ONE_PARAM = [
    FloatParam("x", -2.0, 3.0),
    FloatParam("x", 1e-6, 1.0, log=True),
    FloatParam("x", 0.0, 1.0, step=0.25),
    IntParam("x", 0, 10),
    IntParam("x", 1, 1000, log=True),
    IntParam("x", -8, 8, step=4),
    CategoricalParam("x", ("a", 2, 2.5, True, None)),
]


@pytest.mark.parametrize("param", ONE_PARAM, ids=repr)
def test_decode_encode_is_identity_on_decoded_points(param) -> None:
    space = Space((param,))
    for u in np.linspace(0.0, 1.0, 41):
        x = np.array([u * (param.count - 1) if isinstance(param, CategoricalParam) else u])
        point = space.from_unit(x)
        again = space.from_unit(space.to_unit(point))
        assert again == point
        assert type(again["x"]) is type(point["x"])


@pytest.mark.parametrize("param", [p for p in ONE_PARAM if p.count is not None], ids=repr)
def test_every_grid_value_round_trips(param) -> None:
    space = Space((param,))
    for value in space.grid_values(param):
        x = space.to_unit({"x": value})
        if not isinstance(param, CategoricalParam):
            assert 0.0 < x[0] < 1.0  # padded bounds: grid values sit strictly inside
        assert space.from_unit(x) == {"x": value}


def test_encodings_by_kind() -> None:
    space = Space((FloatParam("f", 0.0, 4.0), FloatParam("g", 1e-4, 1.0, log=True),
                   IntParam("i", 0, 3), IntParam("j", 1, 100, log=True),
                   CategoricalParam("c", ("a", "b", "c"))))
    x = space.to_unit({"f": 1.0, "g": 1e-2, "i": 0, "j": 10, "c": "c"})
    # float: linear; log float: half way in log; int 0..3 padded to [-0.5, 3.5]: 0 -> 0.125;
    # log int padded to [0.5, 100.5] then logs; categorical: the index itself.
    expected_j = (math.log(10) - math.log(0.5)) / (math.log(100.5) - math.log(0.5))
    np.testing.assert_allclose(x, [0.25, 0.5, 0.125, expected_j, 2.0])


def test_from_unit_clips_rounds_and_adds_fixed_values(space: Space) -> None:
    point = space.from_unit(np.array([-1.0, 0.62, 7.0, 9.7]))
    assert point == {"lr": 1e-5, "dropout": 0.3, "units": 512, "act": "gelu", "epochs": 30}
    point = space.from_unit([2.0, -0.3, -5.0, -0.6])
    assert point == {"lr": 0.1, "dropout": 0.0, "units": 16, "act": "relu", "epochs": 30}
    json.dumps(point)
    assert {type(v) for v in point.values()} == {float, int, str}


def test_from_unit_refuses_wrong_shapes_and_nan(space: Space) -> None:
    with pytest.raises(ValueError, match="shape"):
        space.from_unit(np.zeros(3))
    with pytest.raises(ValueError, match="NaN"):
        space.from_unit(np.array([0.5, np.nan, 0.5, 0.0]))


def test_from_unit_returns_a_copy_of_fixed_values() -> None:
    space = Space.from_dict({"x": {"type": "int", "low": 0, "high": 1}, "layers": [1, 2]})
    space.from_unit([0.0])["layers"].append(3)
    assert space.fixed == {"layers": [1, 2]}


def test_to_unit_many_shape(space: Space) -> None:
    rng = np.random.default_rng(0)
    points = [space.sample(rng) for _ in range(5)]
    out = space.to_unit_many(points)
    assert out.shape == (5, 4)
    np.testing.assert_array_equal(out[2], space.to_unit(points[2]))
    assert space.to_unit_many([]).shape == (0, 4)


def test_to_unit_needs_every_searched_param(space: Space) -> None:
    with pytest.raises(SpaceError, match="missing") as info:
        space.to_unit({"lr": 0.01})
    assert info.value.field == "params.dropout"


def test_stepped_float_values_are_clean_decimals() -> None:
    space = Space.from_dict({"d": {"type": "float", "low": 0.0, "high": 0.5, "step": 0.1}})
    assert space.grid_values("d") == [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]
    assert space.validate({"d": 0.1 + 0.2}) == {"d": 0.3}  # 0.30000000000000004 snaps


# -- sampling --------------------------------------------------------------------------------

def test_samples_stay_in_bounds_and_hit_both_int_endpoints() -> None:
    space = Space.from_dict({"i": {"type": "int", "low": 3, "high": 7},
                             "j": {"type": "int", "low": 1, "high": 4, "log": True},
                             "f": {"type": "float", "low": -1.0, "high": 1.0},
                             "c": {"type": "categorical", "choices": ["a", "b"]}})
    rng = np.random.default_rng(1)
    points = [space.sample(rng) for _ in range(500)]
    ints = [p["i"] for p in points]
    assert set(ints) == {3, 4, 5, 6, 7}
    assert {p["j"] for p in points} == {1, 2, 3, 4}
    assert all(-1.0 <= p["f"] <= 1.0 for p in points)
    assert {p["c"] for p in points} == {"a", "b"}
    # Equal mass per integer: each of 5 values is near 100 of 500 draws.
    counts = np.bincount(ints)[3:]
    assert counts.min() > 60 and counts.max() < 140


def test_log_params_are_sampled_log_uniformly() -> None:
    space = Space.from_dict({"lr": {"type": "float", "low": 1e-6, "high": 1.0, "log": True}})
    rng = np.random.default_rng(2)
    values = np.array([space.sample(rng)["lr"] for _ in range(2000)])
    assert values.min() >= 1e-6 and values.max() <= 1.0
    decades = np.bincount(np.floor(-np.log10(values)).astype(int).clip(0, 5), minlength=6)
    assert decades.min() > 250  # ~333 per decade; uniform sampling would put ~1800 in one


def test_sampling_is_deterministic_for_a_generator_state(space: Space) -> None:
    a = [space.sample(np.random.default_rng(5)) for _ in range(3)]
    b = [space.sample(np.random.default_rng(5)) for _ in range(3)]
    assert a == b


# -- grid ------------------------------------------------------------------------------------

def test_grid_enumerates_the_cartesian_product_in_product_order() -> None:
    space = Space.from_dict({"a": {"type": "int", "low": 0, "high": 2},
                             "b": {"type": "categorical", "choices": ["x", "y"]},
                             "c": {"type": "float", "low": 0.0, "high": 1.0, "step": 0.5},
                             "fixed": 1})
    assert space.is_finite()
    assert space.grid_size() == 3 * 2 * 3
    points = [space.grid_point(i) for i in range(space.grid_size())]
    expected = [{"a": a, "b": b, "c": c, "fixed": 1}
                for a, b, c in itertools.product([0, 1, 2], ["x", "y"], [0.0, 0.5, 1.0])]
    assert points == expected
    assert [space.grid_index(p) for p in points] == list(range(18))
    with pytest.raises(IndexError):
        space.grid_point(18)


def test_grid_index_inverts_grid_point_for_ints_that_start_above_zero_or_step() -> None:
    """An int's grid position is (value - low) / step, not its value: read as its value, a
    grid of n in [1, 3] sent the grid suggester round one point for ever."""
    space = Space.from_dict({"n": {"type": "int", "low": 1, "high": 3},
                             "b": {"type": "int", "low": 32, "high": 256, "step": 32},
                             "u": {"type": "int", "low": 1, "high": 20, "log": True},
                             "c": {"type": "categorical", "choices": ["a", "b"]}})
    size = space.grid_size()
    assert size == 3 * 8 * 20 * 2
    assert [space.grid_index(space.grid_point(i)) for i in range(size)] == list(range(size))


def test_a_grid_study_over_ints_from_one_tries_every_point_once_then_ends() -> None:
    from hpod.errors import SearchExhausted
    from hpod.suggest import make_suggester

    space = Space.from_dict({"n": {"type": "int", "low": 1, "high": 3},
                             "x": {"type": "float", "low": 0.0, "high": 0.5, "step": 0.1},
                             "c": {"type": "categorical", "choices": ["a", "b"]}})
    grid = make_suggester("grid", space, seed=3)
    seen = []
    with pytest.raises(SearchExhausted):
        for _ in range(2 * space.grid_size()):  # bounded: a repeating grid must fail, not hang
            point = grid.suggest([])
            seen.append(tuple(sorted(point.items())))
            grid.observe(point, 1.0)
    assert len(seen) == len(set(seen)) == space.grid_size() == 36


def test_grid_of_a_float_without_step_names_the_param_and_the_fix(space: Space) -> None:
    assert not space.is_finite()
    for call in (space.grid_size, lambda: space.grid_point(0), lambda: space.grid_values("lr")):
        with pytest.raises(SpaceError) as info:
            call()
        assert info.value.field == "space.lr"
        assert 'give it a `step`, or use kind = "random"/"gp"' in str(info.value)


def test_huge_grids_are_counted_not_built() -> None:
    table = {f"p{i}": {"type": "int", "low": 0, "high": 999} for i in range(12)}
    space = Space.from_dict(table)
    assert space.grid_size() == 1000**12
    last = space.grid_point(1000**12 - 1)
    assert all(v == 999 for v in last.values())


# -- validate and key ------------------------------------------------------------------------

def test_validate_normalises_a_full_or_partial_point(space: Space) -> None:
    assert space.validate({"units": 64.0, "act": "tanh"}) == {"units": 64, "act": "tanh"}
    full = {"epochs": 30, "act": "relu", "units": 16, "dropout": 0.2, "lr": 0.01}
    assert list(space.validate(full)) == space.names


@pytest.mark.parametrize("params, field, fragment", [
    ({"lr2": 0.1}, "params.lr2", "Did you mean 'lr'"),
    ({"lr": 0.5}, "params.lr", "outside"),
    ({"lr": "0.1"}, "params.lr", "must be a number"),
    ({"units": 600}, "params.units", "outside"),
    ({"units": True}, "params.units", "must be an integer"),
    ({"units": 16.5}, "params.units", "must be an integer"),
    ({"dropout": 0.25}, "params.dropout", "not on the step grid"),
    ({"act": "selu"}, "params.act", "is not one of"),
    ({"epochs": 31}, "params.epochs", "fixed to 30"),
])
def test_validate_errors(space: Space, params, field, fragment) -> None:
    with pytest.raises(SpaceError) as info:
        space.validate(params)
    assert info.value.field == field
    assert fragment in str(info.value)


def test_key_identifies_points_regardless_of_representation(space: Space) -> None:
    a = {"lr": 0.01, "dropout": 0.3, "units": 64, "act": "gelu", "epochs": 30}
    b = {"lr": 0.01, "dropout": 0.1 + 0.2, "units": 64.0, "act": "gelu"}
    assert space.key(a) == space.key(b)
    assert hash(space.key(a)) == hash(space.key(b))
    assert space.key(a) != space.key({**a, "act": "relu"})


def test_categorical_choices_are_type_aware() -> None:
    param = CategoricalParam("c", (1, True, "1", None))
    assert [param.index(v) for v in (1, True, "1", None, 1.0)] == [0, 1, 2, 3, 0]
    with pytest.raises(SpaceError, match="duplicate"):
        CategoricalParam("c", (1, 1.0))


# -- errors ----------------------------------------------------------------------------------

@pytest.mark.parametrize("table, field, fragment", [
    ({"x": {"type": "float", "low": 1, "high": 1}}, "space.x.low", "must be less than high"),
    ({"x": {"type": "float", "low": 0, "high": 1, "log": True}}, "space.x.low", "needs low > 0"),
    ({"x": {"type": "int", "low": 0, "high": 8, "log": True}}, "space.x.low", "needs low >= 1"),
    ({"x": {"type": "float", "low": 0, "high": 1, "lg": True}}, "space.x.lg", "Did you mean 'log'"),
    ({"x": {"type": "float", "low": 0, "high": 1, "log": "yes"}}, "space.x.log", "true or false"),
    ({"x": {"type": "int", "low": False, "high": 1}}, "space.x.low", "got boolean false"),
    ({"x": {"type": "int", "low": 0, "high": 2**60}}, "space.x.high", "too large"),
    ({"x": {"type": "int", "low": 0, "high": 10, "step": 0}}, "space.x.step", "greater than 0"),
    ({"x": {"type": "int", "low": 1, "high": 9, "step": 2, "log": True}}, "space.x.step",
     "cannot be combined"),
    ({"x": {"type": "float", "low": 0, "high": 1, "step": 1e-300}}, "space.x.step", "too small"),
    ({"x": {"type": "float", "low": -1e308, "high": 1e308}}, "space.x.high", "overflows"),
    ({"x": {"type": "float", "low": 0, "high": 10**400}}, "space.x.high", "finite"),
    ({"x": {"type": "categorical", "choices": [[1], [2]]}}, "space.x.choices[0]", "string, number"),
    ({"x": {"type": "categorical", "choices": ["a", "a"]}}, "space.x.choices[1]", "duplicate"),
    ({"x": {"type": "categorical"}}, "space.x.choices", "is required"),
    ({"x": {"type": 3}}, "space.x.type", "must be a string"),
    ({"x": {}}, "space.x.type", "is missing"),
    ({"i": {"type": "int", "low": 0, "high": 1}, "x": float("nan")}, "space.x", "must be finite"),
    ({"i": {"type": "int", "low": 0, "high": 1}, "x": [object()]}, "space.x",
     "cannot be passed to a trial as JSON"),
    ({"2x": {"type": "int", "low": 0, "high": 1}}, "space.2x", "invalid parameter name"),
    ({"only": 1}, "space", "no searched parameter"),
    ([1, 2], "space", "must be a table"),
])
def test_from_dict_errors(table, field, fragment) -> None:
    with pytest.raises(SpaceError) as info:
        Space.from_dict(table)
    assert info.value.field == field
    assert fragment in str(info.value)
    assert info.value.fix
    assert isinstance(info.value, ValueError)


def test_constructed_spaces_are_checked_too() -> None:
    with pytest.raises(SpaceError, match="duplicate parameter"):
        Space((IntParam("a", 0, 1), FloatParam("a", 0.0, 1.0)))
    with pytest.raises(SpaceError, match="both searched and fixed"):
        Space((IntParam("a", 0, 1),), {"a": 3})
    with pytest.raises(SpaceError, match="must be less than high"):
        IntParam("a", 5, 1)


# -- numbers from numpy ----------------------------------------------------------------------

def test_bounds_and_steps_may_be_numpy_numbers_and_are_stored_as_python_ones() -> None:
    """A space built in Python often gets its bounds from numpy (np.linspace, an array's max)."""
    stepped = FloatParam("x", np.float32(0.5), np.int64(3), step=np.float32(0.25))
    assert (stepped.low, stepped.high, stepped.step) == (0.5, 3.0, 0.25)
    assert {type(stepped.low), type(stepped.high), type(stepped.step)} == {float}
    n = IntParam("n", np.int64(1), np.float32(9.0), step=np.int32(2))
    assert (n.low, n.high, n.step) == (1, 9, 2)
    assert {type(n.low), type(n.high), type(n.step)} == {int}
    space = Space.from_dict({"lr": {"type": "float", "low": np.float64(1e-4),
                                    "high": np.float32(0.5), "log": True},
                             "units": {"type": "int", "low": np.uint8(8), "high": np.int16(64)}})
    table = json.loads(json.dumps(space.to_dict()))  # what the store keeps
    assert Space.from_dict(table) == space


@pytest.mark.parametrize("make, field, fragment", [
    (lambda: FloatParam("x", np.bool_(True), 2.0), "space.x.low", "must be a number, got a bool"),
    (lambda: FloatParam("x", 0.0, True), "space.x.high", "must be a number, got boolean true"),
    (lambda: FloatParam("x", 0.0, np.float32("inf")), "space.x.high", "must be a finite number"),
    (lambda: FloatParam("x", np.float64("nan"), 1.0), "space.x.low", "must be a finite number"),
    (lambda: FloatParam("x", 0.0, 1.0, step=np.bool_(True)), "space.x.step", "finite number"),
    (lambda: FloatParam("x", 0.0, 1.0, step=10**400), "space.x.step", "finite number"),
    (lambda: IntParam("n", np.bool_(False), 3), "space.n.low", "must be an integer"),
    (lambda: IntParam("n", 0, np.float64(2.5)), "space.n.high", "must be an integer"),
])
def test_numpy_bools_and_non_finite_bounds_are_still_refused(make, field, fragment) -> None:
    with pytest.raises(SpaceError) as info:
        make()
    assert info.value.field == field and fragment in str(info.value), str(info.value)
