"""log EI / UCB: stability far in the tail, monotonicity, gradients; the acquisition maximiser."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import norm

from hpod.space import Space
from hpod.suggest._lattice import Lattice
from hpod.suggest.gp.acquisition import UCB, LogEI, log_ei, log_ei_derivatives, log_h
from hpod.suggest.gp.optimize import maximize_acquisition
from hpod.suggest.gp.pending import condition_on_pending
from hpod.suggest.gp.regressor import GPPosterior, KernelParams


def test_log_h_matches_the_direct_formula_where_that_is_accurate():
    z = np.linspace(-8.0, 8.0, 161)
    direct = np.log(norm.pdf(z) + z * norm.cdf(z))
    np.testing.assert_allclose(log_h(z), direct, rtol=1e-9, atol=1e-12)


def test_log_h_is_finite_and_increasing_far_in_the_tail():
    z = -np.logspace(-3, 12, 4000)[::-1]  # -1e12 .. -1e-3, increasing
    z = np.concatenate([z, np.linspace(0.0, 40.0, 50)])
    v = log_h(z)
    assert np.all(np.isfinite(v))
    assert np.all(np.diff(v) > 0)
    assert np.all(np.isfinite(log_h(np.array([-1e200, -1e300, -np.finfo(float).max]))))
    # Asymptote: log h(z) ~ -z^2/2 - log(2 pi)/2 - 2 log|z|.
    assert log_h(np.array([-1e4]))[0] == pytest.approx(-5e7 - 0.5 * math.log(2 * math.pi) - 2 * math.log(1e4),
                                                       rel=1e-12)
    # Continuous across the branch points of the implementation.
    for z0 in (-1.0, -1e3):
        a, b = log_h(np.array([z0 * (1 + 1e-9), z0 * (1 - 1e-9)]))
        assert abs(a - b) < 1e-5 * max(1.0, abs(a))


def test_log_ei_is_monotone_in_the_mean_and_in_the_variance():
    mean = np.linspace(-60.0, 5.0, 2001)
    v = log_ei(mean, np.full_like(mean, 0.01), best=1.0)
    assert np.all(np.isfinite(v)) and np.all(np.diff(v) > 0)
    var = np.logspace(-10, 2, 500)
    w = log_ei(np.full_like(var, -1.0), var, best=1.0)
    assert np.all(np.isfinite(w)) and np.all(np.diff(w) > 0)


def test_log_ei_derivatives_match_finite_differences():
    mean = np.array([0.3, -2.0, -30.0, 1.5])
    var = np.array([0.5, 0.01, 0.2, 1e-4])
    _, d_mean, d_var = log_ei_derivatives(mean, var, 0.5)
    eps = 1e-7
    fd_mean = (log_ei(mean + eps, var, 0.5) - log_ei(mean - eps, var, 0.5)) / (2 * eps)
    fd_var = (log_ei(mean, var * (1 + eps), 0.5) - log_ei(mean, var * (1 - eps), 0.5)) / (2 * eps * var)
    np.testing.assert_allclose(d_mean, fd_mean, rtol=1e-5)
    np.testing.assert_allclose(d_var, fd_var, rtol=1e-4)


def _posterior() -> GPPosterior:
    rng = np.random.default_rng(0)
    X = rng.random((15, 3))
    X[:, 2] = rng.integers(0, 2, 15)
    y = np.cos(5 * X[:, 0]) - X[:, 1] + 0.3 * X[:, 2]
    return GPPosterior(X, (y - y.mean()) / y.std(), KernelParams(np.array([6.0, 3.0, 1.0]), 1.0, 1e-5),
                       np.array([False, False, True]))


def _fantasy_acq(post: GPPosterior) -> LogEI:
    Xp = np.array([[0.2, 0.3, 0.0], [0.7, 0.8, 1.0]])
    fpost, best = condition_on_pending(post, Xp, float(post.y.max()), "fantasy",
                                       np.random.default_rng(1), n_fantasies=8)
    return LogEI(fpost, best)


@pytest.mark.parametrize("make", [lambda p: LogEI(p, float(p.y.max())), lambda p: UCB(p, 2.0), _fantasy_acq],
                         ids=["logei", "ucb", "logei-fantasies"])
def test_acquisition_gradient_matches_finite_differences(make):
    acq = make(_posterior())
    Xq = np.array([[0.25, 0.4, 1.0], [0.9, 0.05, 0.0], [0.5, 0.5, 1.0]])
    values, grad = acq.value_and_grad(Xq)
    np.testing.assert_allclose(values, acq(Xq), rtol=1e-12)
    eps = 1e-6
    for j in (0, 1):
        e = np.zeros(3)
        e[j] = eps
        fd = (acq(Xq + e) - acq(Xq - e)) / (2 * eps)
        np.testing.assert_allclose(grad[:, j], fd, rtol=1e-4, atol=1e-6)
    assert np.all(grad[:, 2] == 0.0)


@pytest.mark.parametrize("strategy", ["believer", "liar", "fantasy"])
def test_pending_points_lower_the_acquisition_next_to_them(strategy):
    post = _posterior()
    rng = np.random.default_rng(2)
    cand = np.column_stack([rng.random((500, 2)), rng.integers(0, 2, 500)])
    x = cand[[np.argmax(LogEI(post, float(post.y.max()))(cand))]]  # where the next point would go
    before = LogEI(post, float(post.y.max()))(x)[0]
    cpost, best = condition_on_pending(post, x, float(post.y.max()), strategy, np.random.default_rng(0))
    after = LogEI(cpost, best)(x)[0]
    assert after < before - 1.0


class _Bowl:
    """A known acquisition: a bowl with its top at `centre` plus a bonus for one choice."""

    def __init__(self, centre: np.ndarray, cat_dim: int, best_choice: int) -> None:
        self.centre, self.cat_dim, self.best_choice = centre, cat_dim, best_choice

    def _num(self, X: np.ndarray) -> np.ndarray:
        mask = np.ones(X.shape[1], dtype=bool)
        mask[self.cat_dim] = False
        return mask

    def __call__(self, X: np.ndarray) -> np.ndarray:
        mask = self._num(X)
        return (-np.sum((X[:, mask] - self.centre[mask]) ** 2, axis=1)
                + 0.5 * (X[:, self.cat_dim] == self.best_choice))

    def value_and_grad(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mask = self._num(X)
        g = np.zeros_like(X)
        g[:, mask] = -2.0 * (X[:, mask] - self.centre[mask])
        return self(X), g


_MIXED = Space.from_dict({"x": {"type": "float", "low": 0.0, "high": 1.0},
                          "n": {"type": "int", "low": 0, "high": 100},
                          "k": {"type": "int", "low": 1, "high": 8},
                          "c": {"type": "categorical", "choices": ["a", "b", "c"]}})


def _centre(x: float, n: int, k: int) -> np.ndarray:
    """An encoded point of _MIXED (its categorical coordinate is left to the bowl)."""
    return np.array([x, _MIXED.to_unit({"x": 0, "n": n, "k": k, "c": "a"})[1],
                     _MIXED.to_unit({"x": 0, "n": 0, "k": k, "c": "a"})[2], 0.0])


def test_maximiser_finds_the_optimum_of_a_mixed_lattice():
    space, lattice = _MIXED, Lattice(_MIXED)
    centre = _centre(0.3, 73, 6)
    points, values = maximize_acquisition(_Bowl(centre, 3, 2), lattice, np.random.default_rng(0),
                                          lengthscales=np.ones(4), n_candidates=256)
    assert np.all(np.diff(values) <= 0)
    best = space.from_unit(points[0])
    assert best["x"] == pytest.approx(0.3, abs=1e-3)
    assert (best["n"], best["k"], best["c"]) == (73, 6, "c")


def _rosen_batch(Z: np.ndarray, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    x, y = Z[:, 0], Z[:, 1]
    f = 100 * (y - x ** 2) ** 2 + (1 - x) ** 2
    g = np.column_stack([-400 * x * (y - x ** 2) - 2 * (1 - x), 200 * (y - x ** 2)])
    return f, g


def test_batched_lbfgsb_converges_like_scipy_from_every_start():
    import scipy.optimize

    from hpod.suggest.gp.batched_lbfgsb import batched_lbfgsb

    Z0 = np.array([[-1.5, 2.0], [0.0, 0.0], [1.8, -1.0], [0.5, 0.5]])
    seen_rows = set()

    def tracked(Z: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        assert len(Z) == len(rows)
        seen_rows.update(rows.tolist())
        return _rosen_batch(Z)

    for bounds, optimum in (([(-2.0, 2.0), (-1.0, 3.0)], (1.0, 1.0)),  # interior optimum
                            ([(-2.0, 0.5), (-1.0, 3.0)], (0.5, 0.25))):  # on the bound x = 0.5
        Z, F = batched_lbfgsb(tracked, Z0, bounds, pgtol=1e-8, maxiter=500)
        np.testing.assert_allclose(Z, np.broadcast_to(optimum, Z.shape), atol=1e-4)
        ref = scipy.optimize.minimize(lambda v: _rosen_batch(v[None])[0][0], Z0[0], bounds=bounds)
        assert F.max() <= ref.fun + 1e-7
    assert seen_rows == {0, 1, 2, 3}


def test_batched_lbfgsb_runs_never_wait_for_each_other():
    from hpod.suggest.gp.batched_lbfgsb import batched_lbfgsb

    Z0 = np.array([[-1.5, 2.0], [0.9, 0.8], [1.8, -1.0], [1.0, 1.0]])
    per_row: dict[int, int] = {}
    calls = []

    def counted(Z: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        calls.append(len(rows))
        for r in rows.tolist():
            per_row[r] = per_row.get(r, 0) + 1
        return _rosen_batch(Z)

    batched_lbfgsb(counted, Z0, [(-2.0, 2.0), (-1.0, 3.0)], pgtol=1e-8, maxiter=500)
    # Every call evaluates every run still going, backtracking or not: the search costs the
    # longest run's evaluations, however the others' line searches went.
    assert len(calls) == max(per_row.values())
    assert per_row[3] < per_row[0]  # the run started at the optimum stopped early


def test_batched_lbfgsb_caps_every_step_at_max_step():
    from hpod.suggest.gp.batched_lbfgsb import batched_lbfgsb

    Z0 = np.array([[-1.5, 2.0], [1.8, -1.0]])
    seen: dict[int, list[np.ndarray]] = {0: [], 1: []}

    def tracked(Z: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        for z, r in zip(Z, rows.tolist()):
            seen[r].append(z.copy())
        return _rosen_batch(Z)

    Z, _ = batched_lbfgsb(tracked, Z0, [(-2.0, 2.0), (-1.0, 3.0)], pgtol=1e-8, maxiter=2000,
                          max_step=0.1)
    np.testing.assert_allclose(Z, [[1.0, 1.0], [1.0, 1.0]], atol=1e-4)
    for points in seen.values():
        # Each trial point lies within max_step of a point the run evaluated before (its
        # iterate): no trial step is longer.
        for i in range(1, len(points)):
            nearest = min(np.abs(points[i] - p).max() for p in points[:i])
            assert nearest <= 0.1 + 1e-12


def test_batched_lbfgsb_gives_up_runs_that_trail_their_group():
    from hpod.suggest.gp.batched_lbfgsb import batched_lbfgsb

    # Rosenbrock plus a per-run offset: run 1 trails run 0 (its group's best) by 10 from the
    # start; run 2 is as far behind, but alone in its group.
    Z0 = np.array([[0.9, 0.8], [-1.5, 2.0], [-1.5, 2.0]])
    offset = np.array([0.0, 10.0, 10.0])
    evaluations = np.zeros(3, dtype=int)

    def shifted(Z: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        evaluations[rows] += 1
        f, g = _rosen_batch(Z)
        return f + offset[rows], g

    Z, F = batched_lbfgsb(shifted, Z0, [(-2.0, 2.0), (-1.0, 3.0)], pgtol=1e-8, maxiter=500,
                          groups=np.array([0, 0, 1]), prune_after=2, prune_margin=0.5)
    np.testing.assert_allclose(Z[[0, 2]], [[1.0, 1.0], [1.0, 1.0]], atol=1e-4)
    assert np.abs(Z[1] - 1.0).max() > 0.1  # given up on its way
    assert evaluations[1] < evaluations[2] / 3
    assert F[1] < 10.0 + _rosen_batch(Z0[1:2])[0][0]  # where it got to, not where it started


def test_batched_lbfgsb_takes_no_starts_and_nan_starts():
    from hpod.suggest.gp.batched_lbfgsb import batched_lbfgsb

    Z, F = batched_lbfgsb(_rosen_batch, np.zeros((0, 2)), [(-2.0, 2.0)] * 2)
    assert Z.shape == (0, 2) and F.shape == (0,)

    # A start whose value is NaN must not hide its group's best from the pruning: run 2 trails
    # run 1 by 3 and is still given up after its first iteration.
    offset = np.array([0.0, 0.0, 3.0])
    evaluations = np.zeros(3, dtype=int)

    def with_nan(Z: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        evaluations[rows] += 1
        f, g = _rosen_batch(Z)
        f = f + offset[rows]
        return np.where(rows == 0, np.nan, f), g

    Z0 = np.array([[0.0, 0.0], [1.0, 1.0], [-1.5, 2.0]])
    Z, F = batched_lbfgsb(with_nan, Z0, [(-2.0, 2.0), (-1.0, 3.0)], pgtol=1e-8,
                          groups=np.zeros(3), prune_after=1, prune_margin=0.5)
    assert evaluations[2] <= 1 + 20  # one iteration, however many backtracks it took
    np.testing.assert_allclose(Z[1], [1.0, 1.0])


def test_batched_lbfgsb_reraises_an_objective_error():
    from hpod.suggest.gp.batched_lbfgsb import batched_lbfgsb

    calls = []

    def failing(Z: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        calls.append(len(Z))
        if len(calls) == 3:
            raise FloatingPointError("boom")
        return _rosen_batch(Z)

    with pytest.raises(FloatingPointError, match="boom"):
        batched_lbfgsb(failing, np.array([[0.0, 0.0], [1.5, 1.5], [-1.0, 1.0]]), [(-2.0, 2.0)] * 2)
    assert calls[0] == 3


def test_a_portfolio_search_finds_each_members_own_optimum():
    from hpod.suggest.gp.optimize import maximize_acquisitions

    space, lattice = _MIXED, Lattice(_MIXED)
    first, second = _centre(0.3, 73, 6), _centre(0.8, 10, 2)
    ranked = maximize_acquisitions([_Bowl(first, 3, 2), _Bowl(second, 3, 0)], lattice,
                                   np.random.default_rng(0), lengthscales=np.ones(4),
                                   n_candidates=256)
    assert len(ranked) == 2
    for points, values in ranked:
        assert np.all(np.diff(values) <= 0) and points.shape[1] == 4
    a, b = (space.from_unit(points[0]) for points, _ in ranked)
    assert a["x"] == pytest.approx(0.3, abs=1e-3) and (a["n"], a["k"], a["c"]) == (73, 6, "c")
    assert b["x"] == pytest.approx(0.8, abs=1e-3) and (b["n"], b["k"], b["c"]) == (10, 2, "a")


@pytest.mark.parametrize("weighed", [False, True], ids=["plain", "weighed by a cost"])
def test_portfolio_members_over_one_posterior_share_its_predictions_exactly(weighed):
    from hpod.suggest.gp.cost import CostSurface, PerCost
    from hpod.suggest.gp.optimize import _Members

    rng = np.random.default_rng(3)
    X = rng.random((12, 3))
    post = GPPosterior(X, np.sin(4 * X).sum(axis=1), KernelParams.default(3, 1e-6),
                       np.zeros(3, dtype=bool))
    members = [LogEI(post, 1.0), UCB(post, 1.5)]
    if weighed:
        costs = GPPosterior(X, X[:, 0] - X[:, 1], KernelParams.default(3, 1e-4),
                            np.zeros(3, dtype=bool))
        surface = CostSurface(costs, -0.5, 0.8, 20.0, 5.0)
        members = [PerCost(acq, surface) for acq in members]
    Q = rng.random((9, 3))
    owner = np.array([0, 1, 1, 0, 1, 0, 0, 1, 1], dtype=float)
    shared = _Members(members)
    values, grad = shared.value_and_grad(np.column_stack([Q, owner]))
    np.testing.assert_allclose(shared(np.column_stack([Q, owner])), values, rtol=1e-12)
    for i, acq in enumerate(members):
        rows = owner == i
        v, g = acq.value_and_grad(Q[rows])
        np.testing.assert_allclose(values[rows], v, rtol=1e-12)
        np.testing.assert_allclose(grad[rows, :3], g, rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(shared.each(Q)[i], acq(Q), rtol=1e-12)
    assert np.all(grad[:, 3] == 0.0)  # the member column never moves
