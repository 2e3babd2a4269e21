"""MAP fit and posterior: analytic gradients, interpolation, variance, conditioning."""

from __future__ import annotations

import numpy as np
import pytest

from hpod.suggest.gp.linalg import cholesky
from hpod.suggest.gp.regressor import (GPPosterior, KernelParams, fit_kernel_params,
                                       neg_log_posterior)

IS_CAT = np.array([False, False, True])
N_CHOICES = np.array([0, 0, 3])


def _data(n: int = 25, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.random((n, 3))
    X[:, 2] = rng.integers(0, 3, n)
    y = np.sin(6 * X[:, 0]) + (X[:, 1] - 0.5) ** 2 + 0.4 * (X[:, 2] == 1)
    return X, (y - y.mean()) / y.std()


@pytest.mark.parametrize("prior", ["hvarfner", "botorch", "optuna", "vague-noise"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_marginal_likelihood_gradient_matches_finite_differences(prior, seed):
    X, y = _data(seed=seed)
    theta = np.random.default_rng(seed).normal(scale=0.7, size=5)
    _, grad = neg_log_posterior(theta, X, y, IS_CAT, N_CHOICES, 1e-6, prior)
    eps = 1e-6
    fd = np.array([(neg_log_posterior(theta + eps * e, X, y, IS_CAT, N_CHOICES, 1e-6, prior)[0]
                    - neg_log_posterior(theta - eps * e, X, y, IS_CAT, N_CHOICES, 1e-6, prior)[0]) / (2 * eps)
                   for e in np.eye(5)])
    np.testing.assert_allclose(grad, fd, rtol=1e-4, atol=1e-5)


def test_fit_improves_the_objective_and_warm_start_is_accepted():
    X, y = _data(40)
    default = KernelParams.default(3, 1e-6)
    fitted = fit_kernel_params(X, y, IS_CAT, N_CHOICES, noise_floor=1e-6)
    f0, _ = neg_log_posterior(default.to_theta(1e-6), X, y, IS_CAT, N_CHOICES, 1e-6)
    f1, _ = neg_log_posterior(fitted.to_theta(1e-6), X, y, IS_CAT, N_CHOICES, 1e-6)
    assert f1 < f0
    again = fit_kernel_params(X, y, IS_CAT, N_CHOICES, noise_floor=1e-6, init=fitted)
    f2, _ = neg_log_posterior(again.to_theta(1e-6), X, y, IS_CAT, N_CHOICES, 1e-6)
    assert f2 <= f1 + 1e-6


def test_gp_interpolates_noise_free_data():
    X, y = _data(30)
    params = fit_kernel_params(X, y, IS_CAT, N_CHOICES, noise_floor=1e-6, deterministic=True)
    assert params.noise_var == pytest.approx(1e-6, rel=1e-3)
    post = GPPosterior(X, y, params, IS_CAT)
    mean, var = post.mean_var(X)
    np.testing.assert_allclose(mean, y, atol=2e-3)
    assert np.all(var < 1e-3)


def test_posterior_variance_is_nonnegative_and_bounded_by_the_prior():
    X, y = _data(30)
    params = KernelParams(np.array([30.0, 30.0, 5.0]), 1.5, 1e-6)
    post = GPPosterior(X, y, params, IS_CAT)
    rng = np.random.default_rng(3)
    Xq = np.vstack([X, X + 1e-9, rng.random((200, 3))])
    Xq[-200:, 2] = rng.integers(0, 3, 200)
    _, var = post.mean_var(Xq)
    assert np.all(var >= 0.0)
    assert np.all(var <= params.scale + 1e-9)
    _, var2, _, _ = post.mean_var_grad(Xq)
    assert np.all(var2 >= 0.0)


def test_posterior_gradients_match_finite_differences():
    X, y = _data(20)
    post = GPPosterior(X, y, KernelParams(np.array([4.0, 2.0, 1.0]), 1.2, 1e-4), IS_CAT)
    Xq = np.array([[0.31, 0.62, 2.0], [0.8, 0.15, 0.0]])
    _, _, dmean, dvar = post.mean_var_grad(Xq)
    eps = 1e-6
    for j in (0, 1):
        e = np.zeros(3)
        e[j] = eps
        (m1, v1), (m0, v0) = post.mean_var(Xq + e), post.mean_var(Xq - e)
        np.testing.assert_allclose(dmean[:, j], (m1 - m0) / (2 * eps), rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(dvar[:, j], (v1 - v0) / (2 * eps), rtol=1e-4, atol=1e-7)


def test_conditioning_equals_refitting_on_the_stacked_data():
    X, y = _data(20)
    params = KernelParams(np.array([4.0, 2.0, 1.0]), 1.2, 1e-4)
    post = GPPosterior(X[:15], y[:15], params, IS_CAT).condition(X[15:], y[15:])
    full = GPPosterior(X, y, params, IS_CAT)
    Xq = _data(10, seed=5)[0]
    for a, b in zip(post.mean_var(Xq), full.mean_var(Xq)):
        np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-9)


def test_cholesky_adds_jitter_for_duplicate_points():
    X = np.array([[0.5, 0.5, 0.0]] * 4)
    params = KernelParams(np.ones(3), 1.0, 0.0)
    post = GPPosterior(X, np.zeros(4), params, IS_CAT)  # singular without jitter
    assert np.all(np.isfinite(post.alpha))
    with pytest.raises(np.linalg.LinAlgError):
        cholesky(-np.eye(3))
