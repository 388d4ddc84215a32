"""Accuracy against size for a run's quantized models: the points, a table, and a plot
(the "Quantization" section of ``flowopt report``; it reads store data only).

Works on the run shape of ``flowopt runs show RUN --json`` (docs/cli.md): each
evaluator whose ``model`` input was produced by a quantizer's ``model`` output (found
through the artifact ids, not node names) gives one point ``(bytes, accuracy)``; an
evaluator fed by a plain trained model gives the float reference. matplotlib (the
``report`` extra) is imported only when a plot is drawn, with the Agg backend.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any


def points(run: dict[str, Any]) -> list[dict[str, Any]]:
    """``[{quantizer, kind, evaluator, bytes, size_ratio, bits_per_parameter, accuracy}]``;
    the float reference has ``kind`` ``float`` and ``size_ratio`` 1."""
    metrics = run["metrics"]
    nodes = {node["id"]: node for node in run["nodes"]}
    produced = {a["id"]: (a["node"], a["port"]) for a in run["artifacts"]}
    rows = []
    for node in run["nodes"]:
        if not node["kind"].startswith("evaluator.") or f"{node['id']}.accuracy" not in metrics:
            continue
        for artifact in node["inputs"]:
            source, port = produced.get(artifact, (None, None))
            if source is None or port != "model" or source not in nodes:
                continue
            kind = nodes[source]["kind"]
            if kind.startswith("quantizer."):
                rows.append({"quantizer": source, "kind": kind, "evaluator": node["id"],
                             "bytes": metrics.get(f"{source}.bytes"),
                             "size_ratio": metrics.get(f"{source}.size_ratio"),
                             "bits_per_parameter": metrics.get(f"{source}.bits_per_parameter"),
                             "accuracy": metrics[f"{node['id']}.accuracy"]})
            else:
                rows.append({"quantizer": source, "kind": "float", "evaluator": node["id"],
                             "bytes": None, "size_ratio": 1.0, "bits_per_parameter": 32.0,
                             "accuracy": metrics[f"{node['id']}.accuracy"]})
    # a quantizer that logged no size_ratio sorts after the float model
    return sorted(rows, key=lambda row: row["size_ratio"] if row["size_ratio"] is not None else 2.0)


def table(rows: list[dict[str, Any]]) -> str:
    """A plain-text table, smallest model first."""
    lines = [f"{'quantizer':<16}{'kind':<22}{'size':>8}{'bits/param':>12}{'accuracy':>10}"]
    for row in rows:
        lines.append(f"{row['quantizer']:<16}{row['kind']:<22}{row['size_ratio']:>8.3f}"
                     f"{row['bits_per_parameter']:>12.2f}{row['accuracy']:>10.4f}")
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], path: str | Path) -> Path:
    """Draw accuracy against size (fraction of the fp32 model) to `path` (PNG, SVG, ...)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4))
    for row in rows:
        marker = "*" if row["kind"] == "float" else "o"
        axes.scatter(row["size_ratio"], row["accuracy"], marker=marker, s=60)
        axes.annotate(row["quantizer"], (row["size_ratio"], row["accuracy"]),
                      textcoords="offset points", xytext=(4, 4), fontsize=8)
    axes.set_xscale("log")
    axes.set_xlabel("size on disk (fraction of the fp32 model)")
    axes.set_ylabel("accuracy")
    axes.set_title("accuracy vs size")
    axes.grid(True, alpha=0.3)
    figure.tight_layout()
    path = Path(path)
    figure.savefig(path)
    plt.close(figure)
    return path
