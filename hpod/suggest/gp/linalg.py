"""Dense symmetric positive-definite algebra through one Cholesky factor, straight on LAPACK.

scipy.linalg's cholesky / cho_solve / solve_triangular add ~50-100 us of argument handling per
call; the GP makes hundreds of small calls per suggestion, so the LAPACK routines are called
directly. Solves only: no explicit inverse except the one the marginal-likelihood gradient needs
(potri, from the factor).

Notations: K (n, n) SPD; L (n, n) lower triangular with K = L L^T; B (n,) or (n, r).
"""

from __future__ import annotations

import numpy as np
from scipy.linalg.lapack import dpotrf, dpotri, dpotrs, dtrtrs

_JITTERS = (0.0, 1e-10, 1e-8, 1e-6, 1e-4, 1e-2)


def cholesky(K: np.ndarray) -> np.ndarray:
    """Lower Cholesky factor of K, adding growing diagonal jitter (relative to the mean diagonal)
    when K is numerically singular, e.g. near-duplicate points with tiny noise. Raises
    LinAlgError when even 1e-2 does not help."""
    mean_diag = float(np.mean(np.diag(K))) if K.size else 1.0
    if not np.isfinite(mean_diag):
        raise np.linalg.LinAlgError("kernel matrix is not finite")
    for jitter in _JITTERS:
        Kj = K if jitter == 0.0 else K + (jitter * mean_diag) * np.eye(len(K))
        L, info = dpotrf(Kj, lower=1, clean=1)
        if info == 0:
            return L
    raise np.linalg.LinAlgError("kernel matrix is not positive definite even with jitter")


def cho_solve(L: np.ndarray, B: np.ndarray) -> np.ndarray:
    """K^-1 B."""
    X, info = dpotrs(L, B, lower=1)
    if info != 0:
        raise np.linalg.LinAlgError(f"potrs failed ({info})")
    return X


def tri_solve(L: np.ndarray, B: np.ndarray) -> np.ndarray:
    """L^-1 B."""
    X, info = dtrtrs(L, B, lower=1)
    if info != 0:
        raise np.linalg.LinAlgError(f"trtrs failed ({info})")
    return X


def inverse_from_cholesky(L: np.ndarray) -> np.ndarray:
    """K^-1 (n, n), symmetric."""
    inv, info = dpotri(L, lower=1)
    if info != 0:
        raise np.linalg.LinAlgError(f"potri failed ({info})")
    # potri fills the lower triangle only.
    return np.tril(inv) + np.tril(inv, -1).T
