"""The GP surrogate of a study: targets, data cap, kernel fit cadence, posterior, acquisition.

Notations: n training points X (n, d), v (n,) values in minimisation form, t (n,) GP targets to
maximise; p pending points Xp (p, d).

Cost control (algorithms.md 1.10): the kernel hyperparameters are warm-started from the previous
fit with a loose gtol (optuna) and refitted every max(1, n // 30) calls (Syne Tune
`opt_skip_period`); between refits only the O(n^3 / 3) Cholesky is redone. Beyond `max_points`
the fit uses the best quarter plus a random subset (Syne Tune).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from hpod.suggest.gp.acquisition import UCB, Acquisition, LogEI
from hpod.suggest.gp.fidelity import AtLevel
from hpod.suggest.gp.pending import condition_on_pending
from hpod.suggest.gp.regressor import GPPosterior, KernelParams, fit_kernel_params
from hpod.suggest.gp.state import count, field, finite_array, positive_float
from hpod.suggest.gp.targets import cap_indices, gp_targets

logger = logging.getLogger(__name__)

ACQUISITIONS = ("logei", "ucb")
# Refit the kernel every max(1, n // 30) suggestions: at every one below 60 points, every 3rd at
# 100, every 16th at 500. One new point barely moves the MAP of a hundred (Syne Tune skips refits
# too: `opt_skip_period`); the posterior itself is always rebuilt with all the data.
_REFIT_SPACING = 30


class BlasThreads:
    """Caps BLAS threads while fitting and optimising: many small matrix products oversubscribe
    the cores otherwise, and trials may be sharing them (optuna thread_limiting.py). The
    threadpoolctl controller is built once per suggester: building it costs ~2 ms a call."""

    def __init__(self, n: int | None) -> None:
        self.n = n
        self._controller: Any = None  # a threadpoolctl.ThreadpoolController, once built

    @contextlib.contextmanager
    def limit(self) -> Iterator[None]:
        if self.n is None:
            yield
            return
        if self._controller is None:
            from threadpoolctl import ThreadpoolController

            self._controller = ThreadpoolController()
        with self._controller.limit(limits=self.n, user_api="blas"):
            yield


class GPModel:
    def __init__(self, is_cat: np.ndarray, n_choices: np.ndarray, *, prior: str = "hvarfner",
                 deterministic: bool = False, noise_floor: float | None = None,
                 max_points: int = 500, refit_every: int | None = None,
                 winsorize: bool = True, warp: str = "none") -> None:
        self.is_cat = is_cat
        self.n_choices = n_choices
        self.prior = prior
        self.deterministic = deterministic
        # NOTE: the floor bounds how finely the model can resolve the optimum of an exact
        # objective: a noise of 1e-6 of the output variance blurs differences below ~1e-3 of
        # its spread. On the benchmark (30 seeds) 1e-8 beat optuna's 1e-6 on every function and
        # mode (4-15x lower regret on Branin, Hartmann-6 and the mixed space); 1e-10 went further
        # there but let the model chase Ackley's bumps; BoTorch's 1e-4 was 10-20x worse than
        # 1e-6. A noisy objective is unaffected: the fit raises the noise above the floor.
        self.noise_floor = 1e-8 if noise_floor is None else noise_floor
        self.max_points = max_points
        self.refit_every = refit_every
        self.winsorize = winsorize
        self.warp = warp
        self.params: KernelParams | None = None
        self._fitted_at = 0  # observations at the last fit (before the max_points cap)

    def _should_refit(self, n: int) -> bool:
        if self.params is None or self.params.lam.shape != self.is_cat.shape:
            return True
        every = self.refit_every or max(1, n // _REFIT_SPACING)
        return n - self._fitted_at >= every or n < self._fitted_at

    def state(self) -> dict[str, Any]:
        """The kernel's warm start and where the refit cadence stands, as JSON."""
        p = self.params
        return {"fitted_at": self._fitted_at,
                "params": None if p is None else {"lam": p.lam.tolist(), "scale": p.scale,
                                                  "noise_var": p.noise_var}}

    def load_state(self, state: Mapping[str, Any], where: str = "model") -> None:
        fitted_at = count(field(state, "fitted_at", where), f"{where}.fitted_at")
        saved = field(state, "params", where)
        params = None
        if saved is not None:
            lam = finite_array(field(saved, "lam", where), f"{where}.params.lam",
                               (len(self.is_cat),))
            if np.any(lam <= 0):
                raise ValueError(f"{where}.params.lam: not positive")
            params = KernelParams(lam, positive_float(field(saved, "scale", where),
                                                      f"{where}.params.scale"),
                                  max(self.noise_floor, positive_float(
                                      field(saved, "noise_var", where),
                                      f"{where}.params.noise_var")))
        self.params, self._fitted_at = params, fitted_at

    def posterior(self, X: np.ndarray, v: np.ndarray, rng: np.random.Generator,
                  among: np.ndarray | None = None) -> tuple[GPPosterior, float, np.ndarray]:
        """(posterior, incumbent target, incumbent point (d,)) for the data (X, v); the incumbent
        is the best of the rows `among` (n,) bool marks, when given (the joint model's r_acq)."""
        t = gp_targets(v, self.winsorize, self.warp)
        # The cadence counts every observation: past the cap the fitted rows stay max_points,
        # and counted by them, the kernel would never be refitted again.
        n = len(t)
        idx = cap_indices(t, self.max_points, rng)
        X, t = X[idx], t[idx]
        eligible = None if among is None else among[idx]
        if self._should_refit(n):
            self.params = fit_kernel_params(X, t, self.is_cat, self.n_choices,
                                            noise_floor=self.noise_floor, init=self.params,
                                            prior=self.prior, deterministic=self.deterministic)
            self._fitted_at = n
            logger.debug("GP refit at n=%d: lengthscales %s, scale %.3g, noise %.3g", n,
                         np.array2string(self.params.lengthscales, precision=3),
                         self.params.scale, self.params.noise_var)
        assert self.params is not None
        try:
            post = GPPosterior(X, t, self.params, self.is_cat)
        except np.linalg.LinAlgError:
            # Stale warm-start parameters that the new data makes singular: refit from scratch.
            self.params = fit_kernel_params(X, t, self.is_cat, self.n_choices,
                                            noise_floor=self.noise_floor, prior=self.prior,
                                            deterministic=self.deterministic)
            self._fitted_at = n
            post = GPPosterior(X, t, self.params, self.is_cat)
        if eligible is not None and eligible.any():
            best = int(np.flatnonzero(eligible)[np.argmax(t[eligible])])
        else:
            best = int(np.argmax(t))
        return post, float(t[best]), X[best]

    def acquisitions(self, post: GPPosterior, best: float, Xp: np.ndarray,
                     rng: np.random.Generator, *, kinds: Sequence[str] = ("logei",),
                     beta: float = 2.0, pending: str = "believer", n_fantasies: int = 16,
                     at_level: float | None = None) -> list[Acquisition]:
        """One acquisition function of each kind given the pending points Xp (p, d), over one
        conditioned posterior (so a search over several can share its predictions). With
        `at_level` the model's last coordinate is a resource level (the joint model) pinned
        there, and the acquisitions are functions of the others."""
        post, best_p = condition_on_pending(post, Xp, best, pending, rng, n_fantasies)
        if at_level is not None:
            post = AtLevel(post, at_level)  # type: ignore[assignment]
        out: list[Acquisition] = []
        for kind in kinds:
            if kind == "logei":
                out.append(LogEI(post, best_p))
            elif kind == "ucb":
                out.append(UCB(post, beta))
            else:
                raise ValueError(f"acquisition must be one of {', '.join(ACQUISITIONS)}, "
                                 f"got {kind!r}")
        return out


def default_n_startup(d: int) -> int:
    """Size of the initial Sobol design: max(5, min(2d, 20)) (Ax's rule with the budget unknown)."""
    return max(5, min(2 * d, 20))
