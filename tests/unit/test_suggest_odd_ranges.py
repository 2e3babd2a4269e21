"""Suggesters on discrete axes too long to tabulate (2**16 values and more): an int 0..10**9, a log
int 1..2**53, a float with a fine step. Their grid is never enumerated value by value."""

from __future__ import annotations

import numpy as np
import pytest

from hpod.space import Space
from hpod.suggest import make_suggester
from hpod.suggest._lattice import Lattice
from hpod.suggest._parzen import ParzenEstimator
from hpod.suggest.gp_grid import _take_unseen

LONG_AXES = {"n": {"type": "int", "low": 0, "high": 10**9},
             "log": {"type": "int", "low": 1, "high": 10**7, "log": True},
             "big": {"type": "int", "low": 1, "high": 2**53, "log": True},
             "stepped": {"type": "int", "low": -7, "high": 10**7 - 7, "step": 5},
             "fine": {"type": "float", "low": -1.0, "high": 999.0, "step": 0.001}}


def _index_samples(count: int, rng: np.random.Generator) -> np.ndarray:
    return np.concatenate([[0, 1, count // 2, count - 2, count - 1],
                           rng.integers(0, count, size=200)]).astype(np.int64)


@pytest.mark.parametrize("name", sorted(LONG_AXES))
def test_long_grid_coordinates_are_what_encoding_each_grid_value_gives(name):
    space = Space.from_dict({name: LONG_AXES[name]})
    lattice, p = Lattice(space), space.params[0]
    assert p.count > 1 << 16
    k = _index_samples(p.count, np.random.default_rng(0))
    expected = np.array([p.encode(p.grid_value(int(i))) for i in k])
    np.testing.assert_allclose(lattice.coords(0, k), expected, rtol=0, atol=1e-13)
    assert lattice.coords(0, k.reshape(5, -1)).shape == (5, len(k) // 5)
    if name != "big":  # near 2**53 a log coordinate no longer tells neighbours apart
        # Snapping a grid value's coordinate gives the value back, as decoding it does.
        np.testing.assert_array_equal(lattice.index_of(0, lattice.coords(0, k)), k)


@pytest.mark.parametrize("name", sorted(LONG_AXES))
def test_long_grid_index_is_the_value_decoding_snaps_to(name):
    space = Space.from_dict({name: LONG_AXES[name]})
    lattice, p = Lattice(space), space.params[0]
    u = np.concatenate([[-0.5, 0.0, 1e-12, 0.5, 1.0 - 1e-12, 1.0, 1.5],
                        np.random.default_rng(1).random(200)])
    snapped = [p.grid_value(int(k)) for k in lattice.index_of(0, u)]
    assert snapped == [p.decode(float(x)) for x in u]


def test_the_parzen_estimator_keeps_cells_for_short_grids_only():
    space = Space.from_dict({"short": {"type": "int", "low": 0, "high": 1023},
                             "long": {"type": "int", "low": 0, "high": 100_000},
                             "x": {"type": "float", "low": 0.0, "high": 1.0}})
    lattice = Lattice(space)
    X = lattice.from_uniform(np.random.default_rng(0).random((6, 3)))
    pe = ParzenEstimator(X, np.ones(6), lattice)
    assert sorted(pe.edges) == [0]
    assert len(pe.edges[0]) == 1024 + 1
    # The long axis is a density, the short one a mass: both finite at any lattice point.
    Xq = pe.sample(np.random.default_rng(1), 64)
    assert np.all(np.isfinite(pe.log_pdf(Xq)))


@pytest.mark.parametrize("name", ["n", "big", "fine"])
def test_tpe_suggests_on_a_long_axis(name):
    space = Space.from_dict({name: LONG_AXES[name], "x": {"type": "float", "low": 0.0, "high": 1.0}})
    s = make_suggester("tpe", space, seed=0)
    seen = set()
    for _ in range(14):
        p = s.suggest()
        space.validate(p)
        seen.add(space.key(p))
        s.observe(p, p["x"])
    assert len(seen) == 14


def test_gp_grid_suggests_on_a_large_grid_with_a_long_axis():
    spec = {f"c{i}": {"type": "categorical", "choices": ["a", "b", "c"]} for i in range(25)}
    spec["n"] = LONG_AXES["n"]
    space = Space.from_dict(spec)
    s = make_suggester("gp-grid", space, seed=0)
    seen = set()
    for _ in range(30):
        p = s.suggest()
        seen.add(space.key(p))
        s.observe(p, (p["n"] / 1e9 - 0.3) ** 2 + 0.01 * sum(p[f"c{i}"] == "a" for i in range(25)))
    assert len(seen) == 30


def test_take_unseen_keeps_first_occurrences_in_order_and_remembers_them():
    known: set[bytes] = {np.array([9, 9], dtype=np.int64).tobytes()}
    G = np.array([[3, 1], [9, 9], [0, 2], [3, 1], [5, 5], [0, 2]], dtype=np.int64)
    np.testing.assert_array_equal(_take_unseen(G, known), [[3, 1], [0, 2], [5, 5]])
    assert _take_unseen(G, known).shape == (0, 2)
