"""The engine's import graph, read from the source: no cycle, no import of the node library.

Every module under ``flowopt/`` is parsed (not imported) and each import — at module
level or inside a function, relative or absolute — becomes an edge to the ``flowopt``
module it names. Imports under ``if TYPE_CHECKING:`` are left out: they never run.
``flowopt.nodes`` and ``flowopt.store`` live in ``nodes/`` and ``store/``; only edges
into them are checked here (the node library must never be imported by the engine).
"""
from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

ROOT = Path(__file__).resolve().parents[1] / "flowopt"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                for inner in ast.walk(child):
                    if hasattr(inner, "lineno"):
                        lines.add(inner.lineno)
    return lines


def imports_of(path: Path) -> set[str]:
    """The ``flowopt`` modules a file imports (absolute names)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _type_checking_lines(tree)
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return {m for m in found if m == "flowopt" or m.startswith("flowopt.")}


def import_graph() -> nx.DiGraph:
    """Edges between the modules of ``flowopt/`` (the CLI included)."""
    modules = {_module_name(p): p for p in ROOT.rglob("*.py")}
    graph = nx.DiGraph()
    graph.add_nodes_from(modules)
    for name, path in modules.items():
        for target in imports_of(path):
            # `from pkg import module` names the module; `from module import name` the module
            while target not in modules and "." in target and not target.startswith(
                    ("flowopt.nodes", "flowopt.store")):
                target = target.rpartition(".")[0]
            if target != name and target != "flowopt":
                graph.add_edge(name, target)
    return graph


def test_the_parser_sees_relative_and_function_local_imports():
    imports = imports_of(ROOT / "runner.py")
    assert "flowopt.scheduler" in imports  # `from .scheduler import ...`
    assert "flowopt.store" in imports  # inside a function


def test_nothing_in_the_engine_imports_the_node_library():
    offenders = sorted(f"{a} -> {b}" for a, b in import_graph().edges
                       if b == "flowopt.nodes" or b.startswith("flowopt.nodes."))
    assert offenders == []


def test_the_engine_has_no_import_cycle():
    graph = import_graph()
    graph.remove_nodes_from([n for n in list(graph) if n.startswith(("flowopt.nodes",
                                                                      "flowopt.store"))])
    cycles = sorted(" -> ".join(c) for c in nx.simple_cycles(graph))
    assert cycles == []


def test_the_compiler_and_the_scheduler_do_not_import_tuning():
    graph = import_graph()
    for module in ("flowopt.graph", "flowopt.scheduler", "flowopt.registry"):
        reached = nx.descendants(graph, module)
        assert not any(m.startswith("flowopt.tuning") for m in reached), module
