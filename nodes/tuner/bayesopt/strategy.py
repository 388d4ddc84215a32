"""`BayesOpt`: the tutorial's Bayesian-optimisation loop as a `Strategy` (ask / tell).

Each ask, after the initial design:

1. fit the GP (`gp.fit`) to the successful observations — objective signed so that larger
   is better, standardised — warm-starting the hyperparameters from the previous ask;
2. condition it on the params of still-running trials with their posterior mean as the
   fantasised value (the *Kriging believer* of Ginsbourger et al. 2010, one of the
   tutorial's §5 options for parallel evaluations): their variance collapses, so the q
   workers of ``parallel: q`` get q different proposals without refitting;
3. score a fresh scrambled Sobol set of candidates, plus perturbations of the best
   observations, with the acquisition (a finite space of at most ``candidates`` points is
   enumerated instead); all candidates are snapped to evaluable points (`SearchSpace.snap`);
4. refine the best ``local_starts`` candidates: EI by L-BFGS-B on log EI over the continuous
   dimensions (in lengthscale units, as Optuna preconditions), noisy EI and KG by shrinking
   random local search; then integer / categorical neighbours are tried one param at a time;
5. return the best point whose params were neither observed nor pending — never a duplicate.

The initial design is the first ``initial_design`` points of a scrambled Sobol sequence
seeded by the tuner's seed (points already observed or pending are skipped). Unless set,
its size scales with the budget (`default_initial_design`): a third of the trials, at
least 2 (the fewest a GP can be fitted to) and at most 10 (Optuna GPSampler's
``n_startup_trials``), so an 8-trial quickstart spends 2 trials on Sobol points and 6 on
the model instead of all 8 on Sobol points. Observations
told before the first ask (resume, ``warm_start``) count towards it, so a warm-started run
goes straight to the model. Failed trials are not modelled but are never proposed again.

numpy and pydantic only at import; scipy and numba load on the first model-based ask.
"""
from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pydantic
from pydantic import Field

from flowopt.tuning import Strategy, register_tuner

from ..space import SearchSpace

# How the local refinements' starts are chosen: "split" (half the best distinct Sobol
# candidates, half the best perturbations of the best observations), "gated" (as split,
# but all from the Sobol set when its best beats every perturbation) or "roulette" (see
# `BayesOpt._roulette_starts`). A module constant so benchmarks/bayesopt.py --patch can
# compare them on the same runs.
START_SELECTION = "split"
# The initial design: "sobol" (the first points of a scrambled Sobol sequence) or
# "uniform" (independent uniform draws, as Optuna's RandomSampler startup trials).
INITIAL_DESIGN = "sobol"
# How many of the best observations are perturbed into every ask's candidates (32 each).
LOCAL_CANDIDATES = 5
# How the EI refinements run: "each" (one L-BFGS-B per start, as Optuna) or "batched" (one
# L-BFGS-B over all starts together, their log EIs summed: the gradient is separable and one
# vectorised evaluation serves every start, as BoTorch's `gen_candidates_scipy`; a start
# keeps its point unless refining raised its own log EI). "batched" takes a third of the
# refinement time but was worse on Levy-4 after 100 evaluations on 30 seeds
# (benchmarks/RESULTS.md), so it is not the default.
REFINE = "each"


class BayesOptConfig(pydantic.BaseModel):
    """``with:`` fields of ``tuner.bayesopt`` (beside the framework's mode, trials, parallel...).

    * ``acquisition`` (ei): ``ei`` expected improvement (tutorial eq. 8), ``nei`` the
      tutorial's noisy EI (§5), ``kg`` knowledge gradient (§4.2).
    * ``initial_design`` (null): Sobol points before the model is used; null scales it with
      ``trials`` as ``max(2, min(10, trials // 3))`` (`default_initial_design`).
    * ``candidates`` (2048): quasi-random points scored per ask; Optuna GPSampler's
      ``n_preliminary_samples``.
    * ``local_starts`` (10): candidates refined locally per ask; Optuna's ``n_local_search``.
    * ``noise`` (null): the observation noise standard deviation in objective units, if
      known; null fits it by marginal likelihood (Gamma(1.1, 30) prior, see `gp`).
    """

    model_config = pydantic.ConfigDict(extra="forbid")
    acquisition: Literal["ei", "nei", "kg"] = "ei"
    initial_design: int | None = Field(None, ge=1)
    candidates: int = Field(2048, ge=16, le=1_000_000)
    local_starts: int = Field(10, ge=1, le=1000)
    noise: float | None = Field(None, ge=0)


