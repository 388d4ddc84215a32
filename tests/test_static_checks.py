"""Mismatched inputs that are known before anything runs are refused at compile time:
exit code 2, one line with file:line, nothing written to the store (nodes/facts.py)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from flowopt.errors import GraphError
from flowopt.graph import compile_pipeline
from flowopt.spec import load_spec

HEAD = """pipeline: checks
nodes:
  digits: {kind: data.digits}
  split:  {kind: data.split, in: {dataset: digits}}
  net:    {kind: model.mlp, in: {data: split.train}}
"""


def _compile(tmp_path, body: str):
    path = tmp_path / "p.yaml"
    path.write_text(HEAD + body)
    return path, lambda: compile_pipeline(load_spec(path))


def test_a_regression_loss_on_a_classifier_is_refused_at_its_in_line(tmp_path):
    path, compile_ = _compile(tmp_path, """  mse:    {kind: loss.mse}
  train:  {kind: optimizer.adam, in: {model: net, data: split.train, loss: mse}}
""")
    with pytest.raises(GraphError) as error:
        compile_()
    message = str(error.value)
    assert f"{path}:7, key 'nodes.train.in'" in message and "node 'train'" in message
    assert "regression loss" in message and "classification" in message


def test_the_cli_exits_2_with_one_line_and_creates_no_store(tmp_path):
    path, _ = _compile(tmp_path, """  mse:    {kind: loss.mse}
  train:  {kind: optimizer.adam8bit, in: {model: net, data: split.train, loss: mse}}
""")
    store = tmp_path / "store"
    done = subprocess.run([sys.executable, "-m", "flowopt", "run", str(path), "--store", str(store)],
                          capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.startswith("error:") and "Traceback" not in done.stderr
    assert not store.exists()


def test_a_calibration_set_of_the_wrong_width_is_refused_before_anything_runs(tmp_path):
    _, compile_ = _compile(tmp_path, """  xent:   {kind: loss.cross_entropy}
  train:  {kind: optimizer.adam, in: {model: net, data: split.train, loss: xent}}
  other:  {kind: data.synthetic, with: {n_features: 5}}
  quant:  {kind: quantizer.uniform, in: {model: train, calibration: other}}
""")
    with pytest.raises(GraphError, match="calibration dataset has rows of 5 features, but the "
                                         "model takes 64 inputs"):
        compile_()


def test_scoring_a_regression_model_as_a_classifier_is_refused(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("""pipeline: reg
nodes:
  data:  {kind: data.synthetic, with: {task: regression, n_features: 4}}
  net:   {kind: model.mlp, in: {data: data}}
  mse:   {kind: loss.mse}
  train: {kind: optimizer.sgd, in: {model: net, data: data, loss: mse}}
  score: {kind: evaluator.classification, in: {model: train, data: data}}
""")
    with pytest.raises(GraphError, match="regression model"):
        compile_pipeline(load_spec(path))


def test_facts_flow_through_split_and_training_so_matching_pipelines_compile(tmp_path):
    _, compile_ = _compile(tmp_path, """  xent:   {kind: loss.focal}
  train:  {kind: optimizer.lion, in: {model: net, data: split.train, loss: xent, val: split.val}}
  quant:  {kind: quantizer.uniform, in: {model: train, calibration: split.train}}
  score:  {kind: evaluator.classification, in: {model: quant, data: split.val}}
""")
    assert len(compile_()) == 7


def test_unknown_facts_refuse_nothing(tmp_path):
    csv = tmp_path / "t.csv"
    csv.write_text("a,b,y\n0.5,1.0,2.5\n1.5,2.0,3.5\n")
    path = tmp_path / "p.yaml"
    path.write_text(f"""pipeline: csv
nodes:
  data:  {{kind: data.csv, with: {{path: {csv}}}}}
  net:   {{kind: model.mlp, in: {{data: data}}}}
  mse:   {{kind: loss.mse}}
  train: {{kind: optimizer.sgd, in: {{model: net, data: data, loss: mse}}}}
""")
    assert len(compile_pipeline(load_spec(path))) == 4  # task: auto is only known at run time
