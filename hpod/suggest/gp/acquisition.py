"""Acquisition functions over a GP posterior (the GP models a quantity to maximise).

Notations (shapes): m query points, d dimensions, F fantasies.
    mean (m,) | (m, F), var (m,): posterior at the queries; best () | (F,): the incumbent.
    z = (mean - best) / sigma;  EI = sigma * h(z),  h(z) = phi(z) + z Phi(z).

log EI is computed stably in the far tail (Ament et al., NeurIPS 2023, arXiv 2310.20708):
    z > -1:          log h(z) directly;
    -1e3 < z <= -1:  log h = log phi(z) + log1p(z sqrt(pi/2) erfcx(-z/sqrt2)), since
                     h = phi(z) (1 + z sqrt(pi/2) erfcx(-z/sqrt2)) and erfcx does not underflow;
    z <= -1e3:       the bracket's asymptotic series 1/z^2 - 3/z^4 + 15/z^6 (its direct form
                     would cancel to 0 in float64).
d log EI / d mean = Phi(z) / (sigma h(z)) is formed as exp(log Phi - log h) with log_ndtr.
"""

from __future__ import annotations

import math
from typing import Protocol

import numpy as np
from scipy.special import erfcx, log_ndtr, logsumexp

from hpod.suggest.gp.regressor import GPPosterior

_LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
_SQRT_HALF_PI = math.sqrt(0.5 * math.pi)
_ASYMPTOTIC_Z = -1e3
# Added to the posterior variance so sigma > 0 at (noise-free) training points.
_VAR_EPS = 1e-12


def log_h(z: np.ndarray) -> np.ndarray:
    """log(phi(z) + z Phi(z)), finite for every finite z."""
    z = np.asarray(z, dtype=float)
    out = np.empty_like(z)
    hi = z > -1.0
    zh = z[hi]
    out[hi] = np.log(np.exp(-0.5 * zh * zh - _LOG_SQRT_2PI) + zh * np.exp(log_ndtr(zh)))
    mid = (~hi) & (z > _ASYMPTOTIC_Z)
    zm = z[mid]
    out[mid] = (-0.5 * zm * zm - _LOG_SQRT_2PI
                + np.log1p(zm * _SQRT_HALF_PI * erfcx(-zm / math.sqrt(2.0))))
    lo = z <= _ASYMPTOTIC_Z
    # NOTE: the clip keeps z^2 finite; below it log h is -inf-like anyway (< -5e299).
    zl = np.maximum(z[lo], -1e150)
    inv2 = 1.0 / (zl * zl)
    out[lo] = (-0.5 * zl * zl - _LOG_SQRT_2PI - 2.0 * np.log(-zl)
               + np.log1p(-3.0 * inv2 + 15.0 * inv2 * inv2))
    return out


def log_ei(mean: np.ndarray, var: np.ndarray, best: float | np.ndarray) -> np.ndarray:
    """log EI, same shape as mean; var broadcasts against mean's leading axis."""
    sigma = np.sqrt(var + _VAR_EPS)
    if np.ndim(mean) == 2:
        sigma = sigma[:, None]
    z = (mean - best) / sigma
    return np.log(sigma) + log_h(z)


def log_ei_derivatives(mean: np.ndarray, var: np.ndarray,
                       best: float | np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(log EI, d/dmean, d/dvar), each shaped like mean."""
    sigma = np.sqrt(var + _VAR_EPS)
    if np.ndim(mean) == 2:
        sigma = sigma[:, None]
    z = (mean - best) / sigma
    lh = log_h(z)
    ratio = np.exp(log_ndtr(z) - lh)  # Phi / h, ~|z| in the far tail, never 0/0
    d_mean = ratio / sigma
    # d log EI / d sigma = (1 - z Phi/h) / sigma;  d sigma / d var = 1 / (2 sigma)
    d_var = (1.0 - z * ratio) / (2.0 * sigma * sigma)
    return np.log(sigma) + lh, d_mean, d_var


class Acquisition(Protocol):
    def __call__(self, Xq: np.ndarray, /) -> np.ndarray:
        """(m,) values at Xq (m, d); higher is better."""
        ...

    def value_and_grad(self, Xq: np.ndarray, /) -> tuple[np.ndarray, np.ndarray]:
        """((m,), (m, d)); the gradient is zero along categorical coordinates."""
        ...


class LogEI:
    """log expected improvement over `best`. With fantasies (posterior y of shape (n, F), best
    (F,)) it is log of the mean EI over the fantasies, a Monte-Carlo q-EI for pending points."""

    def __init__(self, posterior: GPPosterior, best: float | np.ndarray) -> None:
        self.posterior = posterior
        self.best = best
        self._fantasies = posterior.alpha.ndim == 2

    def __call__(self, Xq: np.ndarray) -> np.ndarray:
        return self.values_from(*self.posterior.mean_var(Xq))

    def value_and_grad(self, Xq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.value_and_grad_from(*self.posterior.mean_var_grad(Xq))

    def values_from(self, mean: np.ndarray, var: np.ndarray) -> np.ndarray:
        """Values from the posterior's moments at the query points."""
        values = log_ei(mean, var, self.best)
        if self._fantasies:
            return logsumexp(values, axis=1) - math.log(values.shape[1])
        return values

    def value_and_grad_from(self, mean: np.ndarray, var: np.ndarray, dmean: np.ndarray,
                            dvar: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Values and gradients from the posterior's moments and their gradients."""
        values, d_mean, d_var = log_ei_derivatives(mean, var, self.best)
        if not self._fantasies:
            return values, d_mean[:, None] * dmean + d_var[:, None] * dvar
        total = logsumexp(values, axis=1)  # (m,)
        w = np.exp(values - total[:, None])  # (m, F) softmax weights of the fantasies
        grad = (np.einsum("if,if,ifj->ij", w, d_mean, dmean)
                + np.einsum("if,if->i", w, d_var)[:, None] * dvar)
        return total - math.log(values.shape[1]), grad


class UCB:
    """Upper confidence bound mean + beta * sigma."""

    def __init__(self, posterior: GPPosterior, beta: float = 2.0) -> None:
        if posterior.alpha.ndim != 1:
            raise ValueError("UCB takes a single posterior, not fantasies")
        self.posterior = posterior
        self.beta = beta

    def __call__(self, Xq: np.ndarray) -> np.ndarray:
        return self.values_from(*self.posterior.mean_var(Xq))

    def value_and_grad(self, Xq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.value_and_grad_from(*self.posterior.mean_var_grad(Xq))

    def values_from(self, mean: np.ndarray, var: np.ndarray) -> np.ndarray:
        return mean + self.beta * np.sqrt(var + _VAR_EPS)

    def value_and_grad_from(self, mean: np.ndarray, var: np.ndarray, dmean: np.ndarray,
                            dvar: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        sigma = np.sqrt(var + _VAR_EPS)
        return mean + self.beta * sigma, dmean + (self.beta / (2.0 * sigma))[:, None] * dvar
