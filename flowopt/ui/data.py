"""What each view of `flowopt ui` shows, as JSON, from the store's query API.

One function per view; each takes an open store (read-only in the app) and returns plain
JSON data, figures included (`figures`), so the HTTP layer only routes and the report
and the tests call the same functions. Nothing here builds SQL: the store's queries
(`flowopt.store.browse` among them) do.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from flowopt.cli.quantization import points as quantization_rows

from . import figures

MAX_COMPARE = 200  # runs one comparison may hold


def _jsonable(value: Any) -> Any:
    """JSON has no NaN or infinity: they become null (the table shows a dash)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


# -- runs ---------------------------------------------------------------------------------
def runs_view(store: Any, *, where: str | None = None, order_by: str | None = None,
              offset: int = 0, limit: int = 50, pipeline: str | None = None,
              status: str | None = None, trials: bool = False) -> dict[str, Any]:
    """A page of runs plus the param and metric columns its runs have."""
    page = store.runs_page(where or None, order_by=order_by or None, offset=offset,
                           limit=limit, pipeline=pipeline or None, status=status or None,
                           trials=trials)
    data = page.to_json()
    for record, row in zip(page.runs, data["runs"]):
        row["seconds"] = record.seconds
    data["columns"] = {
        "params": sorted({k for r in page.runs for k in r.params}),
        "metrics": sorted({k for r in page.runs for k in r.metrics})}
    return _jsonable(data)


# -- one run -------------------------------------------------------------------------------
def graph_layout(nodes: Sequence[Any]) -> dict[str, Any]:
    """Nodes placed in columns by depth (longest path from a source) and the edges
    between them, found through the artifacts one node made and another consumed."""
    producer = {a: n.id for n in nodes for a in n.outputs}
    edges, depth = [], {}
    for node in nodes:  # executions come in the graph's order: producers first
        sources = sorted({producer[a] for a in node.inputs if a in producer and producer[a] != node.id})
        edges.extend({"from": s, "to": node.id} for s in sources)
        depth[node.id] = 1 + max((depth.get(s, 0) for s in sources), default=-1)
    rows: dict[int, int] = {}
    placed = []
    for node in nodes:
        column = depth[node.id]
        row = rows.get(column, 0)
        rows[column] = row + 1
        placed.append({"id": node.id, "kind": node.kind, "status": node.status,
                       "seconds": node.seconds, "column": column, "row": row,
                       "error": node.error,
                       "reused_from": node.reused_from.to_json() if node.reused_from else None})
    return {"nodes": placed, "edges": edges}


def run_view(store: Any, run_id: str) -> dict[str, Any]:
    """Everything the Run view shows: the record, graph, series, artifacts, trials."""
    detail = store.run(run_id)
    data = detail.to_json()
    data["seconds"] = detail.run.seconds
    if detail.run.status == "running":  # its process may be gone: say so, write nothing
        shown = store.runs_page(f"run_id = '{detail.run.run_id}'", trials=True, limit=1).runs
        data["status"] = shown[0].status if shown else data["status"]
    data["graph"] = graph_layout(detail.nodes)
    series = store.series(detail.run.run_id)
    data["figures"] = figures.series_figures(series)
    data["tuners"] = sorted({t.node for t in detail.trials}
                            | {n.id for n in detail.nodes if n.kind.startswith("tuner.")})
    data["errors"] = [{"node": n.id, "error": n.error} for n in detail.nodes if n.error]
    for node in sorted({t.node for t in detail.trials}):  # the trials' learning curves
        curves = [f for f in tuner_view(store, detail.run.run_id, node)["figures"]
                  if f["id"] == "tuner:curves"]
        for figure in curves:
            figure.update(id=f"tuner:{node}:curves", title=f"{node}: {figure['title']}")
        data["figures"] += curves
    data["figures"] += quantization_and_population(store, detail)
    return _jsonable(data)


def quantization_and_population(store: Any, detail: Any) -> list[dict[str, Any]]:
    """Accuracy against size when quantizers fed evaluators; PBT schedules and copies."""
    out: list[dict[str, Any]] = []
    if any(n.kind.startswith("quantizer.") for n in detail.nodes):
        out.extend(f for f in [figures.quantization_figure(quantization_rows(detail.to_json()))] if f)
    if any(n.kind == "tuner.pbt" for n in detail.nodes):
        from flowopt.store.population import read_events, tuner_nodes

        for node in tuner_nodes(store.engine, detail.run.run_id):
            events = read_events(store.engine, detail.run.run_id, node)
            if events:
                out.extend(figures.population_figures(events, node))
    return out


# -- compare -------------------------------------------------------------------------------
def compare_view(store: Any, run_ids: Sequence[str]) -> dict[str, Any]:
    """Params and final metrics side by side, each series' min/max/last per run, and
    the series of every metric the runs share overlaid."""
    if len(run_ids) > MAX_COMPARE:
        from flowopt.errors import StoreError

        raise StoreError(f"compare at most {MAX_COMPARE} runs at once, not {len(run_ids)}")
    comparison = store.compare(list(run_ids))
    data = comparison.to_json()
    ids = [r.run_id for r in comparison.runs]
    all_series = store.series_of_runs(ids)
    stats: dict[str, dict[str, dict[str, float | None]]] = {}
    by_key: dict[str, list[tuple[str, Any]]] = {}
    for run_id in ids:
        for s in all_series[run_id]:
            finite = [v for v in s.values if math.isfinite(v)]
            stats.setdefault(s.name, {})[run_id] = {
                "min": min(finite) if finite else None, "max": max(finite) if finite else None,
                "last": s.values[-1] if s.values else None}
            by_key.setdefault(s.name, []).append((run_id[:8], s))
    data["series"] = stats
    data["figures"] = [figures.overlay_figure(key, runs) for key, runs in sorted(by_key.items())]
    return _jsonable(data)


