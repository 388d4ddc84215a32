"""``flowopt report RUN -o report.html``: one self-contained HTML page about a run.

Sections appear when the run has something to show:

* **Summary** — status, params and final metrics (the `runs show` record).
* **Learning curves** — every metric logged as a series (e.g. ``train.loss``,
  ``train.lr``, ``train.val_accuracy``), one panel per node.
* **Tuner traces** — per tuner node, each trial's objective by trial number and the
  best so far (Bayesian-optimization or random-search convergence).
* **Quantization** — accuracy against size for every evaluator fed by a quantizer
  (`quantization`).
* **Population** — each PBT member's hyperparameter schedule, score and copy tree
  (`flowopt.cli.pbt.draw`).

Figures are PNGs embedded as base64, so the file can be mailed or attached as it is.
Builders are plain functions over the store's frozen records, so tests call them
directly; matplotlib (the ``report`` extra) is imported only here, with the Agg backend.
"""
from __future__ import annotations

import base64
import html
import io
import math
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterable

Section = tuple[str, str]  # (title, HTML body)


def _figure_html(figure: Any) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return _png_html(buffer.getvalue())


def _png_html(png: bytes) -> str:
    return f'<img src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _table(header: Iterable[str], rows: Iterable[Iterable[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row) + "</tr>"
                   for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else str(value)


def summary_section(detail: Any) -> Section:
    run = detail.run
    rows = [("run", run.run_id), ("pipeline", run.pipeline), ("status", run.status),
            ("started", run.started_at), ("ended", run.ended_at)]
    parts = [_table(("", ""), rows)]
    if run.params:
        parts.append("<h3>params</h3>" + _table(("param", "value"), sorted(run.params.items())))
    if run.metrics:
        parts.append("<h3>final metrics</h3>"
                     + _table(("metric", "value"), sorted(run.metrics.items())))
    return "Summary", "".join(parts)


def series_of(store: Any, detail: Any) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """``node -> metric -> [(step, value)]`` for every metric of the run logged as a series."""
    curves: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for key in sorted(detail.run.metrics):
        points = [(p.step, p.value) for p in store.metrics(detail.run.run_id, key)
                  if p.step is not None]
        if len(points) > 1:
            node, _, metric = key.partition(".")
            curves.setdefault(node, {})[metric] = points
    return curves


def curves_section(curves: dict[str, dict[str, list[tuple[int, float]]]]) -> Section | None:
    if not curves:
        return None
    plt = _pyplot()
    parts = []
    for node, metrics in curves.items():
        figure, axes = plt.subplots(1, len(metrics), figsize=(4 * len(metrics), 3), squeeze=False)
        for axis, (metric, points) in zip(axes[0], metrics.items()):
            steps, values = zip(*points)
            axis.plot(steps, values)
            axis.set_title(f"{node}.{metric}")
            axis.set_xlabel("step")
            if metric in ("loss", "lr", "val_loss") and min(values) > 0:
                axis.set_yscale("log")
            axis.grid(True, alpha=0.3)
        parts.append(_figure_html(figure))
    return "Learning curves", "".join(parts)


def trials_section(detail: Any) -> Section | None:
    if not detail.trials:
        return None
    plt = _pyplot()
    parts = []
    by_node: dict[str, list[Any]] = {}
    for trial in detail.trials:
        by_node.setdefault(trial.node, []).append(trial)
    for node, trials in by_node.items():
        mode = (next((n.config for n in detail.nodes if n.id == node), None) or {}).get("mode", "max")
        better = max if mode == "max" else min
        figure, axis = plt.subplots(figsize=(7, 3.5))
        done = [(t.number, t.objective) for t in trials
                if t.objective is not None and math.isfinite(t.objective)]
        failed = [t.number for t in trials if t.status == "failed"]
        if done:
            numbers, objectives = zip(*done)
            axis.scatter(numbers, objectives, s=18, label="trial")
            best, running = [], None
            for value in objectives:
                running = value if running is None else better(running, value)
                best.append(running)
            axis.step(numbers, best, where="post", color="C3", label=f"best so far ({mode})")
        for number in failed:
            axis.axvline(number, color="0.8", linewidth=0.8)
        axis.set_xlabel("trial")
        axis.set_ylabel("objective")
        axis.set_title(f"{node}: {len(done)} finished, {len(failed)} failed")
        axis.legend(loc="best", fontsize=8)
        axis.grid(True, alpha=0.3)
        rows = [(t.number, t.status, t.objective, _fmt_params(t.params), t.seconds)
                for t in trials]
        parts.append(_figure_html(figure)
                     + _table(("trial", "status", "objective", "params", "seconds"), rows))
    return "Tuner traces", "".join(parts)


def _fmt_params(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_fmt(v)}" for k, v in sorted(params.items()))


def quantization_section(detail: Any) -> Section | None:
    if not any(n.kind.startswith("quantizer.") for n in detail.nodes):
        return None
    from . import quantization as report

    rows = report.points(detail.to_json())
    if not rows:
        return None
    with tempfile.TemporaryDirectory() as folder:
        png = report.plot(rows, Path(folder) / "size.png").read_bytes()
    return "Quantization", _png_html(png) + f"<pre>{html.escape(report.table(rows))}</pre>"


def population_section(store: Any, detail: Any) -> Section | None:
    if not any(n.kind == "tuner.pbt" for n in detail.nodes):
        return None
    from flowopt.store.population import read_events, tuner_nodes

    from .pbt import draw

    parts = []
    for node in tuner_nodes(store.engine, detail.run.run_id):
        events = read_events(store.engine, detail.run.run_id, node)
        if events:
            parts.append(_png_html(draw(events, f"{node}: population")))
    return ("Population", "".join(parts)) if parts else None


STYLE = ("body{font-family:system-ui,sans-serif;margin:2em;max-width:1100px}"
         "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;"
         "padding:2px 8px;text-align:left;font-size:13px}img{max-width:100%}")


def build_report(store: Any, run_id: str) -> str:
    """The HTML page for run `run_id` (a unique prefix is enough)."""
    detail = store.run(run_id)
    builders: list[Callable[[], Section | None]] = [
        lambda: summary_section(detail),
        lambda: curves_section(series_of(store, detail)),
        lambda: trials_section(detail),
        lambda: quantization_section(detail),
        lambda: population_section(store, detail),
    ]
    sections = [s for s in (build() for build in builders) if s is not None]
    title = f"flowopt report — {detail.run.pipeline} / {detail.run.run_id[:12]}"
    body = "".join(f"<h2>{html.escape(name)}</h2>{content}" for name, content in sections)
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
            f"</title><style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
            f"{body}</body></html>")


def write_report(store: Any, run_id: str, output: Path) -> Path:
    """Write the report atomically (a partial file never replaces a good one)."""
    text = build_report(store, run_id)
    output = Path(output)
    temporary = output.with_name(output.name + ".partial")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(output)
    return output
