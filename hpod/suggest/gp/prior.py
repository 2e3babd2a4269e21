"""Log-priors of the kernel hyperparameters for the MAP fit, with their gradients.

The fit optimises theta (d + 2,) = [log lam_1 .. log lam_d, log scale, log(noise_var - floor)].

Priors (algorithms.md 1.4), by `kind`:
- "hvarfner" (default): lengthscale ell ~ LogNormal(sqrt(2) + ln(d)/2, sqrt(3)) (Hvarfner et al.,
  ICML 2024): the dimension-aware location keeps high-d spaces from fitting short lengthscales
  to a handful of points. Noise variance ~ Gamma(1.1, 30) (optuna), whose density stays
  non-zero down to the floor, so exact objectives are fitted as exact.
- "botorch": the same lengthscale prior with BoTorch's noise ~ LogNormal(-4, 1), which holds
  the noise near e^-5 of the (standardised) output variance.
- "optuna": optuna's heuristic -(0.1/lam + 0.1 lam) per dimension and Gamma(1.1, 30) noise.
- "vague-noise" (not a suggester option; hpod.importance): hvarfner's lengthscales and no prior
  on the noise, so the fit finds the noise the results show. A search does well to assume little
  noise (Gamma(1.1, 30) holds it near 0.04 of the output variance, and the rare noisy objective
  costs a few wasted points), but a description of the results does not: on results half noise,
  that prior makes the GP bend through every point and book the noise as effects.
All use an output scale ~ Gamma(2, 1) (mode 1 = the variance of standardised y).

Densities are taken in the natural parameter (ell, scale, noise_var) as BoTorch/gpytorch and
optuna do, then differentiated through the log-parametrisation by the chain rule.
"""

from __future__ import annotations

import math

import numpy as np

PRIORS = ("hvarfner", "botorch", "optuna")  # the gp suggester's `prior` option
KINDS = (*PRIORS, "vague-noise")


def log_prior(theta: np.ndarray, noise_floor: float, kind: str = "hvarfner") -> tuple[float, np.ndarray]:
    """(log p(theta) up to a constant, gradient (d + 2,))."""
    if kind not in KINDS:
        raise ValueError(f"prior must be one of {', '.join(KINDS)}, got {kind!r}")
    d = theta.size - 2
    log_lam, log_scale, raw_noise = theta[:d], theta[d], theta[d + 1]
    scale = math.exp(log_scale)
    noise_extra = math.exp(raw_noise)
    noise = noise_floor + noise_extra
    grad = np.empty_like(theta)

    if kind == "optuna":
        lam = np.exp(log_lam)
        lp = float(-(0.1 / lam + 0.1 * lam).sum())
        grad[:d] = 0.1 / lam - 0.1 * lam
    else:
        mu, sigma2 = math.sqrt(2.0) + 0.5 * math.log(d), 3.0
        log_ell = -0.5 * log_lam
        # log LogNormal(ell) = -log ell - (log ell - mu)^2 / (2 sigma^2)
        lp = float((-log_ell - (log_ell - mu) ** 2 / (2.0 * sigma2)).sum())
        grad[:d] = -0.5 * (-1.0 - (log_ell - mu) / sigma2)

    if kind == "botorch":
        log_noise = math.log(noise)
        lp += -log_noise - 0.5 * (log_noise + 4.0) ** 2
        dlp_dnoise = (-1.0 - (log_noise + 4.0)) / noise
    elif kind == "vague-noise":
        dlp_dnoise = 0.0
    else:
        # Gamma(1.1, 30): log p = 0.1 log noise - 30 noise
        lp += 0.1 * math.log(noise) - 30.0 * noise
        dlp_dnoise = 0.1 / noise - 30.0

    # scale ~ Gamma(2, 1): log p = log s - s
    lp += log_scale - scale
    grad[d] = 1.0 - scale
    grad[d + 1] = dlp_dnoise * noise_extra
    return lp, grad
