"""Which parameters mattered: the share of a study's variation each parameter explains.

The question a user asks the morning after, before narrowing the space for the next night. The
answer here is a variance decomposition (Sobol indices) of a Gaussian process fitted to the
study's results, the same model the `gp` suggester uses, so it needs no scikit-learn (Optuna's
fANOVA fits a random forest) and handles log scales, integers and categoricals as the suggester
does. For each parameter:
- `alone`: the first-order index, the share of the variation the parameter explains by itself
  (fANOVA's main effect);
- `with_interactions`: the total index, that share plus every interaction the parameter is in.
Both are the surface's indices times the share of the results' variation the surface predicts
(its leave-one-out R^2); the rest is `unexplained`: noise between runs, or a misfit. The shares
are over the space as the study defines it: a log-scaled parameter is spread evenly in its log,
a categorical evenly over its choices.

Estimated on the GP's posterior mean by quasi-Monte Carlo (Saltelli's first-order and Jansen's
total estimator on scrambled Sobol points; Saltelli et al. 2010, "Variance based sensitivity
analysis of model output"), so the answer is deterministic for a given set of results.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from hpod.errors import HpodError, SpaceError
from hpod.space import Space
from hpod.store.reader import StoreReader
from hpod.store.records import Direction, StudyRecord, TrialRecord, TrialState
from hpod.suggest._lattice import Lattice, sobol
from hpod.suggest.gp.linalg import inverse_from_cholesky
from hpod.suggest.gp.model import BlasThreads, GPModel
from hpod.suggest.gp.regressor import GPPosterior

# 2**12 base points: the indices of a smooth surface settle to within about 0.01 of their limit;
# each costs (d + 2) * 4096 posterior means against at most 500 fitted points.
_BASE_POINTS = 1 << 12
_MAX_POINTS = 500  # the suggester's data cap: an O(n^3) fit stays under a second or two
_CHUNK = 8192  # query rows per kernel matrix: (8192, 500) floats is 32 MB
# Cut finite values beyond q10 - / q90 + this many (q90 - q10). On 10 seeds of the example
# `quick` after 200 TPE trials (docs/benchmarks.md) the error of the shares was 21.5 points with
# the suggester's winsorisation, 8.8 with a cut at 1 spread, 3.0 at 3 and 0.2 with none; a cut
# is kept for the trial that diverged to 1e12 (with _GAP_SPREADS, _clip_outliers).
_OUTLIER_SPREADS = 3.0
_GAP_SPREADS = 2.0  # an isolated value: this far from its neighbour towards the bulk
Surface = Callable[[np.ndarray], np.ndarray]  # encoded points (m, d) -> values (m,)
# Fewer results than this per parameter and the fitted surface is mostly the prior's guess.
ROUGH_BELOW_PER_PARAM = 5


class NotEnoughResults(HpodError, ValueError):
    """Too few usable results to fit a surface; the message says how many there are, how many
    are needed and, for a study, where more are."""


@dataclass(frozen=True)
class ParamImportance:
    name: str
    alone: float  # first-order Sobol index, in [0, 1]
    with_interactions: float  # total Sobol index, in [0, 1]


@dataclass(frozen=True)
class Importance:
    """Shares of the results' variation. The parameters' `alone` shares, `interactions` and
    `unexplained` add up to 1."""

    params: tuple[ParamImportance, ...]  # most important first
    interactions: float  # explained, but by no single parameter alone
    unexplained: float  # what the surface does not predict: noise between runs, or a misfit
    results: int  # how many results it was given (a uniform _MAX_POINTS of more are fitted)
    varies: bool  # False: every result is the same, and no parameter explains anything

    @property
    def rough(self) -> bool:
        return self.results < ROUGH_BELOW_PER_PARAM * len(self.params)

    def as_dict(self) -> dict[str, object]:
        return {"results": self.results, "rough": self.rough, "varies": self.varies,
                "interactions": self.interactions, "unexplained": self.unexplained,
                "params": [{"name": p.name, "alone": p.alone,
                            "with_interactions": p.with_interactions} for p in self.params]}


@dataclass(frozen=True)
class StudyResults:
    """What a study's importance is computed from."""

    space: Space
    points: list[dict[str, object]]
    values: list[float]  # in minimisation form
    kind: str  # which results, in words: "complete trials"
    left_out: int  # results whose params do not fit the study's space as it is now

    @property
    def source(self) -> str:
        """For the table's first line: "its 48 complete trials"."""
        return f"its {len(self.values)} {self.kind}"


