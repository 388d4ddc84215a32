"""Figures as data: one description per plot, drawn by ``static/plot.js`` in the browser.

`flowopt ui` and `flowopt report` both call these builders and hand the result to the
same script (the report inlines it), so a run looks the same in both. A figure is a
plain JSON mapping::

    {"id", "title", "type": "line" | "bar" | "scatter" | "parallel",
     "x": {"label", "log"}, "y": {"label", "log"},
     "series": [{"name", "x": [...], "y": [...], "mode": "line" | "step" | "markers",
                 "labels": [...]}],               # labels: hover text per point
     "vlines": [{"x", "label"}],                  # e.g. early-stopping rungs
     "arrows": [{"x0", "y0", "x1", "y1"}],        # e.g. PBT copies
     "axes": [...], "lines": [...]}               # parallel coordinates only

Policy: series whose name starts with ``layer_`` are per-layer numbers (the step is a
layer index, as quantizers log them) and are drawn as bars, never as curves; a metric
named like a loss or a learning rate gets a log axis when every value is positive.
Builders take the store's frozen records (duck-typed), never a connection.
"""
from __future__ import annotations

import math
from typing import Any, Iterable, Mapping, Sequence

Figure = dict[str, Any]
LOG_NAMES = ("loss", "lr", "val_loss", "weight_mse", "output_mse")


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _log(name: str, values: Iterable[float]) -> bool:
    values = [v for v in values if v is not None]
    return bool(values) and any(name.endswith(n) for n in LOG_NAMES) and min(values) > 0 \
        and max(values) / min(values) > 10


def is_per_layer(key: str) -> bool:
    return key.rpartition(".")[2].startswith("layer_")


def series_figures(series: Sequence[Any], prefix: str = "series") -> list[Figure]:
    """One figure per metric series of a run: curves, or bars for per-layer numbers."""
    figures = []
    for s in series:
        name = f"{s.node}.{s.key}"
        values = [_finite(v) for v in s.values]
        note = f" (from run {s.from_run[:12]})" if getattr(s, "from_run", None) else ""
        per_layer = is_per_layer(s.key)
        figures.append({
            "id": f"{prefix}:{name}", "title": name + note, "type": "bar" if per_layer else "line",
            "x": {"label": "layer" if per_layer else "step", "log": False},
            "y": {"label": s.key, "log": not per_layer and _log(s.key, values)},
            "series": [{"name": name, "x": list(s.steps), "y": values,
                        "mode": "bar" if per_layer else "line"}],
            "node": s.node, "from_run": getattr(s, "from_run", None)})
    return figures


def overlay_figure(key: str, runs: Sequence[tuple[str, Any]]) -> Figure:
    """Metric `key` (``NODE.KEY``) of several runs on one plot: ``runs`` is
    ``[(label, Series)]``."""
    values = [v for _, s in runs for v in s.values]
    per_layer = is_per_layer(key)
    return {"id": f"compare:{key}", "title": key, "type": "bar" if per_layer else "line",
            "x": {"label": "layer" if per_layer else "step", "log": False},
            "y": {"label": key.rpartition(".")[2], "log": not per_layer and _log(key, values)},
            "series": [{"name": label, "x": list(s.steps), "y": [_finite(v) for v in s.values],
                        "mode": "bar" if per_layer else "line"} for label, s in runs]}


# -- tuners -----------------------------------------------------------------------------
def objective_values(trial: Any) -> list[float] | None:
    values = getattr(getattr(trial, "record", trial), "objectives", None) \
        or (getattr(trial, "attributes", None) or {}).get("objectives")
    if isinstance(values, (list, tuple)) and values and all(_finite(v) is not None for v in values):
        return [float(v) for v in values]
    return None


