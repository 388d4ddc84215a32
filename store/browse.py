"""Queries for browsing the store (``flowopt ui``, ``flowopt report``): a page of runs with
its total, every series of a run, a tuner's trials with their curves, and what a cached
run reused.

A mixin of `Store`, built on the same filter compiler and record types as `queries`
(there is one SQL layer). Three policies:

* **Reuse.** A cached execution lists the artifacts it reused as its outputs, and every
  artifact names the execution that produced it, so "where did this come from" is one
  join: the producing execution's run and node. A cached run shows the series, final
  metrics and trials of those executions, each marked with the run it came from.
* **Paging.** A page costs one query for its rows, one for their params and metrics and
  one ``count(*)``: with 10,000 runs the first page never touches the other 9,950.
* **Read-only.** `ReadOnlyStore` never writes: it refuses a store whose schema would
  need an upgrade, does not mark dead runs ``abandoned`` (it shows them so without
  writing) and raises on any write. The web app opens the store this way.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable, Mapping, Sequence

from sqlalchemy import create_engine, func, select

from flowopt.errors import StoreError

from .filters import Compiler, _naive_utc, order_clause, parse_order, parse_time
from .queries import IN_CHUNK, RECORD_COLUMNS
from .records import RunRecord, TrialRecord
from .schema import Artifact, Edge, Execution, Metric, Run, Trial

PAGE_LIMIT = 1000  # the most runs one page may ask for


@dataclass(frozen=True)
class Reuse:
    """Where a cached node's results were computed: an execution of an earlier run."""

    run_id: str
    node: str
    execution_id: str

    def to_json(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "node": self.node, "execution_id": self.execution_id}


@dataclass(frozen=True)
class Series:
    """One metric logged with steps, in step order. ``from_run`` is set when the points
    belong to an earlier run whose results this (cached) run reused."""

    node: str
    key: str
    steps: tuple[int, ...]
    values: tuple[float, ...]
    from_run: str | None = None

    @property
    def name(self) -> str:
        return f"{self.node}.{self.key}"

    def to_json(self) -> dict[str, Any]:
        return {"node": self.node, "key": self.key, "steps": list(self.steps),
                "values": list(self.values), "from_run": self.from_run}


@dataclass(frozen=True)
class RunsPage:
    """One page of `Store.runs_page`: the runs, how many match in all, filter notes."""

    runs: tuple[RunRecord, ...]
    total: int
    offset: int
    limit: int
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"runs": [r.to_json() for r in self.runs], "total": self.total,
                "offset": self.offset, "limit": self.limit, "notes": list(self.notes)}


@dataclass(frozen=True)
class TunerTrial:
    """A trial with everything a strategy recorded about it: the frozen `TrialRecord`
    plus its attributes (``steps``, ``rung``, ``objectives`` when the strategy keeps
    them) and its start and end."""

    record: TrialRecord
    attributes: Mapping[str, Any] = field(default_factory=dict)
    started_at: datetime | None = None
    ended_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        extra = {k: v for k, v in self.attributes.items() if k in ("steps", "rung", "objectives")}
        return {**self.record.to_json(), **extra, "attributes": dict(self.attributes),
                "started_at": _iso(self.started_at), "ended_at": _iso(self.ended_at)}


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).isoformat()


def _duration(conn: Any) -> Any:
    if conn.dialect.name == "sqlite":
        return (func.julianday(Run.ended_at) - func.julianday(Run.started_at)) * 86400.0
    return func.extract("epoch", Run.ended_at - Run.started_at)


def _trial_record(row: Mapping[str, Any], from_run: str | None) -> TrialRecord:
    params = row["params"] if isinstance(row["params"], dict) else {}  # a store from elsewhere
    values = dict(node=row["node_id"], number=row["number"], params=params,
                  objective=row["objective"], status=row["status"],
                  trial_run_id=row["trial_run_id"], seconds=row["seconds"] or 0.0,
                  error=row["error"])
    objectives = row.get("objectives")
    values.update(steps=row.get("steps") or 0, rung=row.get("rung"),
                  objectives=tuple(objectives) if isinstance(objectives, list) else None)
    if from_run is not None:
        values["from_run"] = from_run
    return TrialRecord(**values)


