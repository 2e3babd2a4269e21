"""Independent box-constrained L-BFGS runs from several starts, vectorised across the starts.

Multi-start acquisition search needs s small independent minimisations whose objective is cheap
per point but expensive per call (one GP prediction = a dozen numpy calls). scipy's L-BFGS-B asks
for one point at a time, so driving s runs costs s times the call overhead; optuna interleaves
them with greenlets (PR #6268, 2-2.5x faster sampling). Threads would do the same without the
dependency, but their hand-offs cost more than the maths here. A single L-BFGS-B over the sum of
the starts (BoTorch's `gen_candidates_scipy`) is cheap but under-converges: its stopping tests
see the sum, so one start far in log-EI's tail ends the search for the others.

So this is a projected L-BFGS written for batches: every run keeps its own curvature pairs, line
search and stopping state, and each call evaluates every live run at its own next trial point.
The runs are not kept in step: a run whose step was accepted starts its next iteration in the
same call in which another still backtracks, so a search costs about the longest run's number
of evaluations, not the sum over iterations of the worst run's backtracks (25 % fewer calls at
100 observations, and the same iterates: no run's path depends on the others').
- Direction: the two-loop recursion restricted to the free variables (a variable at a bound
  whose gradient pushes outward is held), falling back to steepest descent when the
  quasi-Newton direction is not a descent direction.
- Step: the point is projected back into the box; Armijo backtracking on the projected step.
- Stop: projected-gradient max-norm < pgtol, relative decrease < ftol, or maxiter iterations;
  and, when the caller wants only the best point of each group of runs, a run that has taken
  `prune_after` iterations and still trails its group's best value by more than `prune_margin`
  is abandoned where it stands. A batch costs its longest run, and the longest runs are mostly
  such stragglers: on 72 fitted GP states, pruning after 5 iterations 0.5 behind cut the GP
  predictions by a fifth and changed no group's best by more than 5e-4.

Notations: s starts, k variables, m curvature pairs; Z (s, k); S, Y (s, m, k), newest first.
fun_batch(Z, rows) -> (f (b,), g (b, k)) for the b rows (start numbers) still running.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

BatchFunction = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]

_ARMIJO = 1e-4
# Row sums without ndarray.sum's Python-level wrapper (a microsecond a call, hundreds of calls).
_rowdot = np.add.reduce
_MAX_BACKTRACKS = 20


def batched_lbfgsb(fun_batch: BatchFunction, Z0: np.ndarray, bounds: Sequence[tuple[float, float]],
                   *, pgtol: float = 1e-5, ftol: float = 1e-10, maxiter: int = 200,
                   history: int = 6, max_step: float = math.inf, groups: np.ndarray | None = None,
                   prune_after: int | None = None,
                   prune_margin: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """(Z (s, k) minimisers, f (s,) their values) of s independent runs from the rows of Z0.
    `max_step` caps the first trial step of every iteration in max-norm. `groups` (s,) ints
    number each run's group (default: one group); `prune_after` None never prunes."""
    lo = np.array([b[0] for b in bounds], dtype=float)
    hi = np.array([b[1] for b in bounds], dtype=float)
    Z = np.minimum(np.maximum(np.array(Z0, dtype=float), lo), hi)
    s, k = Z.shape
    if not s:
        return Z, np.zeros(0)
    F, G = fun_batch(Z, np.arange(s))
    F, G = np.array(F, dtype=float), np.array(G, dtype=float)
    Z_out, F_out = Z.copy(), F.copy()
    # The state of the live runs only, row i being start number row[i]; compacted when runs end
    # (a few times a search) so that every call works on whole arrays. This loop's cost is its
    # count of numpy calls (a few microseconds each on these small arrays), hence its style.
    row = np.arange(s)
    S = np.zeros((s, history, k))  # curvature pairs, newest first
    Y = np.zeros((s, history, k))
    n_pairs = np.zeros(s, dtype=np.int64)  # how many of them are stored (<= history)
    iters = np.zeros(s, dtype=np.int64)
    D = np.zeros((s, k))  # each run's search direction
    t = np.zeros(s)  # and its current trial step along it
    backtracks = np.zeros(s, dtype=np.int64)
    beginning = np.ones(s, dtype=bool)  # runs about to start an iteration
    ended = np.zeros(s, dtype=bool)
    first_cap = min(1.0, max_step)
    group = np.zeros(s, dtype=np.int64) if groups is None else np.asarray(groups, dtype=np.int64)
    group_best = np.full(int(group.max()) + 1, np.inf)
    # fmin: a NaN start must not hide its group's best from the pruning test.
    np.fmin.at(group_best, group, F)
    while True:
        if beginning.any():
            b = np.flatnonzero(beginning)
            Zb, Gb = Z[b], G[b]
            projected = np.abs(Zb - np.minimum(np.maximum(Zb - Gb, lo), hi)).max(axis=1)
            converged = (projected < pgtol) | (iters[b] >= maxiter)
            if prune_after is not None:
                converged |= (iters[b] >= prune_after) & (F[b] > group_best[group[b]] + prune_margin)
            if converged.any():
                ended[b[converged]] = True
                go = ~converged
                b, Zb, Gb = b[go], Zb[go], Gb[go]
            if len(b):
                free = ~(((Zb <= lo) & (Gb > 0)) | ((Zb >= hi) & (Gb < 0)))
                nb = n_pairs[b]
                Db = _direction(Gb, S[b], Y[b], nb, free)
                D[b] = Db
                # Without curvature pairs the direction is the raw gradient: cap its first
                # step at unit length, as L-BFGS-B does.
                cap = np.where(nb == 0, first_cap, max_step)
                t[b] = np.minimum(1.0, cap / np.maximum(np.abs(Db).max(axis=1), 1e-300))
                backtracks[b] = 0
        if ended.any():
            Z_out[row[ended]], F_out[row[ended]] = Z[ended], F[ended]
            on = ~ended
            row, Z, F, G, S, Y, group = row[on], Z[on], F[on], G[on], S[on], Y[on], group[on]
            n_pairs, iters, D, t, backtracks = n_pairs[on], iters[on], D[on], t[on], backtracks[on]
            if not len(row):
                break
        zt = np.minimum(np.maximum(Z + t[:, None] * D, lo), hi)
        ft, gt = fun_batch(zt, row)
        step = zt - Z
        decrease = _rowdot(G * step, axis=1)
        accept = np.isfinite(ft) & (ft <= F + _ARMIJO * decrease) & (decrease < 0)
        beginning = accept
        if accept.all():
            ended = np.zeros(len(row), dtype=bool)
            a: slice | np.ndarray = slice(None)
        else:
            rejected = ~accept
            t[rejected] *= 0.5
            backtracks[rejected] += 1
            # A run whose line search found no decrease is done, where it stood.
            ended = rejected & (backtracks >= _MAX_BACKTRACKS)
            if not accept.any():
                continue
            a = np.flatnonzero(accept)
            step = step[a]
        moved = np.arange(len(row))[a]
        fa, ga = ft[a], gt[a]
        dg = ga - G[a]
        keep = _rowdot(step * dg, axis=1) > 1e-10 * _rowdot(dg * dg, axis=1)
        if keep.any():
            kept = moved[keep]
            S[kept, 1:] = S[kept, :-1]
            S[kept, 0] = step[keep]
            Y[kept, 1:] = Y[kept, :-1]
            Y[kept, 0] = dg[keep]
            n_pairs[kept] = np.minimum(n_pairs[kept] + 1, history)
        # A run that no longer decreases is done.
        Fa = F[a]
        small = np.abs(Fa - fa) <= ftol * np.maximum(1.0, np.abs(Fa))
        Z[a], F[a], G[a] = zt[a], fa, ga
        iters[a] += 1
        if prune_after is not None:
            np.fmin.at(group_best, group[a], fa)
        if small.any():
            ended[moved[small]] = True
            beginning = accept & ~ended
    return Z_out, F_out


