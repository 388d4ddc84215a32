"""Filter trees (`store.where`), `--order-by` and `--since` as SQLAlchemy expressions.

Every user value becomes a bound parameter; field names select a column or a
parametrised ``EXISTS`` subquery, never SQL text.

Typing. Params keep their JSON value and, when numeric, a float copy (`value_num`):
``params.lr > 0.01`` compares that float, ``params.opt = 'adam'`` compares the JSON text
of a string, so ``params.width = 3`` and ``params.width = 3.0`` both match the integer 3
and never the string '3'. Metrics are final values (rows with ``step`` NULL) and numbers.

Names. ``metrics.NODE.KEY`` names a node's metric. A bare ``metrics.KEY`` is resolved
within the runs being listed (`Compiler.scope`: the pipeline, status, age and trial
filters beside the expression): when one node of those runs logs ``KEY`` it means that
node's metric; when several do (the quickstart's ``final`` and the quantize pipeline's
``*_score``), it means, in each run, the one node of that run that logs ``KEY`` — a run
where several of its nodes log it is left out, with a note naming them, and if no run
has a single one the bare name is an error listing the candidates. ``params.NAME`` is
the value a run was started with (the file's, or a ``-s`` override; a trial run's are
the trial's); ``params.TUNER.NAME`` is the best value tuner node TUNER found (e.g.
``params.tune.lr``). A param or metric that no run has is not an error: the comparison
is false and the query carries a note, shown by the CLI. Errors name the option the text
came from (``--where`` or ``--order-by``).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from sqlalchemy import Text, and_, case, exists, false, func, not_, or_, select, type_coerce
from sqlalchemy.orm import aliased
from sqlalchemy.sql.elements import ColumnElement

from flowopt.errors import StoreError

from .schema import Metric, Param, Run
from .where import Compare, Expr, Field, Literal, Not, WhereError, parse

RUN_COLUMNS = {"pipeline": Run.pipeline, "status": Run.status, "run_id": Run.id, "id": Run.id,
               "seed": Run.seed, "host": Run.host, "started_at": Run.started_at,
               "ended_at": Run.ended_at, "parent_run_id": Run.parent_run_id}
_TIMES = {"started_at", "ended_at"}
_NUMBERS = {"seed"}
_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d|w)\s*$", re.IGNORECASE)
_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}
_SQL_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "=": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}


def parse_time(text: str, *, now: datetime | None = None) -> datetime:
    """An ISO date/time (UTC unless it says otherwise) or a relative age: 30m, 2h, 3d, 1w."""
    relative = _RELATIVE.match(text)
    if relative:
        amount, unit = float(relative.group(1)), relative.group(2).lower()
        try:
            return (now or datetime.now(timezone.utc)) - timedelta(seconds=amount * _UNITS[unit])
        except OverflowError:
            raise StoreError(f"cannot read time {text!r}: the age reaches before the year 1",
                             hint="give a smaller age, e.g. 30d or 52w") from None
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise StoreError(f"cannot read time {text!r}",
                         hint="give an ISO date such as 2026-11-23 or 2026-11-23T14:00, "
                              "or an age such as 30m, 2h, 3d, 1w") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def parse_age(text: str) -> float:
    """Seconds in an age such as '0', '90s', '10m', '1h', '2d'."""
    if text.strip() in ("0", "0s"):
        return 0.0
    relative = _RELATIVE.match(text)
    if relative is None:
        raise StoreError(f"cannot read age {text!r}", hint="write e.g. 0, 90s, 10m, 1h or 2d")
    return float(relative.group(1)) * _UNITS[relative.group(2).lower()]


def _naive_utc(moment: datetime) -> datetime:
    """Stored times are UTC; SQLite keeps them naive, so compare naive UTC values there."""
    return moment.astimezone(timezone.utc).replace(tzinfo=None)


@dataclass
class Compiler:
    """Turns a filter tree into a SQLAlchemy condition on `Run`, given a connection."""

    conn: Any
    text: str = ""
    notes: list[str] = field(default_factory=list)
    #: conditions on `Run` selecting the runs being listed: bare metric names resolve there
    scope: tuple[Any, ...] = ()
    option: str = "--where"  # what error messages call the text
    _metric_nodes: dict[str, list[str]] = field(default_factory=dict)

    def compile(self, text: str) -> ColumnElement[bool]:
        self.text = text
        return self.expr(parse(text))

    def expr(self, node: Expr) -> ColumnElement[bool]:
        if isinstance(node, Compare):
            return self.compare(node)
        if isinstance(node, Not):
            return not_(self.expr(node.item))
        parts = [self.expr(item) for item in node.items]
        return and_(*parts) if type(node).__name__ == "And" else or_(*parts)

    def error(self, position: int, message: str) -> WhereError:
        return WhereError(self.text, position, message, self.option)

    # -- one comparison ----------------------------------------------------------------
    def compare(self, node: Compare) -> ColumnElement[bool]:
        head, rest = node.field.path[0], node.field.path[1:]
        if head == "params" and rest:
            return self.param(".".join(rest), node)
        if head == "metrics" and rest:
            return self.metric(node.field, rest, node)
        if head in RUN_COLUMNS and not rest:
            return self.column(head, node)
        known = ", ".join(["params.NAME", "metrics.NAME", *sorted(set(RUN_COLUMNS) - {"id"})])
        raise self.error(node.field.position, f"unknown field '{node.field.name}' "
                                              f"(fields: {known})")

    def apply(self, column: Any, node: Compare, convert: Callable[[Literal], Any]) -> Any:
        values = [convert(v) for v in node.values]
        if node.op in ("in", "not in"):
            condition = column.in_(values)
            return not_(condition) if node.op == "not in" else condition
        if node.op in ("like", "not like"):
            condition = column.like(values[0])
            return not_(condition) if node.op == "not like" else condition
        if values[0] is None:
            if node.op not in ("=", "!="):
                raise self.error(node.values[0].position, "null compares only with = or !=")
            return column.is_(None) if node.op == "=" else column.is_not(None)
        return _SQL_OPS[node.op](column, values[0])

    def column(self, name: str, node: Compare) -> ColumnElement[bool]:
        def convert(literal: Literal) -> Any:
            value = literal.value
            if value is None:
                return None
            if name in _TIMES:
                if not isinstance(value, str):
                    raise self.error(literal.position, f"{name} compares with a 'date' or an "
                                                       "age such as '2h'")
                try:
                    moment = parse_time(value)
                except StoreError as exc:
                    raise self.error(literal.position, exc.message) from None
                return _naive_utc(moment) if self.conn.dialect.name == "sqlite" else moment
            if name in _NUMBERS:
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise self.error(literal.position, f"{name} is a number")
                return value
            if not isinstance(value, str):
                raise self.error(literal.position, f"{name} is text: write '{value}' in quotes")
            return value

        return self.apply(RUN_COLUMNS[name], node, convert)

    def param(self, key: str, node: Compare) -> ColumnElement[bool]:
        kinds = {_literal_kind(v.value) for v in node.values if v.value is not None}
        if len(kinds) > 1:
            raise self.error(node.values[0].position, "mix of numbers and strings in one 'in'")
        numeric = kinds == {"number"} and node.op not in ("like", "not like")
        if numeric:
            column, convert = Param.value_num, (lambda lit: lit.value)
        else:
            def convert(literal: Literal) -> Any:
                return json.dumps(literal.value)  # a 'like' pattern then matches inside the quotes
            column = type_coerce(Param.value, Text)  # compare the stored JSON text itself
        negative = node.op in ("!=", "not in", "not like")
        positive_op = {"!=": "=", "not in": "in", "not like": "like"}.get(node.op, node.op)
        positive = Compare(node.field, positive_op, node.values, node.position)
        condition = self.apply(column, positive, convert)
        if all(v.value is None for v in node.values) and node.op in ("=", "!="):
            condition = or_(Param.value.is_(None), type_coerce(Param.value, Text) == "null")
        found = exists().where(Param.run_id == Run.id, Param.key == key, condition)
        has_key = exists().where(Param.run_id == Run.id, Param.key == key)
        self._note_unknown_param(key)
        return and_(has_key, not_(found)) if negative else found

    def metric(self, field: Field, rest: tuple[str, ...], node: Compare) -> ColumnElement[bool]:
        for literal in node.values:
            if node.op in ("like", "not like") or isinstance(literal.value, (str, bool)):
                raise self.error(literal.position, "metrics are numbers: compare them with a number")
        target = self.metric_target(field, rest)
        if target is None:
            return false()
        negative = node.op in ("!=", "not in")
        positive_op = {"!=": "=", "not in": "in"}.get(node.op, node.op)
        condition = self.apply(Metric.value, Compare(field, positive_op, node.values, node.position),
                               lambda lit: lit.value)
        where = metric_rows(*target)
        found = exists().where(*where, condition)
        return and_(exists().where(*where), not_(found)) if negative else found

    # -- names -------------------------------------------------------------------------
    def metric_target(self, field: Field, rest: tuple[str, ...]) -> tuple[str | None, str] | None:
        """``(node_id, key)`` of a metric reference, resolving a bare name within the runs
        being listed; node None: each run's one node with that metric (module docstring).
        None if no run has it."""
        if len(rest) > 1:
            node_id, key = ".".join(rest[:-1]), rest[-1]
            if self._metric_exists(node_id, key):
                return node_id, key
        name = ".".join(rest)
        nodes = self._nodes_with_metric(name)
        if len(nodes) == 1:
            return nodes[0], name
        if len(nodes) > 1:
            choices = ", ".join(f"metrics.{n}.{name}" for n in nodes)
            single, several = self._runs_by_node_count(name)
            if not single:
                raise self.error(field.position, f"metric '{name}' is logged by {len(nodes)} "
                                                 f"nodes in every run that has it; name one: {choices}")
            if several:
                self.notes.append(f"metrics.{name}: {several} run(s) where several nodes log "
                                  f"'{name}' are left out; name one to include them: {choices}")
            return None, name
        if len(rest) > 1:
            self.notes.append(f"no run has metric '{'.'.join(rest)}'")
            return ".".join(rest[:-1]), rest[-1]
        self.notes.append(f"no run has a metric named '{name}'")
        return None

    def _nodes_with_metric(self, key: str) -> list[str]:
        if key not in self._metric_nodes:
            rows = self.conn.execute(select(Metric.node_id).join(Run, Run.id == Metric.run_id)
                                     .where(Metric.key == key, Metric.step.is_(None), *self.scope)
                                     .distinct().order_by(Metric.node_id)).scalars().all()
            self._metric_nodes[key] = list(rows)
        return self._metric_nodes[key]

    def _runs_by_node_count(self, key: str) -> tuple[int, int]:
        """How many runs in scope log final metric `key` from one node, and from several."""
        nodes = func.count(func.distinct(Metric.node_id))
        per_run = (select(Metric.run_id, nodes.label("nodes")).join(Run, Run.id == Metric.run_id)
                   .where(Metric.key == key, Metric.step.is_(None), *self.scope)
                   .group_by(Metric.run_id).subquery())
        single, several = self.conn.execute(select(
            func.sum(case((per_run.c.nodes == 1, 1), else_=0)),
            func.sum(case((per_run.c.nodes > 1, 1), else_=0)))).one()
        return int(single or 0), int(several or 0)

    def _metric_exists(self, node_id: str, key: str) -> bool:
        return node_id in self._nodes_with_metric(key)

    def _note_unknown_param(self, key: str) -> None:
        hit = self.conn.execute(select(Param.key).where(Param.key == key).limit(1)).first()
        if hit is None:
            self.notes.append(f"no run has a param named '{key}'")


def metric_rows(node_id: str | None, key: str) -> list[Any]:
    """Conditions selecting a run's final value of metric `key`: of node `node_id`, or,
    for None, of the one node of that run that logs `key` (no row when several do)."""
    where = [Metric.run_id == Run.id, Metric.key == key, Metric.step.is_(None)]
    if node_id is not None:
        return [*where, Metric.node_id == node_id]
    other = aliased(Metric)
    nodes = (select(func.count(func.distinct(other.node_id)))
             .where(other.run_id == Metric.run_id, other.key == key, other.step.is_(None))
             .correlate_except(other).scalar_subquery())
    return [*where, nodes == 1]


def _literal_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    return "number" if isinstance(value, (int, float)) else "string"


@dataclass(frozen=True)
class Ordering:
    """A parsed ``--order-by``: ``FIELD`` or ``FIELD asc|desc`` (default ascending)."""

    field: tuple[str, ...]
    descending: bool


def parse_order(text: str) -> Ordering:
    words = text.split()
    if not words or len(words) > 2 or (len(words) == 2 and words[1].lower() not in ("asc", "desc")):
        raise StoreError(f"cannot read --order-by {text!r}",
                         hint="write FIELD, FIELD asc or FIELD desc, e.g. 'metrics.accuracy desc'")
    name = words[0]
    descending = len(words) == 2 and words[1].lower() == "desc"
    if name.startswith("-"):
        name, descending = name[1:], True
    return Ordering(tuple(name.split(".")), descending)


def order_clause(ordering: Ordering, compiler: Compiler) -> Any:
    """The ORDER BY expression (nulls last) for a run column, a param or a metric."""
    head, rest = ordering.field[0], ordering.field[1:]
    field_ref = Field(ordering.field, 0)
    compiler.text, compiler.option = ".".join(ordering.field), "--order-by"
    if head in RUN_COLUMNS and not rest:
        column: Any = RUN_COLUMNS[head]
    elif head == "params" and rest:
        key = ".".join(rest)
        column = (select(Param.value_num).where(Param.run_id == Run.id, Param.key == key)
                  .scalar_subquery())
    elif head == "metrics" and rest:
        target = compiler.metric_target(field_ref, rest)
        if target is None:
            return None
        column = (select(Metric.value).where(*metric_rows(*target))
                  .order_by(Metric.id.desc()).limit(1).scalar_subquery())
    else:
        raise StoreError(f"cannot order by '{'.'.join(ordering.field)}'",
                         hint="order by metrics.NAME, params.NAME, started_at, pipeline or status")
    return (column.desc() if ordering.descending else column.asc()).nulls_last()
