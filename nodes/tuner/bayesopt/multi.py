"""``tuner.bayesopt`` with several objectives: one GP per objective, noisy expected
hypervolume improvement (Daulton, Balandat & Bakshy 2021, "Parallel Bayesian optimization
of multiple noisy objectives with expected hypervolume improvement"; its log form,
qLogNEHVI, is Ament et al. 2023).

`BayesOpt` hands construction to `MultiObjectiveBayesOpt` when ``mode`` is a list. Each
ask, after the initial design (the same scrambled Sobol design as one objective):

1. **Models.** One GP per objective (`gp.fit`, the single-objective model) on the
   feasible observations, objective signed so larger is better and standardised,
   hyperparameters warm-started from the previous ask. One change: the constant prior
   mean is each objective's **worst observation** instead of the least-squares constant
   (De Ath, Fieldsend & Everson 2020, "What do you mean? The role of the mean function in
   Bayesian optimisation": with 5 or more parameters the worst observed value was the best
   of eight mean functions on their synthetic problems). Far from the data the model then
   expects the worst seen, not a typical value, so a candidate gains from its posterior
   spread only where the data also point to improvement; with the fitted constant, a
   model that has not yet learned a parameter's effect is most uncertain at the cube's
   corners, and NEHVI sent those parameters there (DTLZ2 with 6 parameters: after 25
   trials, 52% of the model's trials 11–25 had a distance parameter at 0 or 1 and the
   hypervolume at [1.1]³ was below random search's; measured in benchmarks/RESULTS.md,
   "Multi-objective tuning: the worst observation as the prior mean").
2. **Reference point.** The tuner's ``reference_point`` if given, else BoTorch's rule
   (`flowopt.tuning.pareto.infer_reference_point`: the nadir of the observed *front*
   plus 0.1 of the range, per loss) re-inferred every ask, with one change for the
   search: the margin is 0.1 of the larger of the front's range and the range of every
   feasible observation (``spread=``). The nadir is the front's, so the box hugs the
   front (the nadir of every observation, used before, was loose: DTLZ2 spent its
   trials at the ends of the front); the margin is never zero, so a front of one point
   still has a box to improve in (BoTorch's own margin for one point, 0.1·|value|, is
   1e-7 wide when that value is 0: ZDT1 stayed at its first point (0, 1), hypervolume
   110 of 120.7, for all 50 trials, measured). The run's recorded point follows
   BoTorch's rule exactly (`flowopt.tuning.objectives.front_result`).
3. **Noisy EHVI by Monte Carlo.** The baseline is every observed point plus every pending
   one (trials still running). NEHVI does not trust the observed values: per sample s of
   the joint posterior over the baseline, the front is the non-dominated set of the
   *sampled* baseline values, and a candidate's improvement is the exact hypervolume its
   sampled value adds to that front (`flowopt.tuning.hypervolume.hvi_point`). Candidates
   are sampled jointly with the baseline — ``f(x) | f_B`` by the conditional Gaussian —
   with the same normal draws for every candidate (common random numbers, so candidates
   are ranked on the same scenarios). Pending points sampled in the baseline make
   ``parallel: q`` a sequential greedy batch (Daulton et al. §4): each new proposal
   improves on fronts that already contain plausible outcomes of the q - 1 running ones.
4. **Log.** The score is ``log mean_s HVI_s``. Where no sample improves (the whole mean is
   0, as far from the front it is), qLogNEHVI's smoothing still ranks candidates; here the
   tie is broken, below every improving candidate, by how far the candidate's posterior
   mean is from improving — the smallest uniform shift that would take it out of the
   dominated region of the observed front. That is not the smoothing's order (which
   rewards samples near the improving region), but no benchmark ask had only flat
   candidates (measured: at least 0.8% of them improve, trials 11–50, docs/multi_objective.md),
   so the proposal is always an improving candidate and the smoothing's cost is not paid.
5. **Candidates.** A fresh scrambled Sobol set plus Gaussian perturbations of the observed
   Pareto points (a finite space is enumerated instead), snapped to evaluable points;
   the best ``local_starts`` are refined by three rounds of shrinking random local search;
   the best point neither observed nor pending is returned.

Cost: samples × candidates × (hypervolume of a front clipped to a box). The number of
samples is 128 (BoTorch's default for qNEHVI) with two objectives and 64 beyond, where
each clipped hypervolume is a 3-D sweep or WFG.
"""
from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from flowopt.tuning.pareto import (feasible, infer_reference_point, modes_of, observed_values,
                                   pareto_mask, signs)

from .strategy import SobolDesign

# The GPs' constant prior mean: "worst" (each objective's worst observation, step 1) or
# "fitted" (the least-squares constant of the single-objective model). A module constant
# so that the benchmark can compare them on the same runs.
PRIOR_MEAN = "worst"