def tuner_figures(trials: Sequence[Any], mode: str = "max",
                  curves: Mapping[int, Any] | None = None, curve_key: str | None = None,
                  objective_names: Sequence[str] = (), hypervolume: float | None = None,
                  modes: Sequence[str] = ()) -> list[Figure]:
    """Objective over trials with the best so far, parallel coordinates, objective
    against each param, trial curves against steps (early-stopping rungs as vertical
    lines) and, with several objectives, the Pareto front. `trials` are `TunerTrial`s;
    `curves` maps a trial number to the `Series` of `curve_key` in its child run."""
    records = [getattr(t, "record", t) for t in trials]
    better = max if mode == "max" else min
    figures: list[Figure] = []
    done = [(r.number, _finite(r.objective), r) for r in records]
    finite = [(n, v, r) for n, v, r in done if v is not None]
    best, running = [], None
    for _, value, _ in finite:
        running = value if running is None else better(running, value)
        best.append(running)
    other = [(r.number, r.status) for r in records if r.status != "succeeded"]
    by_status: dict[str, list[tuple[int, float]]] = {}
    for number, value, record in finite:
        by_status.setdefault(record.status, []).append((number, value))
    series = [{"name": f"trial ({status})" if status != "succeeded" else "trial",
               "x": [n for n, _ in pts], "y": [v for _, v in pts], "mode": "markers",
               "labels": [f"trial {n}" for n, _ in pts]} for status, pts in by_status.items()]
    series.append({"name": f"best so far ({mode})", "x": [n for n, _, _ in finite],
                   "y": best, "mode": "step"})
    figures.append({"id": "tuner:objective", "title": "objective over trials", "type": "scatter",
                    "x": {"label": "trial", "log": False}, "y": {"label": "objective", "log": False},
                    "series": series,
                    "vlines": [{"x": n, "label": status} for n, status in other
                               if status in ("failed",)]})
    names = sorted({k for r in records for k, v in r.params.items()})
    if names and finite:
        axes = []
        for name in names:
            values = [r.params.get(name) for _, _, r in finite]
            numeric = all(_finite(v) is not None for v in values)
            categories = sorted({str(v) for v in values}) if not numeric else None
            positive = numeric and all(v > 0 for v in values)
            axes.append({"name": name, "categories": categories,
                         "log": bool(positive and max(values) / min(values) > 20)})
        axes.append({"name": "objective", "categories": None, "log": False})
        lines = [{"name": f"trial {n}", "values": [
            (str(r.params.get(a["name"])) if a["categories"] else r.params.get(a["name"]))
            for a in axes[:-1]] + [v], "color": v} for n, v, r in finite]
        figures.append({"id": "tuner:parallel", "title": "parallel coordinates",
                        "type": "parallel", "axes": axes, "lines": lines, "mode": mode})
        for axis in axes[:-1]:
            name = axis["name"]
            if axis["categories"]:
                xs = [axis["categories"].index(str(r.params.get(name))) for _, _, r in finite]
            else:
                xs = [r.params.get(name) for _, _, r in finite]
            figures.append({"id": f"tuner:param:{name}", "title": f"objective against {name}",
                            "type": "scatter", "x": {"label": name, "log": axis["log"],
                                                     "categories": axis["categories"]},
                            "y": {"label": "objective", "log": False},
                            "series": [{"name": "trial", "x": xs, "y": [v for _, v, _ in finite],
                                        "mode": "markers",
                                        "labels": [f"trial {n}" for n, _, _ in finite]}]})
    if curves:
        # A pruned trial stops at a rung: the steps it had used mark the rungs.
        rungs = sorted({int(steps) for t in trials
                        for steps in [getattr(getattr(t, "record", t), "steps", 0)
                                      or (getattr(t, "attributes", None) or {}).get("steps")]
                        if getattr(t, "record", t).status == "pruned"
                        and _finite(steps) is not None})
        status = {r.number: r.status for r in records}
        figures.append({"id": "tuner:curves", "title": f"{curve_key} of each trial",
                        "type": "line", "x": {"label": "step", "log": False},
                        "y": {"label": curve_key or "", "log": _log(curve_key or "", [
                            v for s in curves.values() for v in s.values])},
                        "series": [{"name": f"trial {n} ({status.get(n, '?')})",
                                    "x": list(s.steps), "y": [_finite(v) for v in s.values],
                                    "mode": "line"} for n, s in sorted(curves.items())],
                        "vlines": [{"x": r, "label": "rung"} for r in rungs]})
    multi = [(r.number, values) for t, r in zip(trials, records)
             for values in [objective_values(t)] if values and len(values) >= 2]
    if multi:
        figures.append(pareto_figure(multi, objective_names, modes or ("max",) * 2, hypervolume))
        if len(multi[0][1]) >= 3:
            figures.append(objectives_figure(multi, objective_names, modes))
    return figures


def objective_labels(names: Sequence[str], modes: Sequence[str], count: int) -> list[str]:
    """``NODE.PORT (max)`` per objective: its metric port and direction (``objective i``
    where the name is unknown)."""
    names = list(names)[:count]
    names += [f"objective {i}" for i in range(len(names), count)]
    modes = list(modes)[:count]
    modes += ["max"] * (count - len(modes))
    return [f"{n} ({m})" for n, m in zip(names, modes)]


def objectives_figure(trials: Sequence[tuple[int, Sequence[float]]], names: Sequence[str],
                      modes: Sequence[str]) -> Figure:
    """Three or more objectives: one parallel-coordinates line per trial, the Pareto trials
    marked (a 2-D front would hide every objective past the second)."""
    count = len(trials[0][1])
    labels = objective_labels(names, modes, count)
    on = set(pareto_front([v for _, v in trials], list(modes)[:count] or ["max"] * count))
    axes = [{"name": label, "categories": None, "log": False} for label in labels]
    lines = [{"name": f"trial {n}" + (" (Pareto)" if i in on else ""), "values": list(v[:count]),
              "color": 1.0 if i in on else 0.0} for i, (n, v) in enumerate(trials)]
    return {"id": "tuner:objectives", "title": "objectives (Pareto trials highlighted)",
            "type": "parallel", "axes": axes, "lines": lines, "mode": "max"}


