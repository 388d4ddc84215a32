"""Delimited text tables → feature and target arrays (shared by `data.csv` and `data.digits`).

Plain numpy and the standard library's `csv` module: no torch here, so the caller decides
how arrays become tensors. Every error names the row (1-based, as a text editor counts
lines of the decompressed file) and the column.
"""
from __future__ import annotations

import csv
import gzip
import hashlib
import io
import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

Task = Literal["auto", "classification", "regression"]


@dataclass(frozen=True)
class Table:
    """Parsed cells: column names (None without a header row) and rows of strings."""

    columns: list[str] | None
    rows: list[tuple[int, list[str]]]  # (line number, cells)


def sha256(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def parse_table(payload: bytes, *, delimiter: str = ",", header: bool | None = None,
                gzipped: bool = False) -> Table:
    """Split raw bytes into rows; ``header=None`` detects a header row (any non-number)."""
    if gzipped:
        payload = gzip.decompress(payload)
    text = payload.decode("utf-8-sig")  # utf-8-sig: spreadsheet exports often add a BOM
    rows = [(number, [cell.strip() for cell in cells])
            for number, cells in enumerate(csv.reader(io.StringIO(text), delimiter=delimiter), 1)
            if any(cell.strip() for cell in cells)]
    if not rows:
        raise ValueError("the file holds no rows")
    if header is None:
        header = not all(_is_number(cell) for cell in rows[0][1])
    columns = rows.pop(0)[1] if header else None
    if not rows:
        raise ValueError("the file holds a header row but no data")
    width = len(columns) if columns is not None else len(rows[0][1])
    for number, cells in rows:
        if len(cells) != width:
            raise ValueError(f"row {number} has {len(cells)} columns, expected {width}")
    if width < 2:
        raise ValueError("a dataset needs at least one feature column and a target column")
    return Table(columns, rows)


def target_index(table: Table, target: str | int) -> int:
    """Column index of `target`: a header name, or an index (negative counts from the end)."""
    width = len(table.rows[0][1])
    if isinstance(target, str):
        if table.columns is None:
            raise ValueError(f"target '{target}' names a column, but the file has no header "
                             "row; give the column's index instead")
        if target not in table.columns:
            raise ValueError(f"no column '{target}' (columns: {', '.join(table.columns)})")
        return table.columns.index(target)
    if not -width <= target < width:
        raise ValueError(f"target column index {target} is out of range for {width} columns")
    return target % width


def _column_name(table: Table, index: int) -> str:
    return repr(table.columns[index]) if table.columns else str(index)


def _float(table: Table, number: int, index: int, cell: str) -> float:
    try:
        value = float(cell)
    except ValueError:
        raise ValueError(f"row {number}, column {_column_name(table, index)}: "
                         f"{cell!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"row {number}, column {_column_name(table, index)}: "
                         f"{cell!r} is not a finite number")
    return value


def to_arrays(table: Table, target: str | int, task: Task = "auto"
              ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Features (float32), targets and the dataset's ``meta`` (without ``source``).

    ``task="auto"`` means classification when the target column is non-numeric or holds
    integers only, otherwise regression. Class labels are the sorted distinct target
    values, encoded as 0..K-1 (``meta["classes"]`` keeps the original labels).
    """
    index = target_index(table, target)
    features = [i for i in range(len(table.rows[0][1])) if i != index]
    x = np.array([[_float(table, n, i, cells[i]) for i in features] for n, cells in table.rows],
                 dtype=np.float32)
    raw = [cells[index] for _, cells in table.rows]
    numeric = all(_is_number(cell) for cell in raw)
    if task == "auto":
        task = "classification" if not numeric or all(float(c).is_integer() for c in raw) \
            else "regression"
    meta: dict[str, Any] = {"task": task, "n_features": len(features)}
    if table.columns is not None:
        meta["features"] = [table.columns[i] for i in features]
        meta["target"] = table.columns[index]
    if task == "regression":
        y = np.array([_float(table, n, index, cells[index]) for n, cells in table.rows],
                     dtype=np.float32)
        return x, y, meta
    labels: list[Any] = [int(float(c)) for c in raw] if numeric else raw
    classes = sorted(set(labels))
    code = {label: k for k, label in enumerate(classes)}
    y = np.array([code[label] for label in labels], dtype=np.int64)
    return x, y, {**meta, "n_classes": len(classes), "classes": classes}
