"""Data kinds: ``data.digits``, ``data.synthetic``, ``data.csv`` and ``data.split``.

Each returns a `Dataset` of torch tensors: ``x`` float32 of shape (rows, features), ``y``
int64 class indices (classification) or float32 values (regression), and ``meta`` with
``task``, ``n_features``, ``n_classes`` (classification) and, for files, ``source``
(file name and sha256 of its bytes).
"""
from __future__ import annotations

import importlib.resources
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, FilePath

from flowopt.artifacts import Dataset
from flowopt.context import Context
from flowopt.registry import node

from . import facts, tabular

DIGITS_RESOURCE = "resources/digits.csv.gz"


def _dataset(x: Any, y: Any, meta: dict[str, Any]) -> Dataset:
    import torch

    return Dataset(x=torch.from_numpy(x), y=torch.from_numpy(y), meta=meta)


@node("data.digits", deterministic=True, describe=facts.digits)
def digits() -> Dataset:
    """The 8×8 handwritten digits (Alpaydin & Kaynak 1998, UCI): 1,797 images, 10 classes.

    Outputs: ``dataset``, with ``x`` the 64 pixel intensities scaled from 0..16 to [0, 1]
    and ``y`` the digit 0..9. No ``with:`` fields. The file ships with the package
    (``resources/digits.csv.gz``, scikit-learn's copy, CC BY 4.0); its sha256 is recorded
    in ``meta["source"]``.
    """
    payload = (importlib.resources.files("flowopt.nodes") / DIGITS_RESOURCE).read_bytes()
    table = tabular.parse_table(payload, header=False, gzipped=True)
    x, y, meta = tabular.to_arrays(table, target=-1, task="classification")
    x /= 16.0
    del meta["classes"]  # the labels are the digits 0..9 themselves
    return _dataset(x, y, {**meta, "source": {"file": "digits.csv.gz",
                                              "sha256": tabular.sha256(payload)}})


@node("data.synthetic", describe=facts.synthetic)
def synthetic(ctx: Context,
              task: Literal["classification", "regression"] = "classification",
              n_samples: Annotated[int, Field(gt=0)] = 1000,
              n_features: Annotated[int, Field(gt=0)] = 20,
              n_classes: Annotated[int, Field(ge=2)] = 2,
              noise: Annotated[float, Field(ge=0)] = 1.0) -> Dataset:
    """A seeded random dataset; everything is drawn from the node's seed.

    Outputs: ``dataset``. ``with:`` fields (defaults): ``task`` (classification),
    ``n_samples`` (1000), ``n_features`` (20), ``n_classes`` (2; classification only),
    ``noise`` (1.0).

    * classification — Gaussian blobs: class centres drawn from N(0, 2²) per feature,
      each sample its class centre plus N(0, noise²) per feature; classes are balanced
      (sizes differ by at most one) and shuffled.
    * regression — ``x`` ~ N(0, 1), ``y = x·w + ε`` with ``w`` ~ N(0, 1) and
      ε ~ N(0, noise²).
    """
    import torch

    generator = ctx.torch_generator()
    shape = (n_samples, n_features)
    meta: dict[str, Any] = {"task": task, "n_features": n_features}
    if task == "regression":
        x = torch.randn(shape, generator=generator)
        w = torch.randn(n_features, generator=generator)
        y = x @ w + noise * torch.randn(n_samples, generator=generator)
        return Dataset(x=x, y=y, meta=meta)
    centres = 2.0 * torch.randn((n_classes, n_features), generator=generator)
    y = torch.arange(n_samples) % n_classes
    y = y[torch.randperm(n_samples, generator=generator)]
    x = centres[y] + noise * torch.randn(shape, generator=generator)
    return Dataset(x=x, y=y, meta={**meta, "n_classes": n_classes})


@node("data.csv", deterministic=True, describe=facts.csv)
def csv(path: FilePath, target: str | int = -1, header: bool | Literal["auto"] = "auto",
        delimiter: Annotated[str, Field(min_length=1, max_length=1)] = ",",
        task: tabular.Task = "auto") -> Dataset:
    """A dataset read from a CSV file (``.csv.gz`` is decompressed).

    Outputs: ``dataset``. ``with:`` fields (defaults):

    * ``path`` (required) — in a pipeline file, relative to that file's folder; in a
      pipeline built in Python, relative to the working directory;
    * ``target`` (-1: the last column) — a column name from the header row, or an index
      (negative counts from the end); every other column is a numeric feature;
    * ``header`` (auto: the first row is a header if any cell is not a number), true, false;
    * ``delimiter`` (``,``);
    * ``task`` (auto: classification if the target is non-numeric or integer-valued,
      else regression). Class labels are the sorted distinct target values, encoded
      0..K-1; ``meta["classes"]`` keeps the originals.

    ``meta["source"]`` records the file's absolute path and sha256. ``path`` is a
    `FilePath`: a missing file is an invalid pipeline (exit 2, before anything runs), and
    the engine puts the file's content hash in the cache key, so editing the file
    invalidates the cache.
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"data.csv: no file '{path}' (looked for {file.resolve()})")
    payload = file.read_bytes()
    try:
        table = tabular.parse_table(payload, delimiter=delimiter, gzipped=file.suffix == ".gz",
                                    header=None if header == "auto" else bool(header))
        x, y, meta = tabular.to_arrays(table, target=target, task=task)
    except ValueError as exc:
        raise ValueError(f"data.csv: {path}: {exc}") from exc
    return _dataset(x, y, {**meta, "source": {"file": str(file.resolve()),
                                              "sha256": tabular.sha256(payload)}})


@node("data.split", outputs={"train": Dataset, "val": Dataset}, describe=facts.split)
def split(dataset: Dataset, ctx: Context,
          val_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.2) -> dict[str, Dataset]:
    """A seeded train/validation split, stratified by class for classification.

    Inputs: ``dataset``. Outputs: ``train``, ``val``. ``with:`` fields (defaults):
    ``val_fraction`` (0.2, strictly between 0 and 1).

    For classification each class is shuffled on its own and round(fraction × class size)
    of its rows go to ``val``, so both parts keep the class proportions; otherwise all
    rows are shuffled together. Rows keep their original order within each part.
    """
    import torch

    generator = ctx.torch_generator()
    if dataset.meta.get("task") == "classification":
        groups = [torch.nonzero(dataset.y == label).flatten() for label in torch.unique(dataset.y)]
    else:
        groups = [torch.arange(len(dataset))]
    val_parts, train_parts = [], []
    for rows in groups:
        rows = rows[torch.randperm(len(rows), generator=generator)]
        n_val = round(val_fraction * len(rows))
        val_parts.append(rows[:n_val])
        train_parts.append(rows[n_val:])
    parts = {"train": torch.cat(train_parts).sort().values,
             "val": torch.cat(val_parts).sort().values}
    for name, rows in parts.items():
        if len(rows) == 0:
            raise ValueError(f"data.split: val_fraction={val_fraction} leaves '{name}' empty "
                             f"({len(dataset)} rows)")
    return {name: Dataset(x=dataset.x[rows], y=dataset.y[rows],
                          meta={**dataset.meta, "split": name, "rows": len(rows)})
            for name, rows in parts.items()}
