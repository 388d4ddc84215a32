"""Draw a compiled graph as mermaid or graphviz dot text (png via the `dot` program).

PNG is left to graphviz rather than a bundled renderer: laying out a DAG well is
graphviz's job, and mermaid text renders on GitHub and in most editors as it is.
Without `dot` on PATH, ``--format png`` is a usage error (exit 2) that says so.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

from flowopt.errors import FlowoptError


def to_mermaid(graph: Any) -> str:
    lines = ["flowchart LR"]
    for node in graph:
        lines.append(f'  {node.id}["{node.id}<br/><small>{node.kind.name}</small>"]')
    for node in graph:
        for port, binding in node.inputs.items():
            lines.append(f"  {binding.node} -->|{binding.port} → {port}| {node.id}")
    return "\n".join(lines)


def to_dot(graph: Any) -> str:
    lines = [f'digraph "{graph.name}" {{', "  rankdir=LR; node [shape=box, style=rounded];"]
    for node in graph:
        lines.append(f'  {node.id} [label="{node.id}\\n{node.kind.name}"];')
    for node in graph:
        for port, binding in node.inputs.items():
            lines.append(f'  {binding.node} -> {node.id} [label="{binding.port} → {port}"];')
    lines.append("}")
    return "\n".join(lines)


def render_graph(graph: Any, fmt: str, output: Path | None) -> str | None:
    """Return the text (or write it to `output`); png needs graphviz's `dot` on PATH."""
    if fmt == "png":
        dot = shutil.which("dot")
        if dot is None:  # one line: what is missing, how to get it, what works without it
            raise FlowoptError("--format png needs graphviz's `dot` program, which is not on "
                               "PATH: install graphviz (e.g. apt install graphviz) or use "
                               "--format mermaid|dot")
        if output is None:
            raise FlowoptError("--format png needs -o FILE.png")
        subprocess.run([dot, "-Tpng", "-o", str(output)], input=to_dot(graph).encode(), check=True)
        return None
    text = to_mermaid(graph) if fmt == "mermaid" else to_dot(graph)
    if output is not None:
        output.write_text(text + "\n", encoding="utf-8")
        return None
    return text