def default_initial_design(trials: int) -> int:
    """Sobol points before the model: a third of the budget, at least 2, at most 10.

    Why these numbers: the GP needs 2 points to be fitted at all; 10 is Optuna GPSampler's
    ``n_startup_trials`` and what the benchmarks (100-trial budgets) were tuned with, so
    budgets of 30 and more behave as before; in between, a third keeps two thirds of a
    small budget for model-based trials. Ax spends ``max(5, min(2 * dims, trials // 5))``;
    its floor of 5 would leave an 8-trial run 3 model-based trials, this rule 6.
    """
    return max(2, min(10, trials // 3))


class SobolDesign(Strategy):
    """What the one- and the several-objective GP strategies share around their models:
    the initial Sobol design (`default_initial_design` unless set), never proposing a
    point observed or running, and stopping once a finite space is used up. A subclass
    supplies `_unseen_random` (a point off the design when the design is used up)."""

    def __init__(self, space, *, mode, seed, budget, config=None) -> None:  # type: ignore[no-untyped-def]
        super().__init__(space, mode=mode, seed=seed, budget=budget,
                         config=config if config is not None else BayesOptConfig())
        self.cube = SearchSpace(self.space)
        self._rng = np.random.default_rng(seed)
        self._design_next = 0
        self.initial_design = (self.config.initial_design if self.config.initial_design
                               is not None else default_initial_design(budget))

    def _seen(self, pending: Sequence[Mapping[str, Any]]) -> set:
        """Keys of the params observed or running: never proposed again."""
        return ({self.cube.key(o.params) for o in self.observations}
                | {self.cube.key(p) for p in pending})

    def _designing(self, observed: int, pending: Sequence[Mapping[str, Any]]) -> bool:
        """True while asks still come from the design (a GP needs 2 observations)."""
        return observed + len(pending) < self.initial_design or observed < 2

    def exhausted(self, pending: Sequence[Mapping[str, Any]] = ()) -> bool:
        """True once every point of a finite space was observed or is running."""
        size = self.cube.size
        return size is not None and len(self._seen(pending)) >= size

    def _design_point(self, seen: set) -> dict[str, Any]:
        if INITIAL_DESIGN == "uniform":
            return self._unseen_random(seen)
        for _ in range(64):
            for u in self.cube.sobol(16, seed=self.seed, skip=self._design_next):
                self._design_next += 1
                params = self.cube.decode(u)
                if self.cube.key(params) not in seen:
                    return params
        return self._unseen_random(seen)

    def _unseen_random(self, seen: set) -> dict[str, Any]:
        raise NotImplementedError


class BayesOpt(SobolDesign):
    """GP Bayesian optimisation (Frazier 2018) with EI, noisy EI or knowledge gradient.

    Ports: ``objective`` (in, a metric port); ``params``, ``objective`` and the best
    trial's outputs (out). ``with:``: the framework's mode, trials, parallel, max_failures,
    warm_start (docs/tuners.md) and `BayesOptConfig`'s acquisition, initial_design,
    candidates, local_starts, noise (defaults and their sources there; docs/bayesopt.md).
    Seeded by the node's seed.
    """

    Config = BayesOptConfig
    config: BayesOptConfig

    _LOCAL_PER_START = 32   # random-search perturbations per start and round (nei, kg)
    multi_objective = True  # several objectives: constructed as `multi.MultiObjectiveBayesOpt`

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        mode = kwargs.get("mode")
        if cls is BayesOpt and mode is not None and not isinstance(mode, str):
            from .multi import MultiObjectiveBayesOpt

            return MultiObjectiveBayesOpt(*args, **kwargs)
        return super().__new__(cls)
    _KG_DOMAIN = 32         # high-mean candidates added to KG's discrete domain

    def __init__(self, space, *, mode, seed, budget, config=None) -> None:
        super().__init__(space, mode=mode, seed=seed, budget=budget, config=config)
        self._hyper = None                    # last fitted hyperparameters (warm start)
        self._model: tuple[int, Any, np.ndarray] | None = None   # (n used, GP, y standardised)

    @classmethod
    def budget_warnings(cls, config: BayesOptConfig, trials: int) -> list[str]:
        """What is wrong with spending `trials` on this configuration (shown by
        ``flowopt validate`` and at the start of ``flowopt run``); [] if nothing."""
        initial = (config.initial_design if config.initial_design is not None
                   else default_initial_design(trials))
        if trials > max(initial, 2):
            return []
        why = (f"initial_design: {initial}" if config.initial_design is not None
               else "a GP needs 2 observations")
        return [f"trials: {trials} leaves no model-based trial ({why}): every trial is a "
                f"Sobol point, as with tuner.random; raise trials above {max(initial, 2)}"
                + (" or lower initial_design" if config.initial_design is not None else "")]

    # -- the Strategy contract ---------------------------------------------------------
    def ask(self, pending: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        seen = self._seen(pending)
        done = [o for o in self.observations if o.objective is not None]
        if self._designing(len(done), pending):
            return self._design_point(seen)
        from .blas import single_threaded

        with single_threaded():
            return self._model_point(done, pending, seen)

    def recommend(self) -> dict[str, Any] | None:
        """The evaluated params with the highest posterior mean (for noisy objectives the
        tutorial's final choice; with no noise, the best observation)."""
        done = [o for o in self.observations if o.objective is not None]
        if not done:
            return None
        if len(done) < 2:
            return dict(done[0].params)
        from .blas import single_threaded

        with single_threaded():
            gp, _ = self._fit(done)
            mean, _ = gp.posterior(gp.X)
        return dict(done[int(np.argmax(mean))].params)

    # -- initial design ------------------------------------------------------------------
    def _unseen_random(self, seen: set) -> dict[str, Any]:
        small = self.cube.size is not None and self.cube.size <= self.config.candidates
        for u in self._candidates_finite(seen) if small else self.cube.random(256, self._rng):
            params = self.cube.decode(u)
            if self.cube.key(params) not in seen:
                return params
        return self.cube.decode(self.cube.random(1, self._rng)[0])   # every point seen: repeat

    # -- the model ------------------------------------------------------------------------
    def _fit(self, done: list) -> tuple[Any, np.ndarray]:
        if self._model is not None and self._model[0] == len(done):
            return self._model[1], self._model[2]
        from . import gp as gpmod

        X = self.cube.encode_many(o.params for o in done)
        sign = 1.0 if self.mode == "max" else -1.0
        y = sign * np.array([o.objective for o in done], dtype=float)
        std = float(y.std()) or 1.0
        ys = (y - y.mean()) / std
        noise = None
        if self.config.noise is not None:
            noise = max((self.config.noise / std) ** 2, gpmod.MIN_NOISE)
        model = gpmod.fit(X, ys, previous=self._hyper, noise=noise, rng=self._rng)
        self._hyper = model.hyper
        self._model = (len(done), model, ys)
        return model, ys

    def _model_point(self, done: list, pending: Sequence[Mapping[str, Any]], seen: set) -> dict:
        gp, ys = self._fit(done)
        best = float(ys.max())
        if pending:
            Xp = self.cube.encode_many(pending)
            fantasy, _ = gp.posterior(Xp)
            gp = gp.condition(Xp, fantasy)
            best = max(best, float(fantasy.max()))
        score = self._scorer(gp, best)
        finite = self.cube.size is not None and self.cube.size <= self.config.candidates
        if finite:
            cands = self._candidates_finite(seen)
            if len(cands) == 0:
                return self._unseen_random(seen)
            points, values = cands, score(cands)
        else:
            cands, n_local = self._candidates_continuous(gp, ys)
            values = score(cands)
            # Half the starts from the quasi-random set, half from around the best points:
            # ranked together, the local perturbations would fill every slot and a distant
            # basin would never be refined.
            k = self.config.local_starts
            if START_SELECTION == "roulette":
                starts = self._roulette_starts(gp, ys, cands[n_local:], values[n_local:], k)
            else:
                # "gated": the best points' neighbourhood gets starts only where it scores
                # higher than the best quasi-random candidate
                gate = (START_SELECTION == "gated" and n_local > 0
                        and values[:n_local].max() <= values[n_local:].max())
                n_near = 0 if gate else k // 2
                far = self._top_distinct(cands[n_local:], values[n_local:], k - n_near)
                near = self._top_distinct(cands[:n_local], values[:n_local], n_near)
                starts = cands[[n_local + i for i in far] + near]
            refined = self._refine(gp, best, starts, score)
            points = np.vstack([refined, cands])
            values = np.concatenate([score(refined), values])
        for i in np.argsort(-values, kind="stable"):
            params = self.cube.decode(points[i])
            if self.cube.key(params) not in seen:
                return params
        return self._unseen_random(seen)

    def _scorer(self, gp, best: float):
        from . import acquisition as acq

        kind = self.config.acquisition
        if kind == "ei":
            return lambda C: gp.log_ei(C, best)[2]
        if kind == "nei":
            return lambda C: acq.noisy_ei(gp, C, gp.X)

        def kg(C: np.ndarray) -> np.ndarray:
            mean, _ = gp.posterior(C)
            top = C[np.argsort(-mean)[: self._KG_DOMAIN]]
            return acq.knowledge_gradient(gp, C, np.vstack([gp.X, top]))
        return kg

    # -- candidates and refinement --------------------------------------------------------
    def _candidates_continuous(self, gp, ys: np.ndarray) -> tuple[np.ndarray, int]:
        """Perturbations of the best observations, then a fresh Sobol set; and how many are local."""
        sobol = self.cube.sobol(self.config.candidates, seed=int(self._rng.integers(2**31)))
        top = gp.X[np.argsort(-ys)[:LOCAL_CANDIDATES]]   # rows past len(ys) are pending
        if len(top) == 0:
            return sobol, 0
        local = np.repeat(top, 32, axis=0)
        local = np.vstack([top, self.cube.snap(local + self._rng.normal(0.0, 0.05, local.shape))])
        return np.vstack([local, sobol]), len(local)

    def _candidates_finite(self, seen: set) -> np.ndarray:
        values = []
        for p in self.cube.params:
            values.append(p.choices if p.kind == "choice" else range(p.lo, p.hi + 1))
        rows = []
        for combo in itertools.product(*values):
            params = dict(zip(self.cube.names, combo))
            if self.cube.key(params) not in seen:
                rows.append(self.cube.encode(params))
        return np.array(rows).reshape(len(rows), self.cube.dim)

    def _roulette_starts(self, gp, ys: np.ndarray, sobol: np.ndarray, values: np.ndarray,
                         k: int) -> np.ndarray:
        """The incumbent, the best quasi-random candidate, and k - 2 more drawn with
        probability ∝ exp(log EI - max) (Boltzmann / roulette selection, as BoTorch's
        ``initialize_q_batch`` and Optuna's ``optimize_acqf_mixed`` choose restarts)."""
        best = int(np.argmax(values))
        probs = np.exp(values - values[best])
        probs[best] = 0.0
        total = probs.sum()
        extra = min(k - 2, int(np.count_nonzero(probs > 0)))
        chosen = [best]
        if extra > 0 and total > 0:
            chosen += list(self._rng.choice(len(sobol), size=extra, replace=False,
                                            p=probs / total))
        incumbent = gp.X[int(np.argmax(ys))][None, :]
        return np.vstack([incumbent, sobol[chosen]])

    @staticmethod
    def _top_distinct(points: np.ndarray, values: np.ndarray, k: int) -> list[int]:
        chosen: list[int] = []
        for i in np.argsort(-values, kind="stable"):
            if all(np.max(np.abs(points[i] - points[j])) > 1e-9 for j in chosen):
                chosen.append(int(i))
                if len(chosen) == k:
                    break
        return chosen

    def _refine(self, gp, best: float, starts: np.ndarray, score) -> np.ndarray:
        if self.config.acquisition == "ei":
            out = self._lbfgs_ei(gp, best, starts)
        else:
            out = self._local_search(starts, score)
        return self._discrete_moves(out, score)

    def _lbfgs_ei(self, gp, best: float, starts: np.ndarray) -> np.ndarray:
        from scipy.optimize import minimize

        from .acquisition import log_ei_grad

        cont = self.cube.continuous
        if cont.size == 0:
            return starts
        ls = 1.0 / np.sqrt(gp.hyper.inv_ls2[cont])
        if REFINE == "batched":
            return self._lbfgs_ei_batched(gp, best, starts, cont, ls)
        out = starts.copy()
        for row in out:
            def f(z: np.ndarray, row=row) -> tuple[float, np.ndarray]:
                x = row.copy()
                x[cont] = z * ls
                v, g = log_ei_grad(gp, x[None, :], best)
                return -float(v[0]), -g[0, cont] * ls
            res = minimize(f, row[cont] / ls, jac=True, method="L-BFGS-B",
                           bounds=[(0.0, 1.0 / s) for s in ls], options={"maxiter": 100})
            if np.all(np.isfinite(res.x)):
                row[cont] = np.clip(res.x * ls, 0.0, 1.0)
        return out

    @staticmethod
    def _lbfgs_ei_batched(gp, best: float, starts: np.ndarray, cont: np.ndarray,
                          ls: np.ndarray) -> np.ndarray:
        from scipy.optimize import minimize

        from .acquisition import log_ei_grad

        k, c = len(starts), len(cont)
        x = starts.copy()

        def f(z: np.ndarray) -> tuple[float, np.ndarray]:
            x[:, cont] = z.reshape(k, c) * ls
            v, g = log_ei_grad(gp, x, best)
            return -float(v.sum()), -(g[:, cont] * ls).ravel()
        z0 = (starts[:, cont] / ls).ravel()
        res = minimize(f, z0, jac=True, method="L-BFGS-B",
                       bounds=[(0.0, 1.0 / s) for s in ls] * k, options={"maxiter": 200})
        out = starts.copy()
        if np.all(np.isfinite(res.x)):
            out[:, cont] = np.clip(res.x.reshape(k, c) * ls, 0.0, 1.0)
            before, _ = log_ei_grad(gp, starts, best)
            after, _ = log_ei_grad(gp, out, best)
            worse = ~(after >= before)
            out[worse] = starts[worse]
        return out

    def _local_search(self, starts: np.ndarray, score) -> np.ndarray:
        best = starts.copy()
        best_val = score(best)
        n = self._LOCAL_PER_START
        for sigma in (0.1, 0.03, 0.01):
            trial = np.repeat(best, n, axis=0) + self._rng.normal(0.0, sigma, (len(best) * n, best.shape[1]))
            trial = self.cube.snap(trial)
            vals = score(trial).reshape(len(best), n)
            j = np.argmax(vals, axis=1)
            better = vals[np.arange(len(best)), j] > best_val
            best[better] = trial.reshape(len(best), n, -1)[np.arange(len(best)), j][better]
            best_val = np.where(better, vals[np.arange(len(best)), j], best_val)
        return best

    def _discrete_moves(self, points: np.ndarray, score) -> np.ndarray:
        """Coordinate search over integer (±1) and categorical (every choice) params."""
        discrete = [p for p in self.cube.params if p.kind != "float"]
        if not discrete:
            return points
        points = points.copy()
        current = score(points)
        for _ in range(3):
            moved = False
            for p in discrete:
                moves = list(np.eye(p.width)) if p.kind == "choice" else [1, -1]
                for mv in moves:
                    trial = points.copy()
                    if p.kind == "choice":
                        trial[:, p.start:p.start + p.width] = mv
                    else:
                        trial = self._int_step(trial, p, mv)
                    trial = self.cube.snap(trial)
                    vals = score(trial)
                    better = vals > current
                    if better.any():
                        points[better], current[better], moved = trial[better], vals[better], True
            if not moved:
                break
        return points

    def _int_step(self, points: np.ndarray, p, step: int) -> np.ndarray:
        """Move an integer param by ``step`` values in the original scale (log ranges too)."""
        t = p.low + points[:, p.start] * (p.high - p.low)
        value = np.floor((np.exp(t) if p.log else t) + 0.5) + step
        value = np.clip(value, p.lo, p.hi)
        points[:, p.start] = ((np.log(value) if p.log else value) - p.low) / (p.high - p.low)
        return points


register_tuner("tuner.bayesopt", BayesOpt)