def hypervolume_figure(series: Any, reference_point: Sequence[float] | None) -> Figure:
    """The hypervolume of the trials so far against the trial number (the tuner's series
    ``hypervolume``, at the result's reference point)."""
    point = ("" if reference_point is None
             else " · reference point [" + ", ".join(f"{v:.6g}" for v in reference_point) + "]")
    return {"id": "tuner:hypervolume", "title": "hypervolume over trials" + point,
            "type": "line", "x": {"label": "trial", "log": False},
            "y": {"label": "hypervolume", "log": False},
            "series": [{"name": "hypervolume", "x": list(series.steps),
                        "y": [_finite(v) for v in series.values], "mode": "step"}]}


def pareto_front(points: Sequence[Sequence[float]], modes: Sequence[str]) -> list[int]:
    """Indices of the points no other point dominates (every objective as good, one better)."""
    signs = [1.0 if m == "max" else -1.0 for m in modes]
    scaled = [[s * v for s, v in zip(signs, p)] for p in points]
    front = []
    for i, p in enumerate(scaled):
        if not any(all(a >= b for a, b in zip(q, p)) and any(a > b for a, b in zip(q, p))
                   for j, q in enumerate(scaled) if j != i):
            front.append(i)
    return front


def pareto_figure(trials: Sequence[tuple[int, Sequence[float]]], names: Sequence[str],
                  modes: Sequence[str], hypervolume: float | None) -> Figure:
    """The first two objectives of every trial, the non-dominated ones joined as the front."""
    points = [values[:2] for _, values in trials]
    modes = list(modes)[:2] + ["max"] * (2 - len(list(modes)[:2]))
    front = sorted(pareto_front(points, modes), key=lambda i: points[i][0])
    labels = objective_labels(names, modes, 2)
    title = "Pareto front" + (f" · hypervolume {hypervolume:.6g}" if hypervolume is not None else "")
    return {"id": "tuner:pareto", "title": title, "type": "scatter",
            "x": {"label": labels[0], "log": False},
            "y": {"label": labels[1], "log": False},
            "series": [{"name": "trial", "x": [p[0] for p in points], "y": [p[1] for p in points],
                        "mode": "markers", "labels": [f"trial {n}" for n, _ in trials]},
                       {"name": "Pareto front", "x": [points[i][0] for i in front],
                        "y": [points[i][1] for i in front], "mode": "line",
                        "labels": [f"trial {trials[i][0]}" for i in front]}],
            "hypervolume": hypervolume}


# -- quantization and PBT -----------------------------------------------------------------
def quantization_figure(rows: Sequence[Mapping[str, Any]]) -> Figure | None:
    """Accuracy against size ratio, one point per quantizer (and the float model)."""
    rows = [r for r in rows if _finite(r.get("size_ratio")) is not None]
    if not rows:
        return None
    return {"id": "quantization", "title": "accuracy against size", "type": "scatter",
            "x": {"label": "size ratio (of float32)", "log": False},
            "y": {"label": "accuracy", "log": False},
            "series": [{"name": r["quantizer"], "x": [r["size_ratio"]], "y": [r["accuracy"]],
                        "mode": "markers", "labels": [f"{r['quantizer']} ({r['kind']})"]}
                       for r in rows]}


def population_figures(events: Sequence[Any], node: str) -> list[Figure]:
    """Each PBT member's hyperparameters and score over steps, and the copy tree."""
    from flowopt.store.population import schedule_rows

    members = sorted({e.member for e in events})
    names: dict[str, None] = {}
    for e in events:
        for key, value in (e.new_params or {}).items():
            if _finite(value) is not None:
                names.setdefault(key, None)
    schedules = {m: schedule_rows(events, m) for m in members}
    figures = []
    for name in names:
        values = [r.params.get(name) for rows in schedules.values() for r in rows]
        figures.append({"id": f"pbt:{node}:{name}", "title": f"{node}: {name} schedule",
                        "type": "line", "x": {"label": "step", "log": False},
                        "y": {"label": name, "log": _log("lr" if "lr" in name else name,
                                                         [_finite(v) for v in values])},
                        "series": [{"name": f"member {m}", "x": [r.step for r in rows],
                                    "y": [_finite(r.params.get(name)) for r in rows],
                                    "mode": "step"} for m, rows in schedules.items()]})
    figures.append({"id": f"pbt:{node}:score", "title": f"{node}: score", "type": "line",
                    "x": {"label": "step", "log": False}, "y": {"label": "score", "log": False},
                    "series": [{"name": f"member {m}",
                                "x": [r.step for r in rows if _finite(r.score) is not None
                                      and r.event != "explore"],
                                "y": [r.score for r in rows if _finite(r.score) is not None
                                      and r.event != "explore"], "mode": "line"}
                               for m, rows in schedules.items()]})
    arrows = [{"x0": e.step, "y0": e.from_member, "x1": e.step, "y1": e.member}
              for e in events if e.event == "explore" and e.from_member is not None]
    figures.append({"id": f"pbt:{node}:copies", "title": f"{node}: copy tree", "type": "scatter",
                    "x": {"label": "step", "log": False}, "y": {"label": "member", "log": False},
                    "series": [{"name": f"member {m}", "x": [r.step for r in rows],
                                "y": [m] * len(rows), "mode": "markers",
                                "labels": [r.event for r in rows]}
                               for m, rows in schedules.items()],
                    "arrows": arrows})
    return figures
