"""``flowopt report RUN -o report.html``: one self-contained HTML page about a run.

It draws the same figures as `flowopt ui` from the same code: `flowopt.ui.data` gathers
the run, `flowopt.ui.figures` describes each plot, and the page inlines the UI's
``plot.js`` and stylesheet, so it works offline, can be mailed as one file, and its
plots answer the mouse (hover for values, click a legend entry to hide a series).
Sections appear when the run has something to show:

* **Summary** — status, params and final metrics; a cached run says which run each
  reused result came from.
* **Learning curves** — every metric logged with steps, the reused ones included;
  per-layer numbers (``layer_*``, e.g. a quantizer's bits per layer) are bars.
* **Tuner** — per tuner node: objective over trials with the best so far, parallel
  coordinates, objective against each param, the trials' learning curves against
  steps (with early-stopping rungs); with several objectives, the Pareto front (a 2-D
  scatter of the first two, labelled by metric port and direction, the front joined; a
  parallel-coordinates plot of the objectives for three or more), the hypervolume over
  trials and a table of the Pareto trials' objectives and params.
* **Quantization** — accuracy against size for every evaluator fed by a quantizer.
* **Population** — each PBT member's hyperparameter schedule, score and copy tree.

Nothing from the store reaches the page unescaped: text goes through `html.escape`,
figure data is JSON with ``<`` written as ``\\u003c`` inside its script element.
"""
from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any, Iterable

Section = tuple[str, str]  # (title, HTML body)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return "" if value is None else str(value)


def _table(header: Iterable[str], rows: Iterable[Iterable[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in row) + "</tr>"
                   for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def figures_html(figures: Iterable[dict[str, Any]]) -> str:
    """Figure descriptions as inert JSON script elements; ``plot.js`` draws them."""
    parts = []
    for figure in figures:
        text = json.dumps(figure, allow_nan=False, default=str).replace("<", "\\u003c")
        parts.append(f'<script type="application/json" class="figure-data">{text}</script>')
    return '<div class="figures">' + "".join(parts) + "</div>" if parts else ""


def summary_section(detail: Any) -> Section:
    run = detail.run
    rows = [("run", run.run_id), ("pipeline", run.pipeline), ("status", run.status),
            ("started", run.started_at), ("ended", run.ended_at)]
    parts = [_table(("", ""), rows)]
    reused = [n for n in detail.nodes if getattr(n, "reused_from", None)]
    if reused:
        sources = sorted({n.reused_from.run_id for n in reused})
        parts.append(f'<p class="note">{len(reused)} of {len(detail.nodes)} nodes reused results '
                     f'of earlier runs: {html.escape(", ".join(s[:12] for s in sources))}</p>')
    if run.params:
        parts.append("<h3>params</h3>" + _table(("param", "value"), sorted(run.params.items())))
    if run.metrics:
        origin = getattr(detail, "reused_metrics", {}) or {}
        parts.append("<h3>final metrics</h3>" + _table(
            ("metric", "value", "from run"),
            [(k, v, origin[k][:12] if k in origin else "this run")
             for k, v in sorted(run.metrics.items())]))
    return "Summary", "".join(parts)


def curves_section(store: Any, detail: Any) -> Section | None:
    from flowopt.ui import figures

    found = figures.series_figures(store.series(detail.run.run_id))
    return ("Learning curves", figures_html(found)) if found else None


def tuner_sections(store: Any, detail: Any) -> list[Section]:
    from flowopt.ui.data import tuner_view

    sections = []
    for node in sorted({t.node for t in detail.trials}):
        view = tuner_view(store, detail.run.run_id, node)
        steps = any(t.get("steps") is not None for t in view["trials"])
        rows = [(t["number"], t["status"],
                 t["objective"] if "objective" in t else ", ".join(map(_fmt, t["objectives"])),
                 ", ".join(f"{k}={_fmt(v)}" for k, v in sorted(t["params"].items())),
                 *([t.get("steps")] if steps else []), t["seconds"],
                 (t.get("trial_run_id") or "")[:12]) for t in view["trials"]]
        origin = (f'<p class="note">trials of run {html.escape(view["from_run"][:12])}, '
                  "reused by this cached run</p>") if view.get("from_run") else ""
        front = ""
        if view.get("pareto"):
            by_number = {t["number"]: t for t in view["trials"]}
            front = "<h3>Pareto front</h3>" + _table(
                ("trial", *view["objectives"], "params"),
                [(n, *by_number[n]["objectives"],
                  ", ".join(f"{k}={_fmt(v)}" for k, v in sorted(by_number[n]["params"].items())))
                 for n in view["pareto"]])
        sections.append((f"Tuner {node}", origin + figures_html(view["figures"]) + front + _table(
            ("trial", "status", "objective", "params", *(["steps"] if steps else []), "seconds",
             "run"), rows)))
    return sections


def quantization_and_population(store: Any, detail: Any) -> list[Section]:
    from flowopt.ui.data import quantization_and_population as extra

    from .quantization import points as quantization_rows

    found = extra(store, detail)
    quantized = [f for f in found if f["id"] == "quantization"]
    population = [f for f in found if f["id"].startswith("pbt:")]
    sections = []
    if quantized:
        rows = quantization_rows(detail.to_json())
        sections.append(("Quantization", figures_html(quantized) + _table(
            ("quantizer", "kind", "evaluator", "size ratio", "accuracy"),
            [(r["quantizer"], r["kind"], r["evaluator"], r["size_ratio"], r["accuracy"])
             for r in rows])))
    if population:
        sections.append(("Population", figures_html(population)))
    return sections


def build_report(store: Any, run_id: str) -> str:
    """The HTML page for run `run_id` (a unique prefix is enough)."""
    from flowopt.ui import static_text

    detail = store.run(run_id)
    sections = [summary_section(detail)]
    sections += [s for s in [curves_section(store, detail)] if s]
    sections += tuner_sections(store, detail)
    sections += quantization_and_population(store, detail)
    title = f"flowopt report — {detail.run.pipeline} / {detail.run.run_id[:12]}"
    body = "".join(f"<h2>{html.escape(name)}</h2>{content}" for name, content in sections)
    script = static_text("plot.js").replace("</", "<\\/")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
            f"</title><style>{static_text('style.css')}</style></head><body><main>"
            f"<h1>{html.escape(title)}</h1>{body}</main><script>{script}\n"
            "window.FlowoptPlot.renderAll(document);</script></body></html>")


def write_report(store: Any, run_id: str, output: Path) -> Path:
    """Write the report atomically (a partial file never replaces a good one)."""
    text = build_report(store, run_id)
    output = Path(output)
    temporary = output.with_name(output.name + ".partial")
    temporary.write_text(text, encoding="utf-8")
    temporary.replace(output)
    return output
