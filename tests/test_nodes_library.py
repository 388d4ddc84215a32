"""Contract of the built-in node library as a package: registration, docs, light import."""
from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from flowopt.errors import GraphError
from flowopt.graph import compile_pipeline
from flowopt.registry import REGISTRY
from flowopt.spec import PipelineSpec

REPO = Path(__file__).resolve().parents[1]
BUILT_IN = ["data.csv", "data.digits", "data.split", "data.synthetic",
            "evaluator.classification", "loss.cross_entropy", "loss.mse", "model.mlp",
            "optimizer.adam", "optimizer.adamw", "optimizer.sgd"]


def test_the_entry_point_registers_every_built_in_kind():
    assert [e.value for e in entry_points(group="flowopt.nodes") if e.name == "builtins"] == \
        ["flowopt.nodes"]
    assert set(BUILT_IN) <= set(REGISTRY.names())


@pytest.mark.parametrize("name", BUILT_IN)
def test_each_kind_documents_its_ports_and_with_fields(name):
    kind = REGISTRY.get(name)
    assert kind.doc, f"{name} has no docstring"
    for field in kind.config.model_fields:
        assert f"``{field}``" in kind.doc, f"{name}: with: field '{field}' undocumented"
    for port in (*kind.inputs, *kind.outputs):
        assert f"``{port.name}``" in kind.doc, f"{name}: port '{port.name}' undocumented"


def run_python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True)


def test_importing_the_kinds_does_not_import_torch(tmp_path):
    result = run_python("import sys, flowopt.nodes; print('torch' in sys.modules)", tmp_path)
    assert result.stdout.strip() == "False", result.stderr


def test_the_library_refuses_to_load_as_a_top_level_package():
    # From the repository root `import nodes` would find the folder and register every
    # kind a second time under another module name.
    result = run_python("import nodes", REPO)
    assert "import this package as flowopt.nodes" in result.stderr


@pytest.mark.parametrize("node, message", [
    ({"kind": "data.split", "in": {"dataset": "d"}, "with": {"val_fraction": 1.0}}, "less than 1"),
    ({"kind": "model.mlp", "in": {"data": "d"}, "with": {"activation": "sigmoid"}}, "relu"),
    ({"kind": "model.mlp", "in": {"data": "d"}, "with": {"hidden": [0]}}, "greater than 0"),
    ({"kind": "optimizer.adam", "in": {"model": "m", "data": "d", "loss": "l"},
      "with": {"betas": [0.9, 1.5]}}, "less than 1"),
    ({"kind": "data.csv", "with": {}}, "missing required field 'path'"),
    ({"kind": "data.csv", "with": {"path": "no/such/file.csv"}}, "does not point to a file"),
])
def test_bad_with_values_are_refused_when_the_pipeline_compiles(node, message):
    valid = {"d": {"kind": "data.digits"}, "l": {"kind": "loss.cross_entropy"},
             "m": {"kind": "model.mlp", "in": {"data": "d"}}}
    spec = PipelineSpec.model_validate({"pipeline": "t", "nodes": {**valid, "x": node}})
    with pytest.raises(GraphError, match=message):
        compile_pipeline(spec)