def study_results(reader: StoreReader, study: StudyRecord, step: int | None = None,
                  ) -> StudyResults:
    """The complete trials' final values of the study's metric, or with `step` the value every
    trial (also a stopped or running one) reported at that step: under a scheduler few trials
    complete, and a rung level is where all the trials that reached it can be compared."""
    at_step = None if step is None else reader.values_at_step(study.id, study.metric, step)
    return results_of_trials(study, reader.list_trials(study.id), at_step, step)


def results_of_trials(study: StudyRecord, trials: Iterable[TrialRecord],
                      at_step: Mapping[int, float] | None = None,
                      step: int | None = None) -> StudyResults:
    """study_results over trials already read (the TUI holds them): the complete ones' final
    values, or `at_step`'s {trial id: value at `step`}."""
    if study.spec is None:
        raise HpodError(f"study {study.name} has no valid definition: its file was never "
                        f"valid, so hpod knows no search space for it")
    space = Space.from_dict(study.spec["space"])
    sign = 1.0 if study.direction is Direction.MINIMIZE else -1.0  # to minimisation form
    if at_step is None:
        pairs = [(t.params, math.nan if t.value is None else sign * t.value)
                 for t in trials if t.state is TrialState.COMPLETE]
        kind = "complete trials"
    else:
        pairs = [(t.params, sign * at_step[t.id]) for t in trials if t.id in at_step]
        kind = f"trials that reported step {step}"
    points, values = [], []
    for params, value in pairs:
        try:
            space.to_unit(params)
        except (SpaceError, KeyError, TypeError, ValueError):
            continue  # a trial of an earlier version of the space
        points.append(params)
        values.append(value)
    return StudyResults(space, points, values, kind, len(pairs) - len(points))


def study_importance(reader: StoreReader, study: StudyRecord, step: int | None = None,
                     ) -> tuple[Importance, StudyResults]:
    """`hpod importance`: the study's results and their importance, or NotEnoughResults saying
    which step has enough when the complete trials are too few."""
    results = study_results(reader, study, step)
    need = min_results(results.space)
    if len(results.values) < need:
        raise NotEnoughResults(_not_enough(reader, study, results, step, need))
    return importance(results.space, results.points, results.values), results


def _not_enough(reader: StoreReader, study: StudyRecord, results: StudyResults,
                step: int | None, need: int) -> str:
    text = (f"study {study.name} has {len(results.values)} {results.kind}, and "
            f"{results.space.dim} parameters need at least {need} results")
    if results.left_out:
        text += (f" ({results.left_out} more do not fit the space as it is now: the file's "
                 f"space changed since they ran)")
    other = step_to_compare(reader, study, besides=step)
    # What --step would compare there: every trial's value, the running ones' too.
    n = 0 if other is None else len(reader.values_at_step(study.id, study.metric, other))
    if n >= need:
        text += (f". Fix: compare the trials at the step most of them reported: "
                 f"--step {other} ({n} trials reported {study.metric} there)")
    else:
        text += ". Fix: wait for more trials to report"
    return text


def step_to_compare(reader: StoreReader, study: StudyRecord, *, besides: int | None = None,
                    ) -> int | None:
    """Where the results to compare are when too few trials completed: the step most trials
    reported (the furthest of those tied). A rung where only the promoted few remain has the
    least spread to learn from. Counted over the trials no longer running, so that a trial
    just started, below the first rung, does not make step 0 the busiest for a moment (all
    trials while none has settled). None: no step reported."""
    for settled in (True, False):
        counts = reader.steps_reported(study.id, study.metric, settled=settled)
        steps = [s for s, n in counts.items() if n > 0 and s != besides]
        if steps:
            return max(steps, key=lambda s: (counts[s], s))
    return None


def min_results(space: Space) -> int:
    """The fewest results a surface is fitted to: one more than the parameters, and at least 4."""
    return max(4, space.dim + 1)


