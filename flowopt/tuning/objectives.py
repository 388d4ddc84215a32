"""Several objectives in a tuner: what the framework checks, measures and reports.

A tuner's ``objective`` input takes one metric port or a list of them; ``mode`` is one
direction or a list of the same length; ``reference_point`` (optional) is a list of the
same length in objective units. Policy:

* **Checked at compile time** (`check_objectives`; one line, exit 2, nothing stored):
  ``objective`` and ``mode`` lists of different lengths; a ``reference_point`` with
  several objectives of the wrong length or with a value that is not a finite number; a
  ``reference_point`` with one objective (it means nothing there).
* **Per trial** (`trial_values`): every objective metric must be produced; a trial whose
  metrics are not all finite is *infeasible* — recorded as failed with its values (so
  the store shows what was measured), told to the strategy with ``values=None``, never
  on the front — and the search goes on, as with one objective.
* **Result** (`front_result`): the Pareto trials among the succeeded ones (in trial
  order), the reference point (given, or inferred from the succeeded trials as
  `pareto.infer_reference_point` does: BoTorch's rule) and the front's exact
  hypervolume. The tuner's single-valued outputs (``params``, ``objective``, every owned
  node's output) come from the Pareto trial that is best in the *first* objective (ties:
  the lowest number), so downstream nodes still receive one model; every Pareto trial's
  own outputs stay reachable as the artifacts of its child run (``trial_run_id`` in each
  ``pareto`` entry). The hypervolume after each succeeded trial, at the same reference
  point, is logged as the tuner's series ``hypervolume`` (step = trial number): the
  search's progress, which `flowopt report` and the UI draw.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from .pareto import (check_reference_point, hypervolume, hypervolume_trace, infer_reference_point,
                     pareto_mask, to_loss)

#: Output ports a multi-objective tuner adds (optional: absent with one objective).
PARETO_PORTS = ("pareto", "hypervolume", "reference_point")


def objective_refs(raw: Any) -> list[str]:
    """The ``objective`` binding(s) as written: one ``NODE.PORT`` string or a list."""
    return list(raw) if isinstance(raw, (list, tuple)) else [raw]


def check_objectives(count: int, mode: Any, reference_point: Any) -> tuple[str, str] | None:
    """(``with:`` key, message) for the first problem with these objectives, or None.
    `mode` as written: one direction, or a list."""
    modes = [mode] if isinstance(mode, str) else list(mode)
    if not isinstance(mode, str) and len(modes) != count:
        return ("mode", f"mode has {len(modes)} direction{'s' * (len(modes) != 1)} but "
                        f"objective has {count} metric port{'s' * (count != 1)} "
                        "(one direction per objective)")
    if count > 1 and len(modes) == 1:
        return ("mode", f"objective has {count} metric ports: mode must be a list of "
                        f"{count} directions (max or min), one per objective")
    if reference_point is not None:
        if count == 1:
            return ("reference_point", "reference_point needs several objectives")
        problem = check_reference_point(reference_point, count)
        if problem is not None:
            return ("reference_point", problem)
    return None


def trial_values(metrics: Mapping[str, float], names: Sequence[str]) -> tuple[tuple[float, ...] | None, str | None]:
    """A trial's objective vector from its run's metrics, and why it is not feasible.

    Returns ``(values, None)`` when every metric is there and finite; ``(values, error)``
    with the non-finite values kept; ``(None, error)`` when a metric is missing."""
    missing = [n for n in names if metrics.get(n) is None]
    if missing:
        return None, f"the objective '{missing[0]}' was not produced"
    values = tuple(float(metrics[n]) for n in names)
    bad = [(n, v) for n, v in zip(names, values) if not math.isfinite(v)]
    if bad:
        return values, f"the objective '{bad[0][0]}' is not finite ({bad[0][1]})"
    return values, None


def front_result(trials: Sequence[Any], modes: Sequence[str],
                 reference_point: Sequence[float] | None) -> dict[str, Any] | None:
    """The front of the succeeded `trials` (objects with number, params, values,
    trial_run_id): ``{"best": trial, "pareto": [...], "hypervolume": float,
    "reference_point": [...]}``, or None when no trial succeeded with finite values."""
    scored = sorted((t for t in trials if getattr(t, "status", "succeeded") == "succeeded"
                     and t.values is not None and len(t.values) == len(modes)
                     and all(math.isfinite(v) for v in t.values)), key=lambda t: t.number)
    if not scored:
        return None
    losses = to_loss([list(t.values) for t in scored], modes)
    mask = pareto_mask(losses)
    front = [t for t, on in zip(scored, mask) if on]
    if reference_point is not None:
        ref_loss = to_loss([list(reference_point)], modes)[0]
    else:
        ref_loss = infer_reference_point(losses)
    ref_values = (ref_loss * to_loss([[1.0] * len(modes)], modes)[0]).tolist()
    best = min(front, key=lambda t: (to_loss([list(t.values)], modes)[0][0], t.number))
    return {
        "best": best,
        "pareto": [{"number": t.number, "params": dict(t.params), "objectives": list(t.values),
                    "trial_run_id": t.trial_run_id} for t in front],
        "hypervolume": hypervolume(losses, ref_loss),
        "reference_point": [float(v) for v in ref_values],
        # (trial number, hypervolume of the succeeded trials up to it) at the same point
        "trace": list(zip((t.number for t in scored), hypervolume_trace(losses, ref_loss))),
    }


__all__ = ["PARETO_PORTS", "check_objectives", "front_result", "objective_refs",
           "trial_values"]
