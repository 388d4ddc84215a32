"""Reading the store: runs (filtered, ordered), one run in full, metrics, comparisons.

A mixin of `Store`; every method returns the frozen records of `records.py`, never ORM
rows, and imports neither torch nor numba. Ids accept any unique prefix; an unknown id
suggests close matches (difflib) and an ambiguous prefix lists its candidates.
"""
from __future__ import annotations

import difflib
import json
from collections import defaultdict
from datetime import datetime
from typing import Any, Mapping, Sequence

from sqlalchemy import Text, select, type_coerce

from flowopt.errors import StoreError

from .filters import Compiler, _naive_utc, order_clause, parse_order, parse_time
from .records import (ArtifactRecord, Comparison, MetricPoint, NodeRecord, RunDetail, RunRecord,
                      Runs, TrialRecord)
from .schema import Artifact, Edge, Execution, Metric, Param, Run, Trial, Unreadable

IN_CHUNK = 500  # SQLite's bound-parameter limit is the smallest we support
# What a RunRecord needs; not `spec` (JSON that can be large and that listings never show).
RECORD_COLUMNS = (Run.id, Run.pipeline, Run.status, Run.seed, Run.started_at, Run.ended_at,
                  Run.error, Run.source, Run.parent_run_id)
_JSON_CACHE_LIMIT = 4096


def _param_value(text: str | None, number: float | None, cache: dict[str, Any]) -> Any:
    """A param's value from its stored JSON text: numbers without the JSON parser (a
    1,000-run listing decodes thousands of them), other values memoised per query."""
    if text is None:
        return None
    if number is not None:
        try:
            return int(text) if text.lstrip("-").isdigit() else float(text)
        except ValueError:
            pass  # not the number value_num says: decode it as JSON below
    value = cache.get(text, cache)
    if value is cache:
        try:
            value = json.loads(text)
        except ValueError:
            return Unreadable()
        if len(cache) < _JSON_CACHE_LIMIT and not isinstance(value, (dict, list)):
            cache[text] = value
    return value


def resolve_prefix(conn: Any, column: Any, prefix: str, what: str, location: str) -> str:
    """The one value of `column` starting with `prefix` (a clear error otherwise)."""
    prefix = prefix.strip()
    if not prefix:
        raise StoreError(f"empty {what} id")
    ids = conn.execute(select(column).where(column.startswith(prefix, autoescape=True))
                       .limit(11)).scalars().all()
    if len(ids) == 1:
        return ids[0]
    if len(ids) > 1:
        shown = ", ".join(i[:max(len(prefix) + 4, 12)] for i in ids[:10])
        more = " …" if len(ids) > 10 else ""
        raise StoreError(f"{what} id prefix '{prefix}' is ambiguous: {shown}{more}",
                         hint="give more characters")
    every = conn.execute(select(column)).scalars().all()
    cut = {i[:len(prefix)]: i for i in every}
    close = difflib.get_close_matches(prefix, list(cut), n=3, cutoff=0.6)
    hint = ("did you mean " + ", ".join(cut[c][:max(len(prefix) + 4, 12)] for c in close) + "?"
            if close else f"`flowopt runs list` shows the {what}s in this store" if what == "run"
            else "`flowopt runs show RUN` lists a run's artifacts")
    raise StoreError(f"no {what} with id '{prefix}' in {location}", hint=hint)