def _direction(G: np.ndarray, S: np.ndarray, Y: np.ndarray, count: np.ndarray,
               free: np.ndarray) -> np.ndarray:
    """(b, k) quasi-Newton directions on the free variables (two-loop recursion, batched), from
    each run's first count pairs of S, Y (b, m, k), newest first. Pairs are masked to the free
    variables; a run with fewer pairs skips the missing ones."""
    b = len(G)
    q = np.where(free, G, 0.0)  # not G * free: an infinite component at a held bound is 0 here
    depth = int(count.max()) if b else 0
    gamma = np.ones(b)
    if depth:
        # Pair-major copies, so that each pair is one contiguous (b, k) block: the loops below
        # then cost a few array operations per pair, which is what this function's time is.
        fm = free[:, None, :]
        S_ = (S[:, :depth] * fm).transpose(1, 0, 2).copy()  # (depth, b, k)
        Y_ = (Y[:, :depth] * fm).transpose(1, 0, 2).copy()
        sy = np.einsum("pbk,pbk->pb", S_, Y_)
        valid = (np.arange(depth)[:, None] < count[None, :]) & (sy > 1e-12)
        rho = np.where(valid, 1.0 / np.where(valid, sy, 1.0), 0.0)  # (depth, b)
        alpha = np.empty((depth, b))
        for i in range(depth):
            alpha[i] = rho[i] * _rowdot(S_[i] * q, axis=1)
            q -= alpha[i, :, None] * Y_[i]
        # Initial inverse Hessian gamma I with gamma = s'y / y'y of the newest pair.
        yy = _rowdot(Y_[0] * Y_[0], axis=1)
        ok = (rho[0] > 0) & (yy > 0)
        gamma = np.where(ok, 1.0 / np.where(ok, rho[0] * yy, 1.0), 1.0)
    r = gamma[:, None] * q
    for i in range(depth - 1, -1, -1):
        r += (alpha[i] - rho[i] * _rowdot(Y_[i] * r, axis=1))[:, None] * S_[i]
    D = -(r * free)
    # Not a descent direction (stale curvature): steepest descent on the free variables.
    bad = _rowdot(D * G, axis=1) >= 0.0
    if bad.any():
        D[bad] = -(G[bad] * free[bad])
    return D
