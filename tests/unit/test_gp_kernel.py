"""Matern-5/2 ARD + Hamming kernel: values, the GEMM contraction, and the gradient in x."""

from __future__ import annotations

import numpy as np
import pytest

from hpod.suggest.gp import kernel as kern


@pytest.fixture
def mixed_points() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.random((12, 4))
    X[:, 2] = rng.integers(0, 3, 12)  # a categorical coordinate with 3 choices
    return X, np.array([False, False, True, False]), np.array([0, 0, 3, 0])


def test_kernel_is_symmetric_psd_with_scale_on_the_diagonal(mixed_points):
    X, is_cat, _ = mixed_points
    lam = np.array([2.0, 0.5, 1.5, 3.0])
    K = kern.kernel(X, X, lam, 1.7, is_cat)
    np.testing.assert_allclose(K, K.T, atol=1e-12)
    np.testing.assert_allclose(np.diag(K), 1.7, rtol=1e-7)
    assert np.linalg.eigvalsh(K).min() > -1e-9


def test_categorical_distance_is_hamming_not_index_difference():
    is_cat = np.array([True])
    lam = np.array([1.0])
    X = np.array([[0.0], [1.0], [2.0]])
    U = kern.sq_distance(X, X, lam, is_cat)
    assert U[0, 1] == U[0, 2] == U[1, 2] == 1.0
    assert U[0, 0] == 0.0


def test_matern_derivative_matches_finite_differences_including_zero():
    U = np.array([0.0, 1e-6, 0.3, 2.0, 10.0])
    _, dg = kern.matern52_with_derivative(U)
    eps = 1e-7
    fd = (kern.matern52(U + eps) - kern.matern52(np.maximum(U - eps, 0.0))) / (
        U + eps - np.maximum(U - eps, 0.0))
    np.testing.assert_allclose(dg, fd, rtol=2e-3, atol=2e-3)
    assert dg[0] == pytest.approx(-5.0 / 6.0)


def test_contraction_equals_brute_force_sum(mixed_points):
    X, is_cat, n_choices = mixed_points
    rng = np.random.default_rng(1)
    A = rng.normal(size=(len(X), len(X)))
    M = A + A.T
    diff = X[:, None, :] - X[None, :, :]
    D = np.where(is_cat, (diff != 0).astype(float), diff ** 2)  # (n, n, d)
    expected = np.einsum("ab,abj->j", M, D)
    np.testing.assert_allclose(kern.contract_sq_differences(X, M, is_cat, n_choices), expected,
                               rtol=1e-9, atol=1e-9)


def test_kernel_gradient_in_x_matches_finite_differences(mixed_points):
    X, is_cat, _ = mixed_points
    lam = np.array([2.0, 0.5, 1.5, 3.0])
    Xq = np.array([[0.3, 0.7, 1.0, 0.2], [0.9, 0.1, 0.0, 0.5]])
    w = np.random.default_rng(4).standard_normal(len(X))  # any weights of the training points
    Kq, Sq = kern.Against(X, lam, is_cat).kernel_and_slope(Xq, 1.3)
    np.testing.assert_allclose(Kq, kern.kernel(Xq, X, lam, 1.3, is_cat), rtol=1e-12)
    grad = kern.grad_contract(Sq * w, Xq, X, lam, is_cat)  # d/dxq of sum_a w_a k(xq, x_a)
    eps = 1e-6
    for j in (0, 1, 3):
        e = np.zeros(4)
        e[j] = eps
        fd = (kern.kernel(Xq + e, X, lam, 1.3, is_cat) - kern.kernel(Xq - e, X, lam, 1.3, is_cat)) @ w / (2 * eps)
        np.testing.assert_allclose(grad[:, j], fd, rtol=1e-5, atol=1e-8)
    assert np.all(grad[:, 2] == 0.0)