class BrowseQueries:
    engine: Any
    location: str

    # -- a page of runs -----------------------------------------------------------------
    def runs_page(self, where: str | None = None, *, order_by: str | None = None,
                  offset: int = 0, limit: int = 50, pipeline: str | None = None,
                  status: str | None = None, since: str | datetime | None = None,
                  trials: bool = False) -> RunsPage:
        """Runs `offset` .. `offset + limit` of those matching, and how many match.

        Same filters as `Store.runs`; `order_by` also takes ``duration`` (to the millisecond
        on SQLite, whose ``julianday`` keeps no finer time). Runs still marked
        ``running`` whose process is gone are shown ``abandoned`` (nothing is written).
        """
        if not 1 <= limit <= PAGE_LIMIT:
            raise StoreError(f"a page holds 1 to {PAGE_LIMIT} runs, not {limit}")
        if offset < 0:
            raise StoreError(f"offset must be 0 or more, not {offset}")
        with self.engine.connect() as conn:
            compiler = Compiler(conn)
            query = select(*RECORD_COLUMNS, Run.host, Run.pid, Run.heartbeat_at)
            if where:
                query = query.where(compiler.compile(where))
            if pipeline:
                query = query.where(Run.pipeline == pipeline)
            if status:
                query = query.where(Run.status == status)
            if since is not None:
                moment = parse_time(since) if isinstance(since, str) else since
                query = query.where(Run.started_at >= (
                    _naive_utc(moment) if conn.dialect.name == "sqlite" else moment))
            if not trials:
                query = query.where(Run.parent_run_id.is_(None))
            total = conn.execute(select(func.count()).select_from(
                query.with_only_columns(Run.id).subquery())).scalar_one()
            if order_by:
                ordering = parse_order(order_by)
                if ordering.field == ("duration",):
                    column = _duration(conn)
                    query = query.order_by((column.desc() if ordering.descending
                                            else column.asc()).nulls_last())
                else:
                    clause = order_clause(ordering, compiler)
                    if clause is not None:
                        query = query.order_by(clause)
            rows = conn.execute(query.order_by(Run.started_at.desc(), Run.id)
                                .offset(offset).limit(limit)).mappings().all()
            ids = [r["id"] for r in rows]
            params, metrics = self._params_and_metrics(conn, ids)  # type: ignore[attr-defined]
        from .liveness import HOST, STALE_SECONDS, pid_alive

        records = []
        for row in rows:
            record = self._run_record(row, params[row["id"]], metrics[row["id"]])  # type: ignore[attr-defined]
            if row["status"] == "running" and not _alive(row, HOST, STALE_SECONDS, pid_alive):
                record = _replace_status(record, "abandoned")
            records.append(record)
        return RunsPage(tuple(records), total, offset, limit, tuple(dict.fromkeys(compiler.notes)))

    def resolve_run_ids(self, prefixes: Sequence[str]) -> list[str]:
        """Full ids for many ids or prefixes: full ids in one query (a comparison of 100
        runs must not scan the runs table 100 times), the rest one by one."""
        wanted = [p.strip() for p in prefixes]
        known: set[str] = set()
        with self.engine.connect() as conn:
            for start in range(0, len(wanted), IN_CHUNK):
                known.update(conn.execute(select(Run.id).where(
                    Run.id.in_(wanted[start:start + IN_CHUNK]))).scalars())
        return [p if p in known else self.resolve_run_id(p)  # type: ignore[attr-defined]
                for p in wanted]

    # -- what a cached run reused ---------------------------------------------------------
    def reuse_of(self, run_id: str) -> dict[str, Reuse]:
        """``node -> Reuse`` for each cached execution of run `run_id` (a full id): the
        execution that produced its outputs under the same cache key (a tuner's extra
        outputs come from its best trial's run; the tuner's own execution is the source)."""
        from sqlalchemy.orm import aliased

        source = aliased(Execution)
        query = (select(Execution.node_id, Execution.cache_key, source.id, source.run_id,
                        source.node_id, source.cache_key)
                 .join(Edge, (Edge.execution_id == Execution.id) & (Edge.role == "output"))
                 .join(Artifact, Artifact.id == Edge.artifact_id)
                 .join(source, source.id == Artifact.execution_id)
                 .where(Execution.run_id == run_id, Execution.status == "cached"))
        found: dict[str, Reuse] = {}
        with self.engine.connect() as conn:
            for node, key, source_id, source_run, source_node, source_key in conn.execute(query):
                if source_run == run_id:
                    continue
                if key == source_key or node not in found:
                    found[node] = Reuse(source_run, source_node, source_id)
        return found

    def reused_metrics(self, reuse: Mapping[str, Reuse]) -> dict[str, tuple[float, str]]:
        """``NODE.KEY -> (final value, run id)`` of the executions a cached run reused."""
        found: dict[str, tuple[float, str]] = {}
        with self.engine.connect() as conn:
            for node, source in reuse.items():
                for key, value in conn.execute(
                        select(Metric.key, Metric.value)
                        .where(Metric.run_id == source.run_id, Metric.node_id == source.node,
                               Metric.step.is_(None)).order_by(Metric.id)):
                    found[f"{node}.{key}"] = (value, source.run_id)
        return found

    def reused_trials(self, reuse: Mapping[str, Reuse]) -> list[TrialRecord]:
        """The trials of the tuner executions a cached run reused, marked ``from_run``."""
        trials: list[TrialRecord] = []
        with self.engine.connect() as conn:
            for node, source in reuse.items():
                rows = conn.execute(select(Trial.__table__)
                                    .where(Trial.run_id == source.run_id,
                                           Trial.node_id == source.node)
                                    .order_by(Trial.number)).mappings().all()
                trials.extend(_trial_record({**r, "node_id": node}, source.run_id) for r in rows)
        return trials

    def with_reuse(self, detail: Any) -> Any:
        """`detail` with what its cached nodes reused: where from, their final metrics
        and trials (`Store.run` returns this)."""
        from dataclasses import replace

        reuse = self.reuse_of(detail.run.run_id)
        if not reuse:
            return detail
        nodes = tuple(replace(n, reused_from=reuse[n.id]) if n.id in reuse else n
                      for n in detail.nodes)
        found = self.reused_metrics(reuse)
        own = dict(detail.run.metrics)
        added = {k: v for k, (v, _) in found.items() if k not in own}
        run = replace(detail.run, metrics={**own, **added}) if added else detail.run
        have = {t.node for t in detail.trials}
        trials = detail.trials + tuple(t for t in self.reused_trials(reuse) if t.node not in have)
        return replace(detail, run=run, nodes=nodes, trials=trials,
                       reused_metrics={k: r for k, (_, r) in found.items() if k not in own})

    # -- series ---------------------------------------------------------------------------
    def series(self, run_id: str, *, reused: bool = True) -> list[Series]:
        """Every metric of a run logged with steps (and, when `reused`, those of the
        executions its cached nodes reused, marked with their run)."""
        run_id = self.resolve_run_id(run_id)  # type: ignore[attr-defined]
        found = self.series_of_runs([run_id])[run_id]
        if reused:
            have = {(s.node, s.key) for s in found}
            for node, source in self.reuse_of(run_id).items():
                for s in self.series_of_runs([source.run_id], nodes=[source.node])[source.run_id]:
                    if (node, s.key) not in have:
                        found.append(Series(node, s.key, s.steps, s.values, source.run_id))
        return sorted(found, key=lambda s: (s.node, s.key))

    def series_of_runs(self, run_ids: Sequence[str], keys: Iterable[str] | None = None,
                       nodes: Iterable[str] | None = None) -> dict[str, list[Series]]:
        """``run id -> [Series]`` for many runs in a few queries (full ids). `keys`
        (``NODE.KEY``) or `nodes` narrow it."""
        wanted = set(keys) if keys is not None else None
        node_set = list(nodes) if nodes is not None else None
        points: dict[str, dict[tuple[str, str], list[tuple[int, float]]]] = {
            r: defaultdict(list) for r in run_ids}
        ids = list(run_ids)
        with self.engine.connect() as conn:
            for start in range(0, len(ids), IN_CHUNK):
                query = (select(Metric.run_id, Metric.node_id, Metric.key, Metric.step,
                                Metric.value)
                         .where(Metric.run_id.in_(ids[start:start + IN_CHUNK]),
                                Metric.step.is_not(None)))
                if node_set is not None:
                    query = query.where(Metric.node_id.in_(node_set))
                if wanted is not None:
                    query = query.where(Metric.key.in_({k.rpartition(".")[2] for k in wanted}))
                for run, node, key, step, value in conn.execute(
                        query.order_by(Metric.run_id, Metric.node_id, Metric.key, Metric.step,
                                       Metric.id)):
                    if wanted is None or f"{node}.{key}" in wanted:
                        points[run][(node, key)].append((step, value))
        return {run: [Series(n, k, tuple(s for s, _ in p), tuple(v for _, v in p))
                      for (n, k), p in sorted(by_key.items())]
                for run, by_key in points.items()}

    # -- tuners ---------------------------------------------------------------------------
    def tuner_trials(self, run_id: str, node: str | None = None) -> list[TunerTrial]:
        """The trials of a run's tuner nodes (or of `node`), with their attributes; a
        cached tuner node gives the trials of the run it reused, marked ``from_run``."""
        run_id = self.resolve_run_id(run_id)  # type: ignore[attr-defined]
        sources = [(run_id, None, None)]
        sources += [(r.run_id, r.node, n) for n, r in self.reuse_of(run_id).items()]
        trials: list[TunerTrial] = []
        seen: set[str] = set()
        with self.engine.connect() as conn:
            for source_run, source_node, as_node in sources:
                query = select(Trial.__table__).where(Trial.run_id == source_run)
                if source_node is not None:
                    query = query.where(Trial.node_id == source_node)
                for row in conn.execute(query.order_by(Trial.node_id, Trial.number)).mappings():
                    name = as_node or row["node_id"]
                    if (node is not None and name != node) or (as_node and name in seen):
                        continue
                    record = _trial_record({**row, "node_id": name},
                                           source_run if as_node else None)
                    attributes = row["attributes"] if isinstance(row["attributes"], dict) else {}
                    trials.append(TunerTrial(record, attributes,
                                             row["started_at"], row["ended_at"]))
                seen.update(t.record.node for t in trials)
        return trials