class MultiObjectiveBayesOpt(SobolDesign):
    """GP Bayesian optimisation of several objectives by noisy expected hypervolume improvement.

    Constructed by `BayesOpt` when ``mode`` is a list; ``with:`` fields are
    `BayesOptConfig`'s (``acquisition`` does not apply: with several objectives it is
    always NEHVI) plus the framework's ``reference_point``.
    """

    multi_objective = True
    _LOCAL_PER_START = 32
    spread = True  # the margin from the observations' range (step 2); False: BoTorch's

    def __init__(self, space, *, mode, seed, budget, config=None,
                 reference_point: Sequence[float] | None = None) -> None:  # type: ignore[no-untyped-def]
        super().__init__(space, mode=mode, seed=seed, budget=budget, config=config)
        self.modes = modes_of(mode)
        self.sign = signs(self.modes)              # loss = sign * value
        self.reference_point = reference_point    # in objective units, as the user wrote it
        self._hyper: list[Any] = [None] * len(self.modes)

    # -- the Strategy contract ---------------------------------------------------------
    def ask(self, pending: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        seen = self._seen(pending)
        done = [(o, v) for o in self.observations
                if (v := observed_values(o, len(self.modes))) is not None]
        if self._designing(len(done), pending):
            return self._design_point(seen)
        from .blas import single_threaded

        with single_threaded():
            return self._model_point(done, pending, seen)

    # -- design ----------------------------------------------------------------------------
    def _unseen_random(self, seen: set) -> dict[str, Any]:
        return self._unseen(self.cube.random(256, self._rng), seen)

    def _unseen(self, points: np.ndarray, seen: set) -> dict[str, Any]:
        for u in points:
            params = self.cube.decode(u)
            if self.cube.key(params) not in seen:
                return params
        return self.cube.decode(self.cube.random(1, self._rng)[0])

    # -- the model -------------------------------------------------------------------------
    def _fit(self, X: np.ndarray, values: np.ndarray) -> list[tuple[Any, float, float]]:
        """One GP per objective on ``-loss`` standardised: (gp, mean, std) each; each GP's
        constant prior mean is its worst observation unless PRIOR_MEAN says "fitted"."""
        from . import gp as gpmod

        models = []
        for j in range(values.shape[1]):
            y = -self.sign[j] * values[:, j]
            mean, std = float(y.mean()), float(y.std()) or 1.0
            noise = None
            if self.config.noise is not None:
                noise = max((self.config.noise / std) ** 2, gpmod.MIN_NOISE)
            ys = (y - mean) / std
            model = gpmod.fit(X, ys, previous=self._hyper[j], noise=noise, rng=self._rng,
                              prior_mean=float(ys.min()) if PRIOR_MEAN == "worst" else None)
            self._hyper[j] = model.hyper
            models.append((model, mean, std))
        return models

    def _reference(self, values: np.ndarray) -> np.ndarray:
        """The reference point as losses (given, or inferred from the observations)."""
        if self.reference_point is not None:
            return self.sign * np.asarray(self.reference_point, dtype=float)
        losses = values * self.sign
        return infer_reference_point(losses, spread=losses if self.spread else None)

    def _samples(self) -> int:
        return 128 if len(self.modes) == 2 else 64

    def _model_point(self, done: list, pending: Sequence[Mapping[str, Any]], seen: set) -> dict:
        X = self.cube.encode_many(o.params for o, _ in done)
        values = np.array([v for _, v in done])
        models = self._fit(X, values)
        ref_loss = self._reference(values)
        Xb = np.vstack([X, self.cube.encode_many(pending)]) if pending else X
        scorer = _NEHVI(models, Xb, ref_loss, self._samples(), self._rng,
                        observed=values * self.sign)
        finite = self.cube.size is not None and self.cube.size <= self.config.candidates
        if finite:
            cands = self._candidates_finite(seen)
            if len(cands) == 0:
                return self._unseen(self.cube.random(256, self._rng), seen)
            points, scores = cands, scorer(cands)
        else:
            front = X[pareto_mask(values * self.sign)]
            local = np.repeat(front, 16, axis=0)
            local = self.cube.snap(local + self._rng.normal(0.0, 0.05, local.shape))
            sobol = self.cube.sobol(self.config.candidates, seed=int(self._rng.integers(2**31)))
            cands = np.vstack([local, sobol])
            scores = scorer(cands)
            top = np.argsort(-scores, kind="stable")[: self.config.local_starts]
            refined, refined_scores = self._local_search(cands[top], scores[top], scorer)
            points = np.vstack([refined, cands])
            scores = np.concatenate([refined_scores, scores])
        for i in np.argsort(-scores, kind="stable"):
            params = self.cube.decode(points[i])
            if self.cube.key(params) not in seen:
                return params
        return self._unseen(self.cube.random(256, self._rng), seen)

    def _local_search(self, starts: np.ndarray, start_scores: np.ndarray,
                      scorer: Any) -> tuple[np.ndarray, np.ndarray]:
        best, best_val = starts.copy(), start_scores.copy()
        n = self._LOCAL_PER_START
        for sigma in (0.1, 0.03, 0.01):
            trial = np.repeat(best, n, axis=0)
            trial = self.cube.snap(trial + self._rng.normal(0.0, sigma, trial.shape))
            vals = scorer(trial).reshape(len(best), n)
            j = np.argmax(vals, axis=1)
            rows = np.arange(len(best))
            better = vals[rows, j] > best_val
            best[better] = trial.reshape(len(best), n, -1)[rows, j][better]
            best_val = np.where(better, vals[rows, j], best_val)
        return best, best_val

    def _candidates_finite(self, seen: set) -> np.ndarray:
        axes = [p.choices if p.kind == "choice" else range(p.lo, p.hi + 1)
                for p in self.cube.params]
        rows = []
        for combo in itertools.product(*axes):
            params = dict(zip(self.cube.names, combo))
            if self.cube.key(params) not in seen:
                rows.append(self.cube.encode(params))
        return np.array(rows).reshape(len(rows), self.cube.dim)


class _NEHVI:
    """log NEHVI of candidate sets, with the posterior samples of the baseline drawn once
    (module docstring, steps 3–4). Works on standardised losses: per objective the loss is
    ``-(y - mean)/std``; the hypervolume scales by a constant, so rankings are unchanged."""

    def __init__(self, models: list, Xb: np.ndarray, ref_loss: np.ndarray, samples: int,
                 rng: np.random.Generator, observed: np.ndarray) -> None:
        import scipy.linalg as sla

        from flowopt.tuning.hypervolume import hvi_batch  # noqa: F401 - compile before timing

        self.models, self.Xb = models, Xb
        m = len(models)
        self.ref = np.array([-(-ref_loss[j] - mu) / sd for j, (_, mu, sd) in enumerate(models)])
        nb = len(Xb)
        self.zb = rng.standard_normal((m, samples, nb))
        self.zc = rng.standard_normal((m, samples))
        self.chol, self.base_mean, self.base = [], [], np.empty((samples, nb, m))
        for j, (gp, _, _) in enumerate(models):
            mean, _ = gp.posterior(Xb)
            cov = gp.cross(Xb, Xb)
            cov[np.diag_indices_from(cov)] += 1e-9 * max(gp.hyper.scale, 1e-12)
            L = _cholesky(cov)
            self.chol.append(L)
            self.base_mean.append(mean)
            self.base[:, :, j] = -(mean[None, :] + self.zb[j] @ L.T)
        self.sla = sla
        # per sample, the front of the sampled baseline losses
        from flowopt.tuning.hypervolume import front_mask

        fronts = [b[front_mask(np.ascontiguousarray(b))] for b in self.base]
        size = max(len(f) for f in fronts)
        self.fronts = np.full((samples, size, m), np.inf)
        self.sizes = np.array([len(f) for f in fronts], dtype=np.int64)
        for s, f in enumerate(fronts):
            self.fronts[s, : len(f)] = f
        # the observed front in the same units, for the tie-break
        std_obs = np.column_stack([-(-observed[:, j] - mu) / sd
                                   for j, (_, mu, sd) in enumerate(models)])
        ok = feasible(std_obs)
        self.observed_front = std_obs[ok][pareto_mask(std_obs[ok])]

    def __call__(self, C: np.ndarray) -> np.ndarray:
        from flowopt.tuning.hypervolume import hvi_batch

        m = len(self.models)
        S = self.zb.shape[1]
        values = np.empty((S, len(C), m))
        means = np.empty((len(C), m))
        for j, (gp, _, _) in enumerate(self.models):
            mean_c, var_c = gp.posterior(C)
            K = gp.cross(self.Xb, C)                                   # (nb, C)
            W = self.sla.solve_triangular(self.chol[j], K, lower=True, check_finite=False)
            rest = np.sqrt(np.maximum(var_c - np.einsum("ij,ij->j", W, W), 0.0))
            f = mean_c[None, :] + self.zb[j] @ W + self.zc[j][:, None] * rest[None, :]
            values[:, :, j] = -f
            means[:, j] = -mean_c
        hvi = hvi_batch(self.fronts, self.sizes, np.ascontiguousarray(values), self.ref)
        mean_hvi = hvi.mean(axis=0)
        score = np.full(len(C), -np.inf)
        pos = mean_hvi > 0
        score[pos] = np.log(mean_hvi[pos])
        if not pos.all():
            # below every improving candidate: minus the shift the mean needs to improve
            score[~pos] = -1e6 - self._gap(means[~pos])
        return score

    def _gap(self, means: np.ndarray) -> np.ndarray:
        """Smallest uniform decrease of each loss vector that leaves the region the
        observed front dominates and enters the reference box."""
        out = np.max(means - self.ref[None, :], axis=1)
        if len(self.observed_front):
            diff = means[:, None, :] - self.observed_front[None, :, :]
            out = np.maximum(out, np.max(np.min(diff, axis=2), axis=1))
        return np.maximum(out, 0.0)


def _cholesky(cov: np.ndarray) -> np.ndarray:
    import scipy.linalg as sla

    jitter = 1e-9 * float(np.mean(np.diag(cov)) or 1.0)
    for _ in range(8):
        try:
            return sla.cholesky(cov + jitter * np.eye(len(cov)), lower=True, check_finite=False)
        except sla.LinAlgError:
            jitter *= 10.0
    return np.diag(np.sqrt(np.maximum(np.diag(cov), 0.0)))


__all__ = ["MultiObjectiveBayesOpt"]
