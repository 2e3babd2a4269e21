"""A Parzen (kernel density) estimator over the encoded cube of a mixed space, for TPE.

A mixture of K = n + 1 components: one per observation plus a broad prior component (Bergstra et
al. 2011; the design of optuna's `_ParzenEstimator`). A component is a product over coordinates:
- numeric coordinate: a normal truncated to [0, 1]; on a discrete coordinate (int, stepped float)
  of at most _CELL_LIMIT values the mass of the grid value's cell [midpoint to the left, midpoint
  to the right], which is what snapping a continuous draw to the nearest grid value gives; a
  longer grid keeps the density: on cells that narrow the mass is the density times the cell's
  width, which is the same for l and g and cancels in TPE's ratio;
- categorical coordinate: a smoothed indicator of the observed choice, (1[c] + a) / (1 + K a)
  with a = prior_weight / K, the prior component being uniform.

Bandwidths are adaptive per observation and coordinate: the larger gap to its neighbours along
that coordinate (optuna's univariate rule), clipped to [1 / min(100, n + 2), 1] ("magic clip",
Bergstra et al.) so a tight cluster cannot collapse to a spike.

Notations: n observations X (n, d); K = n + 1 components; m query points Xq (m, d).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import log_ndtr, logsumexp, ndtr, ndtri

from hpod.suggest._lattice import Lattice

_PRIOR_SIGMA = 1.0
# Discrete coordinates with more values are modelled as continuous (a density, not the mass of a
# cell), as the GP's optimiser relaxes them (hpod.suggest.gp.optimize._RELAX_COUNT): their cells
# are too many to tabulate and too narrow for a difference of normal CDFs to resolve.
_CELL_LIMIT = 1024


def _log_mass(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """log(Phi(hi) - Phi(lo)) for lo < hi, accurate in both tails (reflect when lo > 0)."""
    flip = lo > 0
    a = np.where(flip, -hi, lo)
    b = np.where(flip, -lo, hi)
    lb = log_ndtr(b)
    la = log_ndtr(a)
    with np.errstate(divide="ignore"):  # an empty cell far in the tail is log 0 = -inf
        return lb + np.log1p(-np.exp(np.minimum(la - lb, 0.0)))


class ParzenEstimator:
    def __init__(self, X: np.ndarray, weights: np.ndarray, lattice: Lattice,
                 prior_weight: float = 1.0) -> None:
        """X (n, d) encoded observations; weights (n,) > 0 (normalised here with the prior's)."""
        n, d = X.shape
        self.lattice = lattice
        self.num = ~lattice.is_cat  # (d,)
        K = n + 1
        w = np.append(np.asarray(weights, dtype=float), prior_weight)
        self.log_w = np.log(w / w.sum())  # (K,)
        self.mu = np.vstack([X, np.full((1, d), 0.5)])  # (K, d)
        self.sigma = np.vstack([_bandwidths(X, self.num), np.full((1, d), _PRIOR_SIGMA)])  # (K, d)
        # Categorical: (K, c_j) probability tables per categorical coordinate j.
        self.cat_probs: dict[int, np.ndarray] = {}
        for j in np.flatnonzero(lattice.is_cat):
            c = int(lattice.n_choices[j])
            p = np.full((K, c), prior_weight / K)
            p[np.arange(n), X[:, j].astype(np.int64)] += 1.0
            self.cat_probs[int(j)] = p / p.sum(axis=1, keepdims=True)
        self.edges = _cell_edges(lattice, self.num)

    def log_pdf(self, Xq: np.ndarray) -> np.ndarray:
        """(m,) log density (mass on discrete coordinates) of the mixture at Xq (m, d)."""
        m, d = Xq.shape
        logp = np.zeros((m, len(self.log_w)))  # (m, K)
        for j in range(d):
            if not self.num[j]:
                idx = Xq[:, j].astype(np.int64)
                logp += np.log(self.cat_probs[j][:, idx].T)
                continue
            mu, s = self.mu[None, :, j], self.sigma[None, :, j]  # (1, K)
            log_z = _log_mass((0.0 - mu) / s, (1.0 - mu) / s)  # (1, K)
            if j in self.edges:
                e = self.edges[j]
                k = self.lattice.index_of(j, Xq[:, j])
                lo, hi = e[k][:, None], e[k + 1][:, None]  # (m, 1)
                logp += _log_mass((lo - mu) / s, (hi - mu) / s) - log_z
            else:
                z = (Xq[:, j, None] - mu) / s
                logp += -0.5 * z * z - 0.5 * math.log(2 * math.pi) - np.log(s) - log_z
        return logsumexp(logp + self.log_w[None, :], axis=1)

    def sample(self, rng: np.random.Generator, m: int) -> np.ndarray:
        """(m, d) draws from the mixture, on the lattice."""
        d = self.mu.shape[1]
        comp = rng.choice(len(self.log_w), size=m, p=np.exp(self.log_w))  # (m,)
        out = np.empty((m, d))
        for j in range(d):
            if not self.num[j]:
                probs = self.cat_probs[j][comp]  # (m, c)
                u = rng.random((m, 1))
                out[:, j] = np.minimum((u > np.cumsum(probs, axis=1)).sum(axis=1), probs.shape[1] - 1)
                continue
            mu, s = self.mu[comp, j], self.sigma[comp, j]
            # Inverse-CDF draw of the truncated normal; clipped against rounding at the ends.
            lo, hi = ndtr((0.0 - mu) / s), ndtr((1.0 - mu) / s)
            u = lo + rng.random(m) * (hi - lo)
            out[:, j] = np.clip(mu + s * ndtri(np.clip(u, 1e-300, 1 - 1e-16)), 0.0, 1.0)
        return self.lattice.snap(out)


def _cell_edges(lattice: Lattice, num: np.ndarray) -> dict[int, np.ndarray]:
    """Cell edges (count + 1,) of each discrete numeric coordinate with at most _CELL_LIMIT
    values, for the mass of a grid value."""
    edges: dict[int, np.ndarray] = {}
    for j in np.flatnonzero(num):
        count = lattice.count(int(j))
        if count is not None and count <= _CELL_LIMIT:
            coords = lattice.coords(int(j), np.arange(count))
            edges[int(j)] = np.concatenate([[0.0], 0.5 * (coords[1:] + coords[:-1]), [1.0]])
    return edges


def _bandwidths(X: np.ndarray, num: np.ndarray) -> np.ndarray:
    """(n, d) per-observation bandwidths: the larger gap to the neighbours along each coordinate,
    clipped to [1 / min(100, n + 2), 1] (n + 1 kernels with the prior's)."""
    n, d = X.shape
    sigma = np.ones((n, d))
    if n == 0:
        return sigma
    low = 1.0 / min(100.0, n + 2.0)
    for j in np.flatnonzero(num):
        order = np.argsort(X[:, j], kind="stable")
        xs = np.concatenate([[0.0], X[order, j], [1.0]])
        gaps = np.maximum(xs[1:-1] - xs[:-2], xs[2:] - xs[1:-1])  # (n,)
        if n >= 2:
            # The outermost points look only inwards: the gap to the end of the range would give
            # an edge point a huge kernel that spills over the whole side (optuna's
            # consider_endpoints = False).
            gaps[0], gaps[-1] = xs[2] - xs[1], xs[-2] - xs[-3]
        sigma[order, j] = np.clip(gaps, low, 1.0)
    return sigma