def _alive(row: Mapping[str, Any], host: str, stale: float, pid_alive: Any) -> bool:
    if row["host"] == host and row["pid"]:
        return pid_alive(row["pid"])
    beat = row["heartbeat_at"]
    if beat is None:
        return False
    beat = beat if beat.tzinfo else beat.replace(tzinfo=timezone.utc)
    return (datetime.now(timezone.utc) - beat).total_seconds() < stale


def _replace_status(record: RunRecord, status: str) -> RunRecord:
    from dataclasses import replace

    return replace(record, status=status)


class ReadOnlyStore:
    """Open a store for reading only (see the module docstring); ``open`` returns a
    `Store` whose writes raise and which never reaps or upgrades."""

    @staticmethod
    def open(location: str, *, artifacts: str | None = None) -> Any:
        from .location import resolve
        from .migrate import HEAD, current_revision
        from .store import Store

        where = resolve(location, artifacts)
        if where.database_file is not None and not where.database_file.is_file():
            raise StoreError(f"no flowopt store at '{where.display}'",
                             hint="run a pipeline first, or pass --store")
        probe = create_engine(where.url)
        try:
            revision = current_revision(probe)
        except Exception as exc:  # noqa: BLE001 - the driver's own error, shown in one line
            raise StoreError(f"cannot read the store at '{where.display}': {exc}") from None
        finally:
            probe.dispose()
        if revision is None:
            raise StoreError(f"no flowopt store at '{where.display}'",
                             hint="run a pipeline first, or pass --store")
        if revision != HEAD:
            raise StoreError(f"the store at '{where.display}' has schema {revision}, not {HEAD}; "
                             "a read-only view does not upgrade it",
                             hint="run any `flowopt runs list` once to upgrade it")

        class _ReadOnly(Store):
            def _write(self, work: Any, attempts: int = 12) -> Any:
                raise StoreError("this view of the store is read-only")

            def reap_abandoned(self) -> list[str]:
                return []

        return _ReadOnly(location, create=False, artifacts=artifacts)


__all__ = ["BrowseQueries", "ReadOnlyStore", "Reuse", "RunsPage", "Series", "TunerTrial"]