class Queries:
    engine: Any
    location: str

    # -- ids ---------------------------------------------------------------------------
    def resolve_run_id(self, prefix: str) -> str:
        """The full id of the one run whose id starts with `prefix`."""
        with self.engine.connect() as conn:
            return resolve_prefix(conn, Run.id, prefix, "run", self.location)

    # -- runs --------------------------------------------------------------------------
    def runs(self, where: str | None = None, *, pipeline: str | None = None,
             status: str | None = None, since: str | datetime | None = None,
             order_by: str | None = None, limit: int | None = None,
             trials: bool = False) -> Runs:
        """Runs with their params and final metrics, newest first unless `order_by`.

        `where` is a filter expression (see `flowopt.store.where`), `since` an ISO time or
        an age ('2h', '3d'), `order_by` 'FIELD [asc|desc]'. A tuner's trial runs are left
        out unless `trials`. A bare metric name in `where` or `order_by` resolves within the
        runs the other arguments select (`flowopt.store.filters`). The result's ``notes``
        say when a filter names a param or metric that no run has, when runs were left
        out because a bare metric name is ambiguous in them, and when `limit` cut the list.
        """
        self.reap_abandoned()
        with self.engine.connect() as conn:
            scope = []  # the runs being listed, before the expression: bare metric names resolve there
            if pipeline:
                scope.append(Run.pipeline == pipeline)
            if status:
                scope.append(Run.status == status)
            if since is not None:
                moment = parse_time(since) if isinstance(since, str) else since
                if conn.dialect.name == "sqlite":
                    moment = _naive_utc(moment)
                scope.append(Run.started_at >= moment)
            if not trials:
                scope.append(Run.parent_run_id.is_(None))
            compiler = Compiler(conn, scope=tuple(scope))
            query = select(*RECORD_COLUMNS).where(*scope)
            if where:
                query = query.where(compiler.compile(where))
            clause = order_clause(parse_order(order_by), compiler) if order_by else None
            if clause is not None:
                query = query.order_by(clause)
            query = query.order_by(Run.started_at.desc(), Run.id)
            more = False
            if limit:
                rows = conn.execute(query.limit(limit + 1)).mappings().all()
                more, rows = len(rows) > limit, rows[:limit]
                query = query.limit(limit)
            else:
                rows = conn.execute(query).mappings().all()
            ids = [r["id"] for r in rows]
            among = query.with_only_columns(Run.id).scalar_subquery() if len(ids) > 50 else None
            params, metrics = self._params_and_metrics(conn, ids, among)
        records = [self._run_record(r, params[r["id"]], metrics[r["id"]]) for r in rows]
        if more:
            compiler.notes.append(f"showing the first {limit} matching runs; more match "
                                  "(--limit N shows more)")
        return Runs(records, dict.fromkeys(compiler.notes))

    def run(self, run_id: str) -> RunDetail:
        """One run in full: nodes (with lineage), artifacts, params, metrics, trials."""
        self.reap_abandoned()
        run_id = self.resolve_run_id(run_id)
        with self.engine.connect() as conn:
            row = conn.execute(select(*RECORD_COLUMNS).where(Run.id == run_id)).mappings().one()
            params, metrics = self._params_and_metrics(conn, [run_id])
            executions = conn.execute(select(Execution.__table__).where(Execution.run_id == run_id)
                                      .order_by(Execution.position)).mappings().all()
            edges = conn.execute(
                select(Edge.execution_id, Edge.role, Edge.port.label("edge_port"),
                       *Artifact.__table__.columns)
                .join(Artifact, Artifact.id == Edge.artifact_id)
                .join(Execution, Execution.id == Edge.execution_id)
                .where(Execution.run_id == run_id).order_by(Edge.port)).mappings().all()
            trials = conn.execute(select(Trial.__table__).where(Trial.run_id == run_id)
                                  .order_by(Trial.node_id, Trial.number)).mappings().all()
        by_execution: dict[str, dict[str, list[str]]] = defaultdict(lambda: {"input": [], "output": []})
        node_of = {e["id"]: e["node_id"] for e in executions}
        artifacts: dict[str, ArtifactRecord] = {}
        for edge in edges:
            by_execution[edge["execution_id"]][edge["role"]].append(edge["id"])
            if edge["role"] == "output":
                artifacts[edge["id"]] = ArtifactRecord(
                    id=edge["id"], node=node_of[edge["execution_id"]], port=edge["edge_port"],
                    type=edge["type"], size=edge["size"], hash=edge["hash"], format=edge["format"])
        nodes = tuple(NodeRecord(
            id=e["node_id"], kind=e["kind"], status=e["status"], cache_key=e["cache_key"],
            seconds=e["seconds"], inputs=tuple(by_execution[e["id"]]["input"]),
            outputs=tuple(by_execution[e["id"]]["output"]), error=e["error"],
            execution_id=e["id"], config=e["config"] if isinstance(e["config"], dict) else {})
            for e in executions)
        record = self._run_record(row, params[run_id], metrics[run_id])
        return self.with_reuse(RunDetail(  # type: ignore[attr-defined]
            run=record, nodes=nodes, artifacts=tuple(artifacts.values()),
            trials=tuple(TrialRecord(
                node=t["node_id"], number=t["number"],
                params=t["params"] if isinstance(t["params"], dict) else {},
                objective=t["objective"], status=t["status"],
                trial_run_id=t["trial_run_id"], seconds=t["seconds"] or 0.0,
                error=t["error"], steps=t.get("steps") or 0, rung=t.get("rung"),
                objectives=None if t.get("objectives") is None
                else tuple(t["objectives"])) for t in trials)))

    def metrics(self, run_id: str, key: str) -> list[MetricPoint]:
        """The points of metric `key` (``node.metric``, or a bare name that one node of
        the run has) in step order; a metric without a series gives its final value."""
        run_id = self.resolve_run_id(run_id)
        with self.engine.connect() as conn:
            pairs = conn.execute(select(Metric.node_id, Metric.key).where(Metric.run_id == run_id)
                                 .distinct()).all()
            node_id, name = self._metric_name(run_id, key, [(n, k) for n, k in pairs])
            rows = conn.execute(select(Metric.step, Metric.value, Metric.logged_at)
                                .where(Metric.run_id == run_id, Metric.node_id == node_id,
                                       Metric.key == name)
                                .order_by(Metric.step.is_(None), Metric.step, Metric.id)).all()
        series = [MetricPoint(node_id, name, s, v, t) for s, v, t in rows if s is not None]
        return series or [MetricPoint(node_id, name, s, v, t) for s, v, t in rows[-1:]]

    def metric_series(self, run_id: str, key: str) -> list[tuple[int | None, float]]:
        """``(step, value)`` points of metric ``node.key`` in a run, in step order."""
        return [(p.step, p.value) for p in self.metrics(run_id, key) if p.step is not None]

    @staticmethod
    def _metric_name(run_id: str, key: str, pairs: list[tuple[str, str]]) -> tuple[str, str]:
        full = {f"{n}.{k}": (n, k) for n, k in pairs}
        if key in full:
            return full[key]
        nodes = [(n, k) for n, k in pairs if k == key]
        if len(nodes) == 1:
            return nodes[0]
        if nodes:
            raise StoreError(f"metric '{key}' is logged by several nodes of run {run_id[:12]}: "
                             + ", ".join(f"{n}.{k}" for n, k in nodes), hint="name one")
        close = difflib.get_close_matches(key, list(full) + [k for _, k in pairs], n=3)
        raise StoreError(f"run {run_id[:12]} has no metric '{key}'",
                         hint=f"did you mean {', '.join(close)}?" if close
                         else "metrics: " + (", ".join(sorted(full)) or "none"))

    def compare(self, run_ids: Sequence[str]) -> Comparison:
        """Params and final metrics of several runs side by side."""
        if len(run_ids) < 2:
            raise StoreError("compare needs at least two runs")
        ids = self.resolve_run_ids(run_ids)  # type: ignore[attr-defined]
        self.reap_abandoned()
        with self.engine.connect() as conn:
            rows = {r["id"]: r for r in conn.execute(
                select(*RECORD_COLUMNS).where(Run.id.in_(ids))).mappings()}
            params, metrics = self._params_and_metrics(conn, ids)
        records = tuple(self._run_record(rows[i], params[i], metrics[i]) for i in ids)

        def side_by_side(values: Mapping[str, Mapping[str, Any]]) -> dict[str, tuple]:
            keys = list(dict.fromkeys(k for i in ids for k in values[i]))
            return {k: tuple(values[i].get(k) for i in ids) for k in keys}

        return Comparison(records, side_by_side(params), side_by_side(metrics))

    # -- helpers -----------------------------------------------------------------------
    def reap_abandoned(self) -> list[str]:
        from .liveness import reap_abandoned

        return reap_abandoned(self)

    @staticmethod
    def _params_and_metrics(conn: Any, ids: list[str], among: Any = None) -> tuple[dict, dict]:
        """Params and final metrics of runs `ids`. `among`, a query selecting those ids,
        replaces the bound id lists: SQLAlchemy compiles every bound id of an IN list anew
        on each call, which costs more than the rows for a 1,000-run listing."""
        params: dict[str, dict[str, Any]] = {i: {} for i in ids}
        metrics: dict[str, dict[str, float]] = {i: {} for i in ids}
        cache: dict[str, Any] = {}
        chunks = [among] if among is not None else [
            ids[start:start + IN_CHUNK] for start in range(0, len(ids), IN_CHUNK)]
        for chunk in chunks if ids else []:
            for run_id, key, text, number in conn.execute(
                    select(Param.run_id, Param.key, type_coerce(Param.value, Text), Param.value_num)
                    .where(Param.run_id.in_(chunk)).order_by(Param.key)):
                params[run_id][key] = _param_value(text, number, cache)
            for run_id, node_id, key, value in conn.execute(
                    select(Metric.run_id, Metric.node_id, Metric.key, Metric.value)
                    .where(Metric.run_id.in_(chunk), Metric.step.is_(None))
                    .order_by(Metric.id)):
                metrics[run_id][f"{node_id}.{key}"] = value
        return params, metrics

    @staticmethod
    def _run_record(row: Mapping[str, Any], params: dict, metrics: dict) -> RunRecord:
        return RunRecord(run_id=row["id"], pipeline=row["pipeline"], status=row["status"],
                         started_at=row["started_at"], ended_at=row["ended_at"],
                         params=params, metrics=metrics, seed=row["seed"], error=row["error"],
                         source=row["source"], parent_run_id=row.get("parent_run_id"))
