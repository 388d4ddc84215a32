"""What the write buffer holds, and how a batch is written when one of its rows is bad.

Metric points. A node may log far faster than the store flushes, so series points are
kept columnar — per series ``(run, node, key)`` three typed arrays (step, value, time) —
at 24 bytes a point instead of a dict's ~460; `Store` wakes its flusher when `FLUSH_ROWS`
rows are buffered as well as every `FLUSH_SECONDS`, and a logger that gets `BLOCK_ROWS`
ahead of it writes the batch itself, so the buffer stays bounded. Final values
(step NULL, a few per node) keep their order in a plain list: the last one written wins.

Row isolation. A batch is one transaction; if the database refuses it for a reason
other than contention (a value it cannot hold, a constraint), the rows are written again
one by one — in a savepoint each on PostgreSQL, where a failed statement aborts the
transaction — and only the rows the database refuses are dropped, with a warning. One
bad row never takes the run's other rows with it.

Text. Error messages come from anywhere (a node's exception, a file's contents);
`clean_text` makes them storable everywhere: PostgreSQL refuses NUL characters and
every driver refuses lone surrogates.
"""
from __future__ import annotations

import logging
from array import array
from typing import Any, Callable, Iterator

from sqlalchemy.exc import OperationalError, StatementError

KEY_LIMIT = 200  # the store's name columns
MIN_STEP, MAX_STEP = -(2 ** 63), 2 ** 63 - 1
ROW_ERRORS = (StatementError, ValueError, TypeError, OverflowError)
log = logging.getLogger("flowopt.store")


def clean_text(text: str | None) -> str | None:
    """`text` with NUL and lone surrogates replaced, so every database accepts it."""
    if text is None:
        return None
    text = str(text)
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


class _Series:
    __slots__ = ("steps", "values", "times")

    def __init__(self) -> None:
        self.steps = array("q")
        self.values = array("d")
        self.times = array("d")

    def extend(self, other: "_Series") -> None:
        self.steps.extend(other.steps)
        self.values.extend(other.values)
        self.times.extend(other.times)


class MetricBuffer:
    """Buffered metric points, columnar per series; not thread-safe (the store locks)."""

    def __init__(self) -> None:
        self._series: dict[tuple[str, str, str], _Series] = {}
        self._finals: list[tuple[str, str, str, None, float, float]] = []
        self.count = 0

    def __len__(self) -> int:
        return self.count

    def add(self, run_id: str, node_id: str, key: str, value: float, step: int | None,
            moment: float) -> None:
        if len(key) > KEY_LIMIT:
            raise ValueError(f"metric key '{key[:40]}…' is {len(key)} characters long "
                             f"(at most {KEY_LIMIT})")
        if step is None:
            self._finals.append((run_id, node_id, key, None, float(value), moment))
            self.count += 1
            return
        if not (MIN_STEP <= step <= MAX_STEP):
            raise ValueError(f"metric '{key}': step {step} does not fit in 64 bits")
        series = self._series.get((run_id, node_id, key))
        if series is None:
            series = self._series[(run_id, node_id, key)] = _Series()
        series.values.append(value)  # first: a non-number fails before anything is appended
        series.steps.append(step)
        series.times.append(moment)
        self.count += 1

    def take(self) -> "MetricBuffer":
        """Move every point into a new buffer (the one to write) and empty this one."""
        taken = MetricBuffer()
        taken._series, taken._finals, taken.count = self._series, self._finals, self.count
        self._series, self._finals, self.count = {}, [], 0
        return taken

    def restore(self, older: "MetricBuffer") -> None:
        """Put back points taken earlier (a failed write), before any added since."""
        for key, series in older._series.items():
            newer = self._series.get(key)
            if newer is not None:
                series.extend(newer)
            self._series[key] = series
        self._finals[:0] = older._finals
        self.count += older.count

    def rows(self) -> Iterator[tuple[str, str, str, int | None, float, float]]:
        """``(run_id, node_id, key, step, value, unix time)``: each series in logging order,
        then the final values in theirs."""
        for (run_id, node_id, key), s in self._series.items():
            for step, value, moment in zip(s.steps, s.values, s.times):
                yield run_id, node_id, key, step, value, moment
        yield from self._finals


def write_each(conn: Any, rows: list[Any], insert_one: Callable[[Any, Any], None],
               what: str) -> int:
    """Insert `rows` one at a time, dropping (with a warning) those the database refuses;
    returns how many were dropped. Contention (`OperationalError`) still propagates."""
    nested = conn.dialect.name != "sqlite"  # SQLite undoes only the failed statement
    dropped = 0
    for row in rows:
        try:
            if nested:
                with conn.begin_nested():
                    insert_one(conn, row)
            else:
                insert_one(conn, row)
        except OperationalError:
            raise
        except ROW_ERRORS as exc:
            dropped += 1
            reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0][:200]
            log.warning("flowopt: the store refused one %s row and dropped it: %s", what, reason)
    return dropped
