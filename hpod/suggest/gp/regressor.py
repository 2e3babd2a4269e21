"""GP regression: MAP fit of the kernel hyperparameters and the posterior they give.

Notations (shapes), as in hpod.suggest.gp.kernel, plus:
    y (n,): standardised targets (the GP models a quantity to *maximise*); y (n, F) holds F
        fantasy versions of the targets that share X (pending points with sampled values).
    theta (d + 2,): [log lam (d), log scale, log(noise_var - floor)], what L-BFGS-B moves.
    K (n, n) = k(X, X) + noise_var * I;  L (n, n): its lower Cholesky factor;  alpha = K^-1 y.

Objective (to minimise) = -(log N(y | 0, K) + log prior(theta)). Its gradient is analytic
(algorithms.md 1.5): d/dtheta_k = 1/2 tr((alpha alpha^T - K^-1) dK/dtheta_k) + dlog prior, with
dK/dlog lam_j = scale g'(U) lam_j D_j, dK/dlog scale = scale g(U), dK/dtheta_noise = e^theta I.
Linear algebra goes through the Cholesky factor (hpod.suggest.gp.linalg): solves, and LAPACK potri
for the one K^-1 the trace term needs (never np.linalg.inv).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import scipy.optimize

from hpod.suggest.gp import kernel as kern
from hpod.suggest.gp.linalg import cho_solve, cholesky, inverse_from_cholesky, tri_solve
from hpod.suggest.gp.prior import log_prior

logger = logging.getLogger(__name__)

# Bounds of theta: lengthscales in [0.01, 100] of the unit cube, scale in [1e-3, 1e3].
_LOG_LAM_BOUNDS = (math.log(1e-4), math.log(1e4))
_LOG_SCALE_BOUNDS = (math.log(1e-3), math.log(1e3))
_RAW_NOISE_BOUNDS = (math.log(1e-12), math.log(2.0))


@dataclass(frozen=True)
class KernelParams:
    lam: np.ndarray  # (d,) inverse squared lengthscales
    scale: float
    noise_var: float

    @classmethod
    def default(cls, d: int, noise_floor: float) -> KernelParams:
        return cls(np.ones(d), 1.0, noise_floor + 1e-3)

    @property
    def lengthscales(self) -> np.ndarray:
        return 1.0 / np.sqrt(self.lam)

    def to_theta(self, noise_floor: float) -> np.ndarray:
        extra = max(self.noise_var - noise_floor, 1e-12)
        return np.concatenate([np.log(self.lam), [math.log(self.scale), math.log(extra)]])

    @classmethod
    def from_theta(cls, theta: np.ndarray, noise_floor: float) -> KernelParams:
        d = theta.size - 2
        return cls(np.exp(theta[:d]), math.exp(theta[d]), noise_floor + math.exp(theta[d + 1]))


def neg_log_posterior(theta: np.ndarray, X: np.ndarray, y: np.ndarray, is_cat: np.ndarray,
                      n_choices: np.ndarray, noise_floor: float,
                      prior: str = "hvarfner") -> tuple[float, np.ndarray]:
    """(-(log marginal likelihood + log prior), its gradient (d + 2,)) at theta."""
    n, d = X.shape
    p = KernelParams.from_theta(theta, noise_floor)
    U = kern.self_sq_distance(X, p.lam, is_cat)  # (n, n)
    g, dg = kern.matern52_with_derivative(U)
    K = p.scale * g
    K[np.diag_indices(n)] += p.noise_var
    L = cholesky(K)
    alpha = cho_solve(L, y)  # (n,)
    lml = -0.5 * float(y @ alpha) - float(np.log(np.diag(L)).sum()) - 0.5 * n * math.log(2 * math.pi)

    W = np.outer(alpha, alpha) - inverse_from_cholesky(L)  # (n, n), symmetric
    grad = np.empty(d + 2)
    # dK/dlog lam_j = scale g'(U) lam_j D_j  =>  1/2 lam_j sum(W o scale g' o D_j)
    grad[:d] = 0.5 * p.lam * kern.contract_sq_differences(X, W * (p.scale * dg), is_cat, n_choices)
    grad[d] = 0.5 * float(np.einsum("ij,ij->", W, K)) - 0.5 * p.noise_var * float(np.trace(W))
    grad[d + 1] = 0.5 * (p.noise_var - noise_floor) * float(np.trace(W))
    lp, dlp = log_prior(theta, noise_floor, prior)
    return -(lml + lp), -(grad + dlp)


def fit_kernel_params(X: np.ndarray, y: np.ndarray, is_cat: np.ndarray, n_choices: np.ndarray, *,
                      noise_floor: float, init: KernelParams | None = None,
                      prior: str = "hvarfner", deterministic: bool = False,
                      gtol: float = 1e-2, maxiter: int = 200) -> KernelParams:
    """MAP kernel hyperparameters by L-BFGS-B with the analytic gradient, warm-started at `init`.

    On failure (a non-PD matrix the jitter cannot fix, a non-finite objective) it retries from the
    defaults, then returns the defaults unfitted (optuna _gp/gp.py `fit_kernel_params`).
    `deterministic` pins the noise variance at the floor.
    """
    d = X.shape[1]
    default = KernelParams.default(d, noise_floor)
    starts = [init, default] if init is not None and init.lam.shape == (d,) else [default]
    for start in starts:
        try:
            return _fit_from(X, y, is_cat, n_choices, start, noise_floor, prior,
                             deterministic, gtol, maxiter)
        except (np.linalg.LinAlgError, FloatingPointError) as e:
            logger.debug("kernel fit from %s failed: %s", "warm start" if start is init else "defaults", e)
    return default


def _fit_from(X: np.ndarray, y: np.ndarray, is_cat: np.ndarray, n_choices: np.ndarray,
              start: KernelParams, noise_floor: float, prior: str, deterministic: bool,
              gtol: float, maxiter: int) -> KernelParams:
    d = X.shape[1]
    theta0 = start.to_theta(noise_floor)
    bounds = [_LOG_LAM_BOUNDS] * d + [_LOG_SCALE_BOUNDS, _RAW_NOISE_BOUNDS]
    if deterministic:
        # NOTE: a 1e-12 extra on the floor is the closest L-BFGS-B gets to "fixed".
        theta0[d + 1] = _RAW_NOISE_BOUNDS[0]
        bounds[d + 1] = (_RAW_NOISE_BOUNDS[0], _RAW_NOISE_BOUNDS[0])
    theta0 = np.clip(theta0, [b[0] for b in bounds], [b[1] for b in bounds])

    def fun(theta: np.ndarray) -> tuple[float, np.ndarray]:
        f, g = neg_log_posterior(theta, X, y, is_cat, n_choices, noise_floor, prior)
        if not (math.isfinite(f) and np.all(np.isfinite(g))):
            raise FloatingPointError("non-finite marginal likelihood")
        return f, g

    res = scipy.optimize.minimize(fun, theta0, jac=True, method="L-BFGS-B", bounds=bounds,
                                  options={"gtol": gtol, "maxiter": maxiter})
    return KernelParams.from_theta(res.x, noise_floor)


class GPPosterior:
    """The posterior of f given (X, y) under fixed kernel parameters.

    y may be (n, F): F target vectors over the same X (fantasies), sharing one factorisation, so
    the means gain a trailing F axis and the variance does not.
    """

    def __init__(self, X: np.ndarray, y: np.ndarray, params: KernelParams, is_cat: np.ndarray,
                 L: np.ndarray | None = None) -> None:
        self.X = X
        self.y = y
        self.params = params
        self.is_cat = is_cat
        if L is None:
            K = kern.kernel(X, X, params.lam, params.scale, is_cat)
            K[np.diag_indices(len(X))] += params.noise_var
            L = cholesky(K)
        self.L = L  # (n, n)
        self.alpha = cho_solve(L, y)  # (n,) | (n, F)
        self._against = kern.Against(X, params.lam, is_cat)

    def mean_var(self, Xq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """mean (m,) | (m, F), var (m,) >= 0 at the query points Xq (m, d)."""
        p = self.params
        Kq = self._against.kernel(Xq, p.scale)  # (m, n)
        mean = Kq @ self.alpha
        V = tri_solve(self.L, Kq.T)  # (n, m)
        var = np.maximum(p.scale - np.einsum("ij,ij->j", V, V), 0.0)
        return mean, var

    def mean(self, Xq: np.ndarray) -> np.ndarray:
        """The mean (m,) | (m, F) alone: no triangular solve, a fraction of mean_var's cost."""
        return self._against.kernel(Xq, self.params.scale) @ self.alpha

    def mean_grad(self, Xq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(mean (m,), dmean (m, d)) for one target vector, without the variance's solves."""
        p = self.params
        Kq, Sq = self._against.kernel_and_slope(Xq, p.scale)
        return Kq @ self.alpha, kern.grad_contract(Sq * self.alpha, Xq, self.X, p.lam, self.is_cat)

    def mean_var_grad(self, Xq: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(mean, var, dmean, dvar): dmean (m, d) | (m, F, d), dvar (m, d); gradients in Xq,
        zero along categorical coordinates."""
        p = self.params
        Kq, Sq = self._against.kernel_and_slope(Xq, p.scale)  # (m, n) each
        mean = Kq @ self.alpha
        beta = cho_solve(self.L, Kq.T).T  # (m, n) K^-1 k
        var_raw = p.scale - np.einsum("ia,ia->i", Kq, beta)
        var = np.maximum(var_raw, 0.0)
        if self.alpha.ndim == 1:
            dmean = kern.grad_contract(Sq * self.alpha, Xq, self.X, p.lam, self.is_cat)
        else:
            F = self.alpha.shape[1]
            weights = np.moveaxis(Sq[:, :, None] * self.alpha[None, :, :], 2, 1)  # (m, F, n)
            dmean = kern.grad_contract(weights.reshape(-1, len(self.X)), np.repeat(Xq, F, axis=0),
                                       self.X, p.lam, self.is_cat).reshape(len(Xq), F, -1)
        dvar = -2.0 * kern.grad_contract(Sq * beta, Xq, self.X, p.lam, self.is_cat)
        dvar[var_raw <= 0.0] = 0.0
        return mean, var, dmean, dvar

    def condition(self, Xp: np.ndarray, yp: np.ndarray) -> GPPosterior:
        """The posterior after also observing yp at Xp (p, d), same kernel parameters; the
        Cholesky factor is extended in O(n^2 p) instead of refactored."""
        prm = self.params
        K12 = kern.kernel(self.X, Xp, prm.lam, prm.scale, self.is_cat)  # (n, p)
        K22 = kern.kernel(Xp, Xp, prm.lam, prm.scale, self.is_cat)
        K22[np.diag_indices(len(Xp))] += prm.noise_var
        L21t = tri_solve(self.L, K12)  # (n, p)
        L22 = cholesky(K22 - L21t.T @ L21t)
        n, q = len(self.X), len(Xp)
        L = np.zeros((n + q, n + q))
        L[:n, :n] = self.L
        L[n:, :n] = L21t.T
        L[n:, n:] = L22
        y = np.concatenate([self.y, yp], axis=0)
        return GPPosterior(np.vstack([self.X, Xp]), y, prm, self.is_cat, L=L)

    def joint_samples(self, Xp: np.ndarray, rng: np.random.Generator, n_samples: int) -> np.ndarray:
        """(n_samples, p) draws of f at Xp (p, d) from the joint posterior (1-D y only)."""
        prm = self.params
        Kq = self._against.kernel(Xp, prm.scale)  # (p, n)
        mean = Kq @ self.alpha
        V = tri_solve(self.L, Kq.T)  # (n, p)
        cov = kern.kernel(Xp, Xp, prm.lam, prm.scale, self.is_cat) - V.T @ V
        C = cholesky(0.5 * (cov + cov.T) + 1e-10 * np.eye(len(Xp)))
        return mean[None, :] + rng.standard_normal((n_samples, len(Xp))) @ C.T
