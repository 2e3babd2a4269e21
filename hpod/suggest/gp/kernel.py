"""Matern-5/2 ARD kernel over the encoded unit cube, with a Hamming distance for categoricals.

Notations (shapes):
    n: training points; m: query points; d: encoded dimensions.
    X (n, d), Xq (m, d): encoded points. Numeric coordinates lie in [0, 1]; a categorical
        coordinate holds the choice index (hpod.space).
    lam (d,): inverse squared lengthscales, lam_j = 1 / ell_j**2.
    is_cat (d,) bool: categorical coordinates.
    U (m, n): weighted squared distance u = sum_j lam_j * delta_j(x, x'), with
        delta_j = (x_j - x'_j)**2 for numeric j and [x_j != x'_j] (Hamming) for categorical j.
    k(x, x') = scale * g(u), g(u) = (1 + sqrt(5u) + 5u/3) * exp(-sqrt(5u)).

g'(u) = -(5/6) * (1 + sqrt(5u)) * exp(-sqrt(5u)) is finite at u = 0, so gradients through u never
divide by a distance (the 0/0 that autograd hits at coincident points; optuna _gp/gp.py).
"""

from __future__ import annotations

import numpy as np

_SQRT5 = np.sqrt(5.0)


def matern52(U: np.ndarray) -> np.ndarray:
    """g(U), elementwise; U >= 0."""
    r = _SQRT5 * np.sqrt(U)
    return (1.0 + r + (5.0 / 3.0) * U) * np.exp(-r)


def matern52_with_derivative(U: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(g(U), g'(U)) elementwise, sharing the exponential."""
    r = _SQRT5 * np.sqrt(U)
    e = np.exp(-r)
    return (1.0 + r + (5.0 / 3.0) * U) * e, (-5.0 / 6.0) * (1.0 + r) * e


def sq_distance(Xa: np.ndarray, Xb: np.ndarray, lam: np.ndarray, is_cat: np.ndarray) -> np.ndarray:
    """U (ma, mb): weighted squared distances between the rows of Xa (ma, d) and Xb (mb, d)."""
    return Against(Xb, lam, is_cat).sq_distance(Xa)


class Against:
    """Distances and kernels from query points to fixed points Xb (mb, d), with Xb's scaled
    coordinates and squared norms computed once: a GP prediction measures queries against the
    same training points dozens of times per suggestion."""

    def __init__(self, Xb: np.ndarray, lam: np.ndarray, is_cat: np.ndarray) -> None:
        self.Xb = Xb
        self.lam = lam
        self._num = None if not is_cat.any() else ~is_cat  # None: every coordinate numeric
        self._root = np.sqrt(lam if self._num is None else lam[self._num])
        B = (Xb if self._num is None else Xb[:, self._num]) * self._root  # (mb, d_num)
        self._Bt2 = 2.0 * B.T  # (d_num, mb); doubling is exact, so U matches the textbook form
        self._bb = np.einsum("ij,ij->i", B, B)
        self._cats = np.flatnonzero(is_cat)

    def sq_distance(self, Xa: np.ndarray) -> np.ndarray:
        """U (ma, mb) from the rows of Xa (ma, d)."""
        # NOTE: the GEMM form |a|^2 + |b|^2 - 2ab is ~10x faster than (ma, mb, d) broadcasting at
        # n = 1000 (algorithms.md 1.10); its rounding error is clipped at 0 below.
        A = (Xa if self._num is None else Xa[:, self._num]) * self._root  # (ma, d_num)
        U = np.einsum("ij,ij->i", A, A)[:, None] + self._bb[None, :] - A @ self._Bt2
        for j in self._cats:
            U += self.lam[j] * (Xa[:, j, None] != self.Xb[None, :, j])
        np.maximum(U, 0.0, out=U)
        return U

    def kernel(self, Xa: np.ndarray, scale: float) -> np.ndarray:
        """K (ma, mb) = scale * g(U)."""
        return scale * matern52(self.sq_distance(Xa))

    def kernel_and_slope(self, Xa: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
        """(K (ma, mb), scale * g'(U)): with grad_contract they give gradients in the query
        points without the (ma, mb, d) tensor dK/dxa."""
        g, dg = matern52_with_derivative(self.sq_distance(Xa))
        return scale * g, scale * dg


def self_sq_distance(X: np.ndarray, lam: np.ndarray, is_cat: np.ndarray) -> np.ndarray:
    """U (n, n) of X with itself: symmetric with an exact zero diagonal."""
    U = sq_distance(X, X, lam, is_cat)
    np.fill_diagonal(U, 0.0)
    return 0.5 * (U + U.T)


def kernel(Xa: np.ndarray, Xb: np.ndarray, lam: np.ndarray, scale: float,
           is_cat: np.ndarray) -> np.ndarray:
    """K (ma, mb) = scale * g(U)."""
    return Against(Xb, lam, is_cat).kernel(Xa, scale)


def contract_sq_differences(X: np.ndarray, M: np.ndarray, is_cat: np.ndarray,
                            n_choices: np.ndarray) -> np.ndarray:
    """c (d,) with c_j = sum_ab M_ab * delta_j(x_a, x_b) for a symmetric M (n, n).

    This is the contraction the marginal-likelihood gradient needs for every lengthscale, done with
    matrix products instead of the (n, n, d) tensor of per-dimension differences:
    numeric j: sum_ab M_ab (x_aj - x_bj)^2 = 2 (sum_a x_aj^2 r_a - x_j^T M x_j), r = M 1;
    categorical j: sum_ab M_ab [x_aj != x_bj] = sum(M) - sum_c 1_c^T M 1_c (1_c: rows with choice c).
    """
    d = X.shape[1]
    out = np.empty(d)
    num = ~is_cat
    if num.any():
        Xn = X[:, num]  # (n, d_num)
        r = M.sum(axis=1)  # (n,)
        out[num] = 2.0 * (r @ (Xn * Xn) - np.einsum("ij,ij->j", Xn, M @ Xn))
    if is_cat.any():
        total = M.sum()
        for j in np.flatnonzero(is_cat):
            onehot = (X[:, j, None] == np.arange(n_choices[j])[None, :]).astype(float)  # (n, c)
            out[j] = total - np.einsum("ic,ic->", onehot, M @ onehot)
    return out


def grad_contract(C: np.ndarray, Xq: np.ndarray, X: np.ndarray, lam: np.ndarray,
                  is_cat: np.ndarray) -> np.ndarray:
    """(m, d): sum_a C[i, a] * du(xq_i, x_a) / dxq_ij for weights C (m, n).

    du/dxq_ij = 2 lam_j (xq_ij - x_aj) for numeric j and 0 for categorical j (those coordinates
    are searched exhaustively, never by gradient), so the sum is two matrix products:
    2 lam_j (xq_ij sum_a C_ia - (C X)_ij). With C = Sq * w this is d/dxq of sum_a w_a k(xq, x_a).
    """
    w = 2.0 * np.where(is_cat, 0.0, lam)  # (d,)
    return w * (Xq * C.sum(axis=1)[:, None] - C @ X)
