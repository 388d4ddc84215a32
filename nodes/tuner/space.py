"""The unit-cube view of a search space, shared by model-based tuners.

A `SearchSpace` maps params (native values: floats, ints, choices) to points of
``[0, 1]^dim`` and back, so that a surrogate model sees one scale per dimension:

* a float range takes one dimension, linear or (``log: true``) in ``log`` of the value;
* an integer range takes one dimension over ``[lo - 0.5, hi + 0.5]`` (in the same
  transform), so that every integer owns a cell of equal width on that scale and
  rounding in the *original* scale after the inverse transform picks the cell's
  integer; its *canonical* point is the integer's own transformed position;
* a categorical domain of k choices takes k dimensions, one-hot; a point decodes to the
  choice with the largest coordinate.

`snap` moves any cube point to the canonical point of the params it decodes to. A
model-based tuner snaps every candidate before scoring it, so the model only ever sees
points that can be evaluated, and two candidates that decode to the same params score
the same (the transform of Garrido-Merchán & Hernández-Lobato 2020, "Dealing with
categorical and integer-valued variables in Bayesian optimization with Gaussian
processes"). `key` gives params an identity for duplicate checks; floats are compared
at 12 significant digits, so a continuous point counts as repeated only when it is
repeated to that precision.

The initial design is a scrambled Sobol sequence (`scipy.stats.qmc.Sobol`) with one
coordinate per *param* (not per one-hot dimension), so categoricals are spread as evenly
as floats. numpy is imported at module level; scipy only inside `sobol`.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from flowopt.spec import Domain


@dataclass(frozen=True)
class _Param:
    """One param's slice of the cube: ``kind`` is "float", "int" or "choice"."""

    name: str
    kind: str
    start: int          # first encoded dimension
    width: int          # 1 for ranges, k for k choices
    log: bool = False
    low: float = 0.0    # transformed bounds of the encoded interval (ranges only)
    high: float = 1.0
    lo: int = 0         # integer range: smallest and largest value
    hi: int = 0
    choices: tuple[Any, ...] = ()
    bounds: tuple[float, float] = (0.0, 1.0)  # float range: the domain's own low and high


def _index_of(choices: tuple[Any, ...], value: Any) -> int:
    """Index of ``value`` in ``choices``; type-exact first, so ``True`` does not match ``1``."""
    for i, choice in enumerate(choices):
        if type(choice) is type(value) and choice == value:
            return i
    for i, choice in enumerate(choices):
        if choice == value:
            return i
    raise ValueError(f"{value!r} is not one of the choices {list(choices)}")