# -- tuner ---------------------------------------------------------------------------------
def _pick_curve(keys: Sequence[str], attributes: Sequence[Mapping[str, Any]],
                node: str = "") -> str | None:
    named = [a.get("objective_key") for a in attributes if a.get("objective_key") in keys]
    if named:
        return named[0]
    if f"{node}.objective" in keys:  # early stopping logs each trial's objective per rung
        return f"{node}.objective"
    for word in ("val", "accuracy", "loss"):
        for key in keys:
            if word in key.rpartition(".")[2] and not figures.is_per_layer(key):
                return key
    return keys[0] if keys else None


def pareto_numbers(trials: Sequence[Any], modes: Sequence[str]) -> list[int]:
    """Numbers of the succeeded trials on the Pareto front ([] with one objective)."""
    if not modes:
        return []
    done = [(t.record.number, values) for t in trials if t.record.status == "succeeded"
            for values in [figures.objective_values(t)] if values and len(values) == len(modes)]
    return sorted(done[i][0] for i in figures.pareto_front([v for _, v in done], modes))


def objective_names(store: Any, run_id: str, node: str) -> list[str]:
    """The metric ports a tuner node's ``objective`` input names (``score.accuracy``), as
    the run's pipeline spec wrote them; [] where the spec does not say."""
    from flowopt.store.population import run_spec

    spec = run_spec(store.engine, run_id) or {}
    nodes = spec.get("nodes") if isinstance(spec, Mapping) else None
    entry = nodes.get(node) if isinstance(nodes, Mapping) else None
    bound = (entry.get("in") or {}).get("objective") if isinstance(entry, Mapping) else None
    if isinstance(bound, str):
        return [bound]
    return [str(b) for b in bound] if isinstance(bound, (list, tuple)) else []


def tuner_view(store: Any, run_id: str, node: str, curve: str | None = None) -> dict[str, Any]:
    """A tuner node's trials, its figures, and the series its trials logged."""
    from flowopt.errors import StoreError

    detail = store.run(run_id)
    trials = store.tuner_trials(detail.run.run_id, node)
    population = any(n.id == node and n.kind == "tuner.pbt" for n in detail.nodes)
    if not trials and not population:
        tuners = sorted({t.node for t in detail.trials})
        raise StoreError(f"run {detail.run.run_id[:12]} has no trials of node '{node}'",
                         hint="tuner nodes: " + (", ".join(tuners) or "none"))
    config = next((n.config for n in detail.nodes if n.id == node), {}) or {}
    mode = config.get("mode", "max")
    modes: list[str] = []
    if isinstance(mode, (list, tuple)):  # several objectives: one direction each
        modes, mode = [str(m) for m in mode], str(mode[0]) if mode else "max"
    children = {t.record.trial_run_id: t.record.number for t in trials if t.record.trial_run_id}
    series = store.series_of_runs(list(children))
    keys = sorted({s.name for run in series.values() for s in run})
    chosen = curve if curve in keys else _pick_curve(keys, [t.attributes for t in trials], node)
    curves = {children[r]: s for r, runs in series.items() for s in runs if s.name == chosen}
    names = objective_names(store, detail.run.run_id, node) if modes else []
    hypervolume = detail.run.metrics.get(f"{node}.hypervolume")
    from_run = trials[0].record.from_run if trials else None
    data = {"run_id": detail.run.run_id, "pipeline": detail.run.pipeline, "node": node,
            "mode": mode, "trials": [t.to_json() for t in trials], "curve_keys": keys,
            "curve": chosen, "hypervolume": hypervolume,
            "objectives": figures.objective_labels(names, modes, len(modes)) if modes else [],
            "pareto": pareto_numbers(trials, modes),
            "from_run": from_run,
            "figures": figures.tuner_figures(trials, mode, curves, chosen, names, hypervolume,
                                             modes) if trials else []}
    if modes and trials:
        trace = next((s for s in store.series(detail.run.run_id)
                      if s.node == node and s.key == "hypervolume"), None)
        if trace is not None:
            data["figures"].append(figures.hypervolume_figure(trace, config.get("reference_point")))
    if population:
        from flowopt.store.population import read_events

        source = from_run or detail.run.run_id
        events = read_events(store.engine, source, node)
        data["figures"] += figures.population_figures(events, node) if events else []
    return _jsonable(data)


# -- lineage -------------------------------------------------------------------------------
def lineage_view(store: Any, artifact: str) -> dict[str, Any]:
    lineage = store.lineage(artifact, "both")
    data = lineage.to_json()
    data["size"] = lineage.artifact.size
    data["port"] = lineage.artifact.port
    return _jsonable(data)