def importance(space: Space, points: Sequence[Mapping[str, object]], values: Sequence[float],
               *, seed: int = 0, base_points: int = _BASE_POINTS,
               blas_threads: int | None = 1) -> Importance:
    """Each parameter's share of the variation of results (points[i], values[i]).

    The Sobol indices of the fitted surface, scaled by the share of the results' variation the
    surface predicts (its leave-one-out R^2): a GP fits noise too, and on results that are
    mostly noise the indices of its surface alone would give the noise to the parameters.
    `values` are in minimisation form (negate a maximised metric): NaN and +-inf count as the
    worst finite value, and outliers away from the bulk are moved to its edge (_clip_outliers),
    so that a few diverged trials do not become the whole story.
    """
    if len(points) != len(values):
        raise ValueError(f"{len(points)} points but {len(values)} values")
    if space.dim == 0:  # study files refuse such a space; a Space built in Python may not
        raise ValueError("the space searches no parameter: there is nothing to split")
    if len(points) < min_results(space):
        raise NotEnoughResults(f"{len(points)} results for {space.dim} parameters; a surface "
                               f"needs at least {min_results(space)}")
    # Every non-finite value counts as the worst, -inf too: a loss of -inf is a diverged run,
    # not the best one (the GP's targets would take -inf as the best finite value).
    v = np.asarray(values, dtype=float)
    v = np.where(np.isfinite(v), v, np.nan)
    n = len(v)
    lattice = Lattice(space)
    X = space.to_unit_many(points)
    rng = np.random.default_rng(seed)
    finite = v[np.isfinite(v)]
    # NaN and inf count as the worst finite value, so only the finite ones can vary. (A spread
    # beyond the float range overflows to inf, which still says "varies".)
    with np.errstate(over="ignore"):
        flat = finite.size == 0 or np.ptp(finite) == 0
    if flat:
        return _flat(space, n, varies=False)
    if len(v) > _MAX_POINTS:
        # A uniform subset: the model's own cap keeps the best quarter, which suits a search
        # for the optimum but would weigh a variance decomposition towards it.
        keep = np.sort(rng.choice(len(v), size=_MAX_POINTS, replace=False))
        X, v = X[keep], v[keep]
    # Not the suggester's winsorisation (q3 + 1.5 IQR): an optimiser's results crowd its
    # optimum, so their IQR is narrow and that cut flattens the very slopes that say which
    # parameter matters (the example `quick` after 200 TPE trials: lr's share 0.98 read as
    # 0.76). Only outliers beyond the bulk are cut (_clip_outliers).
    # The noise as the results show it (prior.py "vague-noise"), not the suggester's belief in
    # little noise, which books a noisy objective's noise as effects of the parameters.
    model = GPModel(lattice.is_cat, lattice.n_choices, winsorize=False,
                    max_points=_MAX_POINTS, prior="vague-noise")
    with BlasThreads(blas_threads).limit():
        post, _, _ = model.posterior(X, _clip_outliers(v), rng)
        indices = _sobol_indices(post.mean, lattice, rng, base_points)
        explained = _loo_r2(post)
    if indices is None:  # the results differ, but the surface is flat: all noise to it
        return _flat(space, n, varies=True)
    first, total = indices
    ranked = sorted((ParamImportance(p.name, explained * float(f), explained * float(t))
                     for p, f, t in zip(space.params, first, total)),
                    key=lambda p: (-p.with_interactions, -p.alone, p.name))
    interactions = explained * max(0.0, 1.0 - float(np.sum(first)))
    return Importance(tuple(ranked), interactions, 1.0 - explained, n, varies=True)


def _flat(space: Space, results: int, *, varies: bool) -> Importance:
    return Importance(tuple(ParamImportance(p.name, 0.0, 0.0) for p in space.params), 0.0, 1.0,
                      results, varies=varies)


def _loo_r2(post: GPPosterior) -> float:
    """The share of the targets' variance the surface predicts for results it did not see, in
    [0, 1]: 1 - mean(r_i^2) / var(y), with r_i the leave-one-out residuals, in closed form
    r_i = [K^-1 y]_i / [K^-1]_ii (Rasmussen & Williams 2006, eq. 5.12)."""
    y = np.asarray(post.y, dtype=float)
    variance = float(np.var(y))
    if not variance > 0:
        return 0.0
    residuals = post.alpha / np.diag(inverse_from_cholesky(post.L))
    return float(np.clip(1.0 - np.mean(residuals ** 2) / variance, 0.0, 1.0))