class SearchSpace:
    """Encode params into the unit cube and decode cube points back into params."""

    def __init__(self, domains: Mapping[str, Domain]) -> None:
        if not domains:
            raise ValueError("the search space is empty")
        params: list[_Param] = []
        start = 0
        for name, dom in domains.items():
            if dom.choices is not None:
                params.append(_Param(name, "choice", start, len(dom.choices),
                                     choices=tuple(dom.choices)))
                start += len(dom.choices)
                continue
            assert dom.low is not None and dom.high is not None
            t = math.log if dom.log else float
            if dom.integer:
                lo, hi = math.ceil(dom.low), math.floor(dom.high)
                if lo > hi:
                    raise ValueError(f"{name}: no integer between {dom.low} and {dom.high}")
                params.append(_Param(name, "int", start, 1, dom.log, t(lo - 0.5), t(hi + 0.5),
                                     lo, hi))
            else:
                params.append(_Param(name, "float", start, 1, dom.log, t(dom.low), t(dom.high),
                                     bounds=(float(dom.low), float(dom.high))))
            start += 1
        self.params = tuple(params)
        self.names = tuple(p.name for p in params)
        self.dim = start
        #: encoded dimensions that vary continuously (local refinement moves only these)
        self.continuous = np.array([p.start for p in params if p.kind == "float"], dtype=np.int64)

    @property
    def size(self) -> int | None:
        """Number of distinct params in the space, or None when a float range makes it infinite."""
        n = 1
        for p in self.params:
            if p.kind == "float":
                return None
            n *= p.width if p.kind == "choice" else p.hi - p.lo + 1
        return n

    # -- params <-> cube ------------------------------------------------------------------
    def encode(self, params: Mapping[str, Any]) -> np.ndarray:
        """The canonical cube point of ``params`` (every searched name must be present)."""
        u = np.zeros(self.dim)
        for p in self.params:
            value = params[p.name]
            if p.kind == "choice":
                u[p.start + _index_of(p.choices, value)] = 1.0
            else:
                t = math.log(value) if p.log else float(value)
                u[p.start] = (t - p.low) / (p.high - p.low)
        return u

    def encode_many(self, params: Iterable[Mapping[str, Any]]) -> np.ndarray:
        rows = [self.encode(x) for x in params]
        return np.array(rows).reshape(len(rows), self.dim)

    def decode(self, u: np.ndarray) -> dict[str, Any]:
        """The params a cube point stands for (coordinates outside [0, 1] are clipped)."""
        out: dict[str, Any] = {}
        for p in self.params:
            if p.kind == "choice":
                out[p.name] = p.choices[int(np.argmax(u[p.start:p.start + p.width]))]
                continue
            t = p.low + min(max(float(u[p.start]), 0.0), 1.0) * (p.high - p.low)
            value = math.exp(t) if p.log else t
            if p.kind == "int":
                out[p.name] = min(max(int(math.floor(value + 0.5)), p.lo), p.hi)
            else:
                out[p.name] = min(max(value, p.bounds[0]), p.bounds[1])
        return out

    def snap(self, points: np.ndarray) -> np.ndarray:
        """Each row moved to the canonical point of the params it decodes to (vectorised)."""
        u = np.clip(np.array(points, dtype=float, ndmin=2), 0.0, 1.0)
        for p in self.params:
            if p.kind == "float":
                continue
            if p.kind == "choice":
                block = u[:, p.start:p.start + p.width]
                hot = np.argmax(block, axis=1)
                block[:] = 0.0
                block[np.arange(len(u)), hot] = 1.0
                continue
            t = p.low + u[:, p.start] * (p.high - p.low)
            value = np.clip(np.floor((np.exp(t) if p.log else t) + 0.5), p.lo, p.hi)
            back = np.log(value) if p.log else value
            u[:, p.start] = (back - p.low) / (p.high - p.low)
        return u

    def key(self, params: Mapping[str, Any]) -> tuple:
        """A hashable identity of ``params`` for duplicate checks (floats to 12 digits)."""
        out = []
        for p in self.params:
            value = params[p.name]
            if p.kind == "choice":
                out.append(_index_of(p.choices, value))
            elif p.kind == "int":
                out.append(int(value))
            else:
                out.append(float(f"{float(value):.12g}"))
        return tuple(out)

    def from_unit(self, v: np.ndarray) -> np.ndarray:
        """Map points with one coordinate per *param* (e.g. Sobol points) to snapped cube points."""
        v = np.array(v, dtype=float, ndmin=2)
        u = np.zeros((len(v), self.dim))
        for j, p in enumerate(self.params):
            if p.kind == "choice":
                hot = np.minimum((v[:, j] * p.width).astype(np.int64), p.width - 1)
                u[np.arange(len(v)), p.start + hot] = 1.0
            else:
                u[:, p.start] = v[:, j]
        return self.snap(u)

    def sobol(self, n: int, seed: int, skip: int = 0) -> np.ndarray:
        """Points ``skip .. skip + n - 1`` of a scrambled Sobol sequence, snapped into the cube.

        The sequence depends only on ``seed``, so asking for more points later continues
        the same design. Drawn in powers of two, as Sobol's balance properties require.
        """
        from scipy.stats import qmc

        total = skip + n
        engine = qmc.Sobol(d=len(self.params), scramble=True, seed=seed)
        v = engine.random_base2(max(0, math.ceil(math.log2(max(total, 1)))))
        return self.from_unit(v[skip:total])

    def random(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` uniformly random snapped cube points (one coordinate per param, as `sobol`)."""
        return self.from_unit(rng.random((n, len(self.params))))
