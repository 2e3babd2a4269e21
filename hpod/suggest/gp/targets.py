"""Observed values -> the GP's targets, and the data cap for large studies.

Notations: n observations; v (n,) values in minimisation form; t (n,) the GP's targets, to be
*maximised*, standardised (mean 0, std 1).
"""

from __future__ import annotations

import numpy as np

# A spread below this fraction of the values' magnitude is float64 rounding (a few hundred ulps),
# not signal: such values are standardised as constant and never warped. Relative, so an
# objective measured in tiny units (1e-12 * loss) is learnt like the loss itself.
_RELATIVE_SPREAD = 1e-13


def gp_targets(v: np.ndarray, winsorize: bool = True, warp: str = "none") -> np.ndarray:
    """t (n,) = -standardise(warp(winsorise(v))).

    Non-finite values are clipped to the finite range first (NaN counts as the worst; optuna
    `warn_and_convert_inf`). Winsorisation clips the bad tail at q3 + 1.5 IQR (Ax's Tukey
    cutoff, algorithms.md 1.2) so a few diverged trials (loss 1e9) do not flatten the model.
    """
    v = np.array(v, dtype=float)
    finite = np.isfinite(v)
    if not finite.any():
        return np.zeros_like(v)
    lo, hi = v[finite].min(), v[finite].max()
    v = np.where(np.isnan(v), hi, np.clip(v, lo, hi))
    scale = max(abs(lo), abs(hi))
    if scale > 1e150:  # near the float limit, q3 - q1 and v.std() overflow; the targets are
        v = v / scale  # the same on any scale (standardised), so compute them on a small one
    if winsorize and len(v) >= 4:
        q1, q3 = np.percentile(v, [25.0, 75.0])
        if q3 > q1:
            v = np.minimum(v, q3 + 1.5 * (q3 - q1))
    if warp == "power" and len(v) >= 4 and v.std() > _spread_floor(v):
        v = _power_transform(v)
    std = v.std()
    return -(v - v.mean()) / max(float(std), _spread_floor(v))


def _spread_floor(v: np.ndarray) -> float:
    """The smallest standard deviation of v that is signal; never 0, so constant v divide."""
    return max(_RELATIVE_SPREAD * float(np.abs(v).max()), float(np.finfo(float).tiny))


def _power_transform(v: np.ndarray) -> np.ndarray:
    """HEBO's output warp: Box-Cox on v / std(v) when every v > 0, else Yeo-Johnson (scipy fits
    the exponent by maximum likelihood); unchanged when the fit fails."""
    import scipy.stats

    x = v / v.std()
    try:
        with np.errstate(all="ignore"):
            out = scipy.stats.boxcox(x)[0] if x.min() > 0 else scipy.stats.yeojohnson(x)[0]
    except (ValueError, FloatingPointError, np.linalg.LinAlgError, RuntimeError):
        # RuntimeError: scipy's BracketError when the likelihood in the exponent is flat.
        return v
    return out if np.all(np.isfinite(out)) and out.std() > 0 else v


def cap_indices(t: np.ndarray, max_points: int, rng: np.random.Generator,
                top_fraction: float = 0.25) -> np.ndarray:
    """Sorted indices of at most max_points observations to fit on: the best top_fraction of the
    cap by target, the rest drawn at random (Syne Tune `max_size_data_for_model` /
    `max_size_top_fraction`). All indices when n <= max_points."""
    n = len(t)
    if n <= max_points:
        return np.arange(n)
    n_top = int(round(top_fraction * max_points))
    order = np.argsort(-t, kind="stable")
    top, rest = order[:n_top], order[n_top:]
    picked = rng.choice(rest, size=max_points - n_top, replace=False)
    return np.sort(np.concatenate([top, picked]))