def _clip_outliers(v: np.ndarray) -> np.ndarray:
    """v with its outliers moved to the edge of the bulk, on both sides (NaN stays NaN, for the
    GP's targets to count as the worst finite value). With s = q90 - q10:
    - a value beyond q10 - 3 s or q90 + 3 s is cut there;
    - then, from each end inwards through its outer tenth, a value separated from the next by
      more than 2 s is moved onto that next one.
    One trial that diverged to 1e12 among losses near 1 is a value nothing can predict: left
    3 s out, it alone made the surface's leave-one-out R^2, and so every share, fall to nothing
    (f = exp(3a) + b with one such result in 40: a's share read 0-44 % where it is ~100 %; with
    the second rule 57-100 %). The tail an optimiser leaves (a few early, far worse points)
    is not isolated like that, and stays (`quick` after 200 TPE trials: the same 3.0 points of
    error either way, docs/benchmarks.md)."""
    finite = np.sort(v[np.isfinite(v)])
    if finite.size < 4:
        return v
    with np.errstate(over="ignore"):  # values near the float limit: an inf cut cuts nothing
        q10, q90 = np.percentile(finite, [10.0, 90.0])
        spread = q90 - q10
        if not 0 < spread < math.inf:
            return v
        low, high = q10 - _OUTLIER_SPREADS * spread, q90 + _OUTLIER_SPREADS * spread
    finite = np.clip(finite, low, high)
    tail = max(1, finite.size // 10)
    top, bottom = finite.size - 1, 0
    while top > finite.size - 1 - tail and finite[top] - finite[top - 1] > _GAP_SPREADS * spread:
        top -= 1
    while bottom < tail and finite[bottom + 1] - finite[bottom] > _GAP_SPREADS * spread:
        bottom += 1
    return np.where(np.isfinite(v), np.clip(v, finite[bottom], finite[top]), v)


def _sobol_indices(mean: Surface, lattice: Lattice, rng: np.random.Generator,
                   base_points: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(first-order (d,), total (d,)) indices of `mean` over the lattice, clipped to [0, 1];
    None when the surface does not vary.

    Two independent halves A and B of one 2d-dimensional Sobol sample; AB_j is A with column j
    taken from B. With f_A, f_B, f_ABj the surface at those points (Saltelli 2010, Table 2):
    first_j = mean(f_B (f_ABj - f_A)) / V and total_j = mean((f_A - f_ABj)^2) / (2 V).
    """
    d = lattice.dim
    U = sobol(2 * d, base_points, rng)
    A, B = lattice.from_uniform(U[:, :d]), lattice.from_uniform(U[:, d:])
    f_A, f_B = _evaluate(mean, A), _evaluate(mean, B)
    variance = float(np.var(np.concatenate([f_A, f_B])))
    if not variance > 1e-12 * max(1.0, float(np.mean(np.abs(f_A)))):  # rounding, not signal
        return None
    first, total = np.empty(d), np.empty(d)
    for j in range(d):
        AB = A.copy()
        AB[:, j] = B[:, j]
        f_AB = _evaluate(mean, AB)
        first[j] = np.mean(f_B * (f_AB - f_A)) / variance
        total[j] = 0.5 * np.mean((f_A - f_AB) ** 2) / variance
    return np.clip(first, 0.0, 1.0), np.clip(total, 0.0, 1.0)


def _evaluate(mean: Surface, X: np.ndarray) -> np.ndarray:
    return np.concatenate([mean(X[i:i + _CHUNK]) for i in range(0, len(X), _CHUNK)])


def format_importance(study: str, metric: str, imp: Importance, *, source: str,
                      width: int = 24) -> str:
    """The table `hpod importance` prints: a bar per parameter, most important first."""
    lines = [f"study {study}: what {source} say about {metric}"]
    if not imp.varies:
        lines.append("every result is the same: no parameter explains anything")
        return "\n".join(lines)
    name_width = max(9, *(len(p.name) for p in imp.params))
    lines.append(f"{'parameter':<{name_width}}  alone  with interactions")
    for p in imp.params:
        bar = "█" * int(round(p.alone * width))
        bar += "░" * max(0, int(round(p.with_interactions * width)) - len(bar))
        lines.append(f"{p.name:<{name_width}}  {_percent(p.alone):>5}  "
                     f"{_percent(p.with_interactions):>5}  {bar}")
    lines.append(f"in interactions, no parameter alone: {_percent(imp.interactions)}")
    if imp.results > _MAX_POINTS:
        lines.append(f"(the surface is fitted to {_MAX_POINTS} of the {imp.results} results, "
                     f"drawn at random)")
    lines.append(f"not explained (noise between runs, or what the fit missed): "
                 f"{_percent(imp.unexplained)}")
    if imp.unexplained > 0.5:
        lines.append("mostly unexplained: the parameters predict less than half of the "
                     "variation (noise between runs, or too few results for the fit), so rank "
                     "them with care; more results, or repeats of a noisy trial, would tell")
    if imp.rough:
        lines.append(f"rough: {imp.results} results for {len(imp.params)} parameters; the "
                     f"shares firm up from about {ROUGH_BELOW_PER_PARAM * len(imp.params)}")
    return "\n".join(lines)


def _percent(share: float) -> str:
    return f"{share:.0%}" if math.isfinite(share) else "?"
