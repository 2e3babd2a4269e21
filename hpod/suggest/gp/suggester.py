"""kind = "gp": Gaussian-process Bayesian optimisation over a mixed space (ask/tell).

A scrambled-Sobol design until `n_startup` points are in or running, then each suggestion fits the
GP (hpod.suggest.gp.model), conditions it on the pending points and returns the best point of the
acquisition that is neither observed (failed included) nor pending. The default acquisition is a
portfolio (hpod.suggest.gp.hedge): log EI and UCB each nominate a point and one is chosen.

Randomness: the design is drawn from (seed, 0) and suggestion number i from (seed, 1 + number of
observations + number of pending points), so the same history gives the same point. The state
beyond the history is the warm start of the kernel hyperparameters, the refit cadence and the
hedge's gains: `state()` / `load_state()` (hpod.suggest.base.Resumable). The daemon saves the
state with every trial it creates and loads it after a restart. With one trial at a time the
restarted study then proposes what the uninterrupted one would have; with several, the restart
replays the results in trial order rather than the order they came in, which can move the
numerics by a rounding and the path with them.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hpod.space import Space
from hpod.store.records import Direction
from hpod.suggest._dedupe import first_free, random_free_point
from hpod.suggest._lattice import Lattice, sobol
from hpod.suggest._training import EncodedHistory
from hpod.suggest.base import draw_rng, parse_direction, seed_entropy
from hpod.suggest.gp.acquisition import Acquisition
from hpod.suggest.gp.cost import CostModel, PerCost
from hpod.suggest.gp.hedge import Hedge
from hpod.suggest.gp.model import ACQUISITIONS, BlasThreads, GPModel, default_n_startup
from hpod.suggest.gp.optimize import maximize_acquisitions
from hpod.suggest.gp.pending import PENDING_STRATEGIES
from hpod.suggest.gp.prior import PRIORS
from hpod.suggest.gp.regressor import GPPosterior
from hpod.suggest.gp.state import STATE_FORMAT, field

logger = logging.getLogger(__name__)

# "level": a single-fidelity GP on one level (hpod.suggest._training); "joint": one GP over
# (params, level) on every level (hpod.suggest.gp.fidelity).
FIDELITIES = ("level", "joint")
# "auto" and "on": weigh points by their cost once costs are told (observe_cost); a study's
# policy tells them under "auto" only when its budget is hours (hpod.study_policy). "off": never.
COST_CHOICES = ("auto", "on", "off")


class GPSuggester:
    """GP-BO with a GP-Hedge portfolio of log EI and UCB (or either alone), Matern-5/2 ARD +
    Hamming kernel, MAP hyperparameters.

    Options: acquisition "hedge" | "logei" | "ucb" (UCB's `beta`, alone or in the hedge); pending "believer" | "liar" | "fantasy";
    n_startup (default max(5, min(2d, 20))); prior "hvarfner" | "optuna"; deterministic (noise
    pinned at the 1e-8 floor); max_points (data cap); refit_every (None: automatic); n_candidates and
    n_starts for the acquisition search; blas_threads (None: leave BLAS alone); fidelity "level" |
    "joint" (how values at several resources are modelled, see FIDELITIES; a study with a scheduler
    gets "joint" unless its file says otherwise) and max_resource (the
    resource of a final result, for "joint"; the scheduler's max_resource when the study has one);
    cost "auto" | "on" | "off" (weigh points by their predicted seconds per unit of resource, as
    told by observe_cost: hpod.suggest.gp.cost; "auto" and "on" differ only in when a study's
    policy tells costs, see hpod.study_policy).
    """

    STATE_KIND = "gp"  # what state() calls the suggester that saved it

    def __init__(self, space: Space, seed: int | None = None,
                 direction: str | Direction = "minimize", *, acquisition: str | None = None,
                 beta: float = 2.0, n_startup: int | None = None, pending: str = "believer",
                 n_fantasies: int = 16, prior: str = "hvarfner", deterministic: bool = False,
                 max_points: int = 500, refit_every: int | None = None,
                 n_candidates: int = 1024, n_starts: int = 10, warp: str = "none",
                 blas_threads: int | None = 1, fidelity: str = "level",
                 max_resource: float | None = None, cost: str = "auto") -> None:
        if acquisition is None:
            # The portfolio, unless the study asks for fantasies, which only log EI has (so a
            # study file written before the portfolio was the default still loads).
            acquisition = "logei" if pending == "fantasy" else "hedge"
        _check_choice("acquisition", acquisition, (*ACQUISITIONS, "hedge"))
        _check_choice("pending", pending, PENDING_STRATEGIES)
        _check_choice("prior", prior, PRIORS)
        _check_choice("fidelity", fidelity, FIDELITIES)
        _check_choice("cost", cost, COST_CHOICES)
        _check_choice("warp", warp, ("none", "power"))
        if not isinstance(deterministic, bool):
            # A quoted "false" is truthy: it would pin the noise, the opposite of what it says.
            raise ValueError(f"deterministic must be true or false, got {deterministic!r}")
        if max_resource is not None and (isinstance(max_resource, bool)
                                         or not isinstance(max_resource, (int, float))
                                         or not max_resource > 1):
            if fidelity == "joint" and isinstance(max_resource, (int, float)):
                raise ValueError(
                    'fidelity "joint" counts the resource from 1 (epochs, steps), but '
                    f'max_resource is {max_resource!r}: use fidelity = "level" for a resource in '
                    "fractions")
            raise ValueError(f"max_resource must be a number > 1, got {max_resource!r}")
        if acquisition in ("ucb", "hedge") and pending == "fantasy":
            raise ValueError('pending = "fantasy" needs acquisition = "logei" (UCB, alone or in '
                             'the "hedge" portfolio, has no fantasy form)')
        if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not beta >= 0:
            raise ValueError(f"beta must be a number >= 0, got {beta!r}")
        for name, value, low in (("n_startup", n_startup, 0), ("n_fantasies", n_fantasies, 1),
                                 ("max_points", max_points, 10), ("refit_every", refit_every, 1),
                                 ("n_candidates", n_candidates, 1), ("n_starts", n_starts, 1),
                                 ("blas_threads", blas_threads, 1)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        self.space = space
        self.direction = parse_direction(direction)
        self.acquisition = acquisition
        self._hedge = Hedge() if acquisition == "hedge" else None
        self.beta = float(beta)
        self.pending = pending
        self.n_fantasies = n_fantasies
        self.n_startup = default_n_startup(space.dim) if n_startup is None else n_startup
        self.n_candidates = n_candidates
        self.n_starts = n_starts
        self._threads = BlasThreads(blas_threads)
        self._entropy = seed_entropy(seed)
        self._lattice = Lattice(space)
        self._history = EncodedHistory(space)
        self._model = GPModel(self._lattice.is_cat, self._lattice.n_choices, prior=prior,
                              deterministic=deterministic, max_points=max_points,
                              refit_every=refit_every, warp=warp)
        self._design: np.ndarray | None = None
        self.fidelity = fidelity
        self.max_resource = None if max_resource is None else float(max_resource)
        # The joint model has one more coordinate (the level): its own kernel parameters.
        self._joint_model = GPModel(np.append(self._lattice.is_cat, False),
                                    np.append(self._lattice.n_choices, 0), prior=prior,
                                    deterministic=deterministic, max_points=max_points,
                                    refit_every=refit_every, warp=warp)
        self.cost = cost
        self._cost = CostModel(self._lattice.is_cat, self._lattice.n_choices, prior=prior,
                               max_points=max_points)

    # -- ask/tell --------------------------------------------------------------------------------

    def observe(self, params: Mapping[str, Any], value: float | None,
                resource: float | None = None) -> None:
        self._history.add(params, value, resource)

    def observe_cost(self, params: Mapping[str, Any], seconds_per_unit: float) -> None:
        """What `params` costs: its trial's seconds per unit of resource (hpod.suggest.gp.cost).
        Once d + 1 points have one, each acquisition is weighed by the predicted cost of its
        point (EI per second), unless `cost = "off"`."""
        self._cost.observe(self.space.key(params), self.space.to_unit(params), seconds_per_unit)

    def observe_overhead(self, startup: float, resource: float) -> None:
        """What every trial adds to its rate: `startup` seconds, and the `resource` an average
        trial trains (the cost of a point is startup + rate * resource; by default 0 and 1)."""
        self._cost.observe_overhead(startup, resource)

    def suggest(self, pending: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
        pending = list(pending)
        taken = self._history.free_or_exhausted(pending)
        rng = draw_rng(self._entropy, 1 + len(self._history) + len(pending))
        maximize = self.direction is Direction.MAXIMIZE
        min_points = max(3, self.space.dim + 1)
        X, v = self._history.training(maximize=maximize, min_points=min_points)
        if self._history.n_succeeded_or_pending(pending) < self.n_startup or len(X) < 2:
            return self._design_point(taken, rng)
        Xp = self.space.to_unit_many(pending)
        with self._threads.limit():
            fit = (self._joint_fit(rng, maximize, min_points) if self.fidelity == "joint"
                   else _Fit(self._model, *self._model.posterior(X, v, rng)))
            taken_X = np.vstack([self._history.encoded(), Xp])
            params = self._acquired_params(fit, Xp, rng, taken_X, taken)
        if params is None:
            logger.debug("gp: every ranked candidate is taken; falling back to a random point")
            params = random_free_point(self.space, taken, rng)
        return params

    # -- state across restarts (hpod.suggest.base.Resumable) -------------------------------------

    def state(self) -> dict[str, Any]:
        """What a restarted daemon needs beyond the history to go on as if it had not stopped:
        both kernels' warm starts and refit cadence, and the portfolio's gains."""
        return {"format": STATE_FORMAT, "kind": self.STATE_KIND,
                "options": self._state_options(),
                "model": self._model.state(), "joint_model": self._joint_model.state(),
                "cost_model": self._cost.state(),
                "hedge": None if self._hedge is None else self._hedge.state()}

    def load_state(self, state: Mapping[str, Any]) -> None:
        saved_format, kind = field(state, "format", "state"), field(state, "kind", "state")
        if type(saved_format) is not int or saved_format != STATE_FORMAT or kind != self.STATE_KIND:
            raise ValueError(f"state: not a format-{STATE_FORMAT} {self.STATE_KIND} state "
                             f"(format {saved_format!r}, kind {kind!r})")
        # A state saved under other options (the study file changed while the daemon was
        # down) belongs to another search: its warm start and gains would mislead this one.
        options = self._state_options()
        saved = field(state, "options", "state")
        if isinstance(saved, Mapping) and "cost" not in saved:  # saved before the option
            saved = {**saved, "cost": "auto"}
        if saved != options:
            raise ValueError(f"state: saved with other suggester options ({saved!r}, now "
                             f"{options!r})")
        hedge_state = field(state, "hedge", "state")
        if (hedge_state is None) != (self._hedge is None):
            raise ValueError("state: hedge " + ("missing" if hedge_state is None else "unexpected")
                             + f" for acquisition {self.acquisition!r}")
        # Loaded into copies and swapped in at the end: a corrupt part leaves nothing applied.
        model, joint_model, hedge = copy.copy(self._model), copy.copy(self._joint_model), \
            copy.copy(self._hedge)
        cost_model = copy.copy(self._cost.model)
        model.load_state(field(state, "model", "state"), "model")
        joint_model.load_state(field(state, "joint_model", "state"), "joint_model")
        if "cost_model" in state:  # absent from states saved before costs were modelled
            cost_model.load_state(state["cost_model"], "cost_model")
        if hedge is not None:
            hedge.load_state(hedge_state, self.space.dim)
        self._model, self._joint_model, self._hedge = model, joint_model, hedge
        self._cost.model = cost_model

    def _state_options(self) -> dict[str, Any]:
        """The options that shape the search (not blas_threads): a state is only taken back by
        a suggester built with the same ones."""
        return {"acquisition": self.acquisition, "beta": self.beta, "n_startup": self.n_startup,
                "pending": self.pending, "n_fantasies": self.n_fantasies,
                "prior": self._model.prior, "deterministic": self._model.deterministic,
                "max_points": self._model.max_points, "refit_every": self._model.refit_every,
                "n_candidates": self.n_candidates, "n_starts": self.n_starts,
                "warp": self._model.warp, "fidelity": self.fidelity,
                "max_resource": self.max_resource, "cost": self.cost}

    # -- pieces ----------------------------------------------------------------------------------

    def _acquired_params(self, fit: _Fit, Xp: np.ndarray, rng: np.random.Generator,
                         taken_X: np.ndarray, taken: set) -> dict[str, Any] | None:
        """The best free point of the acquisition, or of the member the hedge picks (each member
        of the portfolio nominates its own best free point; the hedge credits the last round's
        nominees first). None: every ranked point is taken."""
        kinds = (self.acquisition,) if self._hedge is None else self._hedge.members
        if self._hedge is not None:
            self._hedge.update(fit.mean_at)
        acqs = fit.model.acquisitions(fit.post, fit.best, fit.lift(Xp), rng, kinds=kinds,
                                      beta=self.beta, pending=self.pending,
                                      n_fantasies=self.n_fantasies, at_level=fit.level)
        surface = (None if self.cost == "off"
                   else self._cost.surface(rng, min_points=max(3, self.space.dim + 1)))
        if surface is not None:
            acqs = [PerCost(acq, surface) for acq in acqs]
        ranked = self._ranked_points(acqs, rng, fit.best_x, fit.lengthscales, taken_X)
        free = [first_free(self.space, points, taken) for points in ranked]
        if self._hedge is None:
            return free[0]
        nominated = {i: params for i, params in enumerate(free) if params is not None}
        if not nominated:
            return None
        members = list(nominated)
        nominees = self.space.to_unit_many(list(nominated.values()))
        chosen = self._hedge.choose(members, nominees, rng)
        logger.debug("gp hedge: gains %s, proposing %s's point",
                     np.array2string(self._hedge.gains, precision=2), self._hedge.members[chosen])
        return free[chosen]

    def _joint_fit(self, rng: np.random.Generator, maximize: bool, min_points: int) -> _Fit:
        """The joint model fitted on every level, looking at r_acq (pending points are pending
        there too)."""
        X, v, at_acq, level = self._history.joint_training(maximize=maximize,
                                                           min_points=min_points,
                                                           top=self.max_resource)
        post, best, best_x = self._joint_model.posterior(X, v, rng, among=at_acq)
        return _Fit(self._joint_model, post, best, best_x[:-1], level)

    def _ranked_points(self, acqs: Sequence[Acquisition], rng: np.random.Generator,
                       best_x: np.ndarray, lengthscales: np.ndarray,
                       taken_X: np.ndarray) -> list[np.ndarray]:
        """For each acquisition, (r, d) encoded points best first; the caller skips taken ones
        (taken_X (t, d) are the observed and pending points, for subclasses that can filter them
        earlier)."""
        # The starts are shared out: a portfolio's search then costs about what one member's
        # would (the batched search's cost grows with its rows).
        ranked = maximize_acquisitions(acqs, self._lattice, rng, lengthscales=lengthscales,
                                       seeds=best_x[None, :], n_candidates=self.n_candidates,
                                       n_starts=-(-self.n_starts // len(acqs)))
        return [points for points, _ in ranked]

    def _design_point(self, taken: set, rng: np.random.Generator) -> dict[str, Any]:
        if self._design is None:
            size = max(64, 1 << math.ceil(math.log2(max(4 * self.n_startup, 1))))
            U = sobol(self.space.dim, size, draw_rng(self._entropy, 0))
            self._design = self._lattice.from_uniform(U)
        params = first_free(self.space, self._design, taken)
        return params if params is not None else random_free_point(self.space, taken, rng)


@dataclass
class _Fit:
    """A fitted surrogate and where its acquisition looks: `level` is the joint model's pinned
    resource coordinate (None for a single-level model); best_x (d,) is the incumbent in x."""

    model: GPModel
    post: GPPosterior
    best: float
    best_x: np.ndarray
    level: float | None = None

    @property
    def lengthscales(self) -> np.ndarray:
        ls = self.post.params.lengthscales
        return ls if self.level is None else ls[:-1]

    def lift(self, X: np.ndarray) -> np.ndarray:
        """Points over x as the model's inputs."""
        return X if self.level is None else np.column_stack([X, np.full(len(X), self.level)])

    def mean_at(self, X: np.ndarray) -> np.ndarray:
        return self.post.mean_var(self.lift(X))[0]


def _check_choice(name: str, value: Any, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}, got {value!r}")
