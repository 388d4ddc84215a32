"""What a new user trips over (issue 18), checked from the user's side: the CLI in a
subprocess, or the public Python API."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

FLOWOPT = [sys.executable, "-m", "flowopt"]


def flowopt(*args: str, cwd: Path | None = None, columns: int | None = None):
    env = None
    if columns is not None:
        import os

        env = {**os.environ, "COLUMNS": str(columns)}
    return subprocess.run([*FLOWOPT, *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300, env=env)


BRANIN_PIPELINE = """\
pipeline: branin
params: {x1: 0.0, x2: 0.0}
search:
  x1: {low: -5.0, high: 10.0}
  x2: {low: 0.0, high: 15.0}
plugins: [branin.py]
nodes:
  f: {kind: demo.branin_t, with: {x1: "${params.x1}", x2: "${params.x2}"}}
  tune:
    kind: tuner.random
    in: {objective: f.value}
    with: {mode: min, trials: 3, parallel: 1}
"""

BRANIN_PLUGIN = """\
{imports}import flowopt as fo


@fo.node("demo.branin_t", metrics=["value"])
def branin(x1: float = 0.0, x2: float = 0.0) -> float:
    return (x2 - 5.1 / 39.48 * x1**2 + 5 / 3.1416 * x1 - 6) ** 2 + 10 * (1 - 1 / 25.13) * math.cos(x1) + 10
"""


# -- 1. a kind's code is part of its identity -----------------------------------------------
def test_fixing_a_plugin_outside_its_function_reruns_what_it_made(tmp_path):
    """The README's story: a plugin missing `import math` fails every trial; after adding
    the import (a line outside the function) the same command succeeds, without --no-cache."""
    plugin = tmp_path / "branin.py"
    plugin.write_text(BRANIN_PLUGIN.format(imports=""))
    pipeline = tmp_path / "branin.yaml"
    pipeline.write_text(BRANIN_PIPELINE)
    store = str(tmp_path / "store")
    broken_keys = json.loads(flowopt("validate", str(pipeline), "--json").stdout)["nodes"]
    broken = flowopt("run", str(pipeline), "--store", store, "--json")
    assert broken.returncode == 1
    assert "math" in json.loads(broken.stdout)["error"]

    plugin.write_text(BRANIN_PLUGIN.format(imports="import math\n\n"))
    fixed_keys = json.loads(flowopt("validate", str(pipeline), "--json").stdout)["nodes"]
    assert fixed_keys["f"] != broken_keys["f"] and fixed_keys["tune"] != broken_keys["tune"]
    fixed = flowopt("run", str(pipeline), "--store", store, "--json")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    report = json.loads(fixed.stdout)
    assert report["status"] == "succeeded" and report["best"]["objective"] > 0.39


def test_a_plugins_cache_key_is_stable_while_its_source_is(tmp_path):
    plugin = tmp_path / "branin.py"
    plugin.write_text(BRANIN_PLUGIN.format(imports="import math\n"))
    pipeline = tmp_path / "branin.yaml"
    pipeline.write_text(BRANIN_PIPELINE)
    first = json.loads(flowopt("validate", str(pipeline), "--json").stdout)["nodes"]
    again = json.loads(flowopt("validate", str(pipeline), "--json").stdout)["nodes"]
    assert first == again


# -- 3. every path in a pipeline file is relative to that file --------------------------------
CSV_PIPELINE = """\
pipeline: mine
plugins: [nodes_here.py]
nodes:
  table: {kind: data.csv, with: {path: data/points.csv, target: label}}
  rows: {kind: demo.rows, in: {dataset: table}}
"""

ROWS_PLUGIN = """\
import flowopt as fo


@fo.node("demo.rows", metrics=["rows"])
def rows(dataset: fo.Dataset) -> float:
    return float(len(dataset))
"""


def _project(folder: Path) -> Path:
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "points.csv").write_text("a,b,label\n1,2,x\n3,4,y\n5,6,x\n")
    (folder / "nodes_here.py").write_text(ROWS_PLUGIN)
    pipeline = folder / "csv.yaml"
    pipeline.write_text(CSV_PIPELINE)
    return pipeline


def test_data_paths_and_plugins_resolve_against_the_pipeline_file_from_any_cwd(tmp_path):
    pipeline = _project(tmp_path / "mine")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    relative = Path("..") / "mine" / "csv.yaml"
    checked = flowopt("validate", str(relative), cwd=elsewhere)
    assert checked.returncode == 0, checked.stderr
    result = flowopt("run", str(relative), "--store", str(tmp_path / "store"), "--json",
                     cwd=elsewhere)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["metrics"]["rows.rows"] == 3.0
    from_home = flowopt("run", "csv.yaml", "--store", str(tmp_path / "store"), "--json",
                        cwd=pipeline.parent)
    assert json.loads(from_home.stdout)["nodes"]["table"]["status"] == "cached"


def test_a_missing_data_file_names_the_pipeline_line_and_where_it_looked(tmp_path):
    pipeline = _project(tmp_path / "mine")
    (tmp_path / "mine" / "data" / "points.csv").unlink()
    result = flowopt("validate", str(pipeline), cwd=tmp_path)
    assert result.returncode == 2
    assert "csv.yaml:4" in result.stderr and "nodes.table.with.path" in result.stderr


def test_moving_a_project_keeps_its_cache_keys(tmp_path):
    first = _project(tmp_path / "one")
    second = _project(tmp_path / "two" / "deeper")
    keys = [json.loads(flowopt("validate", str(p), "--json").stdout)["nodes"]
            for p in (first, second)]
    assert keys[0] == keys[1]


def test_the_python_api_resolves_paths_against_the_working_directory(tmp_path, monkeypatch):
    import flowopt as fo
    from flowopt.nodes import data

    _project(tmp_path / "mine")
    monkeypatch.chdir(tmp_path / "mine")
    with fo.Pipeline("api-paths") as p:
        data.csv(path="data/points.csv", target="label", node_id="table")
    run = p.run(store=str(tmp_path / "store"))
    assert run.status == "succeeded"
    assert len(run.value("table")) == 3


# -- 5. the README's store query works once other pipelines ran ------------------------------
QUERY_PLUGIN = """\
import flowopt as fo


@fo.node("demo.acc", metrics=["accuracy"])
def acc(lr: float = 0.003) -> float:
    return 1.0 - abs(lr - 0.02)


@fo.node("demo.echo", metrics=["accuracy"])
def echo(value: fo.Metric) -> float:
    return float(value)
"""

TUNED = """\
pipeline: tuned
params: {lr: 0.003}
search: {lr: {low: 0.001, high: 0.05, log: true}}
plugins: [query_nodes.py]
nodes:
  score: {kind: demo.acc, with: {lr: "${params.lr}"}}
  tune: {kind: tuner.random, in: {objective: score.accuracy}, with: {mode: max, trials: 3}}
  final: {kind: demo.echo, in: {value: tune.objective}}
"""

TWO_SCORES = """\
pipeline: two
params: {lr: 0.003}
plugins: [query_nodes.py]
nodes:
  float_score: {kind: demo.acc, with: {lr: "${params.lr}"}}
  quant_score: {kind: demo.acc, with: {lr: 0.004}}
"""


def _query_store(tmp_path):
    (tmp_path / "query_nodes.py").write_text(QUERY_PLUGIN)
    (tmp_path / "tuned.yaml").write_text(TUNED)
    (tmp_path / "two.yaml").write_text(TWO_SCORES)
    store = str(tmp_path / "store")
    tuned = json.loads(flowopt("run", "tuned.yaml", "--store", store, "--json", cwd=tmp_path).stdout)
    two = json.loads(flowopt("run", "two.yaml", "--store", store, "--json", cwd=tmp_path).stdout)
    return store, tuned, two


def test_the_readme_query_works_with_a_metric_that_several_pipelines_log(tmp_path):
    store, tuned, two = _query_store(tmp_path)
    result = flowopt("runs", "list", "--where", "metrics.accuracy > 0.9 and params.lr < 0.01",
                     "--order-by", "metrics.accuracy desc", "--store", store, "--json")
    assert result.returncode == 0, result.stderr
    assert [r["run_id"] for r in json.loads(result.stdout)] == [tuned["run_id"]]
    # The run of `two`, where two nodes log accuracy, is left out, and the note says how to
    # include it.
    assert "metrics.float_score.accuracy" in result.stderr
    named = flowopt("runs", "list", "--where", "metrics.float_score.accuracy > 0.9",
                    "--store", store, "--json")
    assert [r["run_id"] for r in json.loads(named.stdout)] == [two["run_id"]]
    narrowed = flowopt("runs", "list", "--pipeline", "tuned", "--where", "metrics.accuracy > 0",
                       "--store", store)
    assert narrowed.returncode == 0 and narrowed.stderr == ""


def test_an_ambiguous_metric_error_names_the_option_it_came_from(tmp_path):
    store, _, _ = _query_store(tmp_path)
    where = flowopt("runs", "list", "--pipeline", "two", "--where", "metrics.accuracy > 0",
                    "--store", store)
    assert where.returncode == 2 and where.stderr.startswith("error: malformed --where")
    order = flowopt("runs", "list", "--pipeline", "two", "--order-by", "metrics.accuracy desc",
                    "--store", store)
    assert order.returncode == 2 and order.stderr.startswith("error: malformed --order-by")


def test_a_tuned_runs_best_params_are_queryable_as_params_tuner_name(tmp_path):
    store, tuned, _ = _query_store(tmp_path)
    best_lr = tuned["best"]["params"]["lr"]
    listed = json.loads(flowopt("runs", "list", "--pipeline", "tuned", "--store", store,
                                "--json").stdout)
    assert listed[0]["params"] == {"lr": 0.003, "tune.lr": best_lr}
    below = flowopt("runs", "list", "--where", f"params.tune.lr <= {best_lr!r}", "--store", store,
                    "--json")
    above = flowopt("runs", "list", "--where", f"params.tune.lr > {best_lr!r}", "--store", store,
                    "--json")
    assert len(json.loads(below.stdout)) == 1 and json.loads(above.stdout) == []


def test_runs_list_says_when_it_stops_at_its_limit(tmp_path):
    store, _, _ = _query_store(tmp_path)
    cut = flowopt("runs", "list", "--limit", "1", "--store", store)
    assert cut.returncode == 0 and "--limit" in cut.stderr and "more match" in cut.stderr
    whole = flowopt("runs", "list", "--limit", "2", "--store", store)
    assert whole.returncode == 0 and whole.stderr == ""


# -- 6. the repository stands alone ----------------------------------------------------------
def test_no_file_in_the_repository_cites_notes_that_are_not_in_it():
    import re

    root = Path(__file__).resolve().parents[1]
    outside = re.compile(r"DESIGN\.md|STYLE\.md|NUMBA\.md|papers\.md|\.\./shared|shared notes",
                         re.IGNORECASE)
    cited = []
    for folder in ("flowopt", "nodes", "store", "docs", "pipelines", "examples", "benchmarks",
                   "tests"):
        for path in (root / folder).rglob("*"):
            if path.suffix in (".py", ".md", ".yaml", ".toml", ".txt") and path != Path(__file__).resolve():
                text = path.read_text(encoding="utf-8", errors="replace")
                cited += [f"{path.relative_to(root)}: {m.group()}" for m in outside.finditer(text)]
    for name in ("README.md", "setup.py", "pyproject.toml"):
        text = (root / name).read_text(encoding="utf-8")
        cited += [f"{name}: {m.group()}" for m in outside.finditer(text)]
    assert cited == []


# -- 6. smaller things -----------------------------------------------------------------------
def test_an_interrupted_node_shows_as_interrupted_not_failed(tmp_path, toy_plugin):
    import os
    import signal
    import time

    pipeline = tmp_path / "slow.yaml"
    pipeline.write_text(f"pipeline: slow\nplugins: [{toy_plugin}]\nnodes:\n  a: {{kind: toy.number}}\n"
                        "  s: {kind: toy.slow, in: {x: a}, with: {steps: 2000, delay: 0.01}}\n")
    store = tmp_path / "store"
    proc = subprocess.Popen([*FLOWOPT, "run", str(pipeline), "--store", str(store)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "COLUMNS": "100"})
    deadline = time.time() + 60
    while time.time() < deadline and not (store / "flowopt.db").exists():
        time.sleep(0.1)
    time.sleep(2.0)
    proc.send_signal(signal.SIGINT)
    _, progress = proc.communicate(timeout=60)
    assert proc.returncode == 130
    slow_line = next(line for line in progress.splitlines() if "toy.slow" in line)
    assert slow_line.split()[0] == "interrupted"
    run_id = json.loads(flowopt("runs", "list", "--store", str(store), "--json").stdout)[0]["run_id"]
    detail = json.loads(flowopt("runs", "show", run_id, "--store", str(store), "--json").stdout)
    assert {n["id"]: n["status"] for n in detail["nodes"]} == {"a": "succeeded", "s": "interrupted"}
    table = flowopt("runs", "show", run_id[:6], "--store", str(store)).stdout
    assert "interrupted" in next(line for line in table.splitlines() if "toy.slow" in line)


def test_version_is_the_packages_version():
    import re

    root = Path(__file__).resolve().parents[1]
    declared = re.search(r'^version = "([^"]+)"', (root / "pyproject.toml").read_text(),
                         re.MULTILINE).group(1)
    shown = flowopt("--version")
    assert shown.returncode == 0 and shown.stdout.strip() == f"flowopt {declared}"


def test_kinds_lists_full_names_with_field_types_and_defaults_at_80_columns():
    listing = flowopt("kinds", columns=80)
    assert listing.returncode == 0
    names = [line.split()[0] for line in listing.stdout.splitlines()
             if line and not line.startswith(" ")]
    assert "evaluator.steps_to_target" in names and "optimizer.stable_spam" in names
    assert not any("…" in name for name in names)
    assert "lr: float (> 0) = 0.0001" in " ".join(listing.stdout.split())


def test_kinds_shows_one_kind_with_ports_fields_defaults_and_docs():
    shown = flowopt("kinds", "optimizer.lion", columns=80)
    assert shown.returncode == 0
    text = shown.stdout
    for heading in ("inputs", "outputs", "with: fields", "doc"):
        assert heading in text.splitlines()
    lr = next(line for line in text.splitlines() if line.strip().startswith("lr "))
    assert "float (> 0)" in lr and "= 0.0001" in lr
    assert "Chen et al. 2023" in text
    data = json.loads(flowopt("kinds", "optimizer.lion", "--json").stdout)
    assert data["fields"]["lr"] == {"type": "float (> 0)", "required": False, "default": 0.0001}
    assert data["inputs"]["val"] == "dataset?" and "model" in data["outputs"]
    assert json.loads(flowopt("kinds", "data.csv", "--json").stdout)["fields"]["path"]["required"]
    unknown = flowopt("kinds", "optimizer.lio")
    assert unknown.returncode == 2 and "did you mean 'optimizer.lion'" in unknown.stderr


@pytest.fixture(scope="module")
def tuned_run(tmp_path_factory):
    """One tuned run through the Python API (in this process, so its plugin loads once)."""
    import flowopt as fo

    tmp_path = tmp_path_factory.mktemp("tuned")
    (tmp_path / "query_nodes.py").write_text(QUERY_PLUGIN)
    (tmp_path / "tuned.yaml").write_text(TUNED)
    pipeline = fo.Pipeline.from_yaml(tmp_path / "tuned.yaml")
    store = fo.Store(tmp_path / "store")
    return pipeline.run(store=store), store


def test_run_value_takes_the_dotted_names_a_pipeline_uses_and_lists_what_exists(tuned_run):
    from flowopt.errors import NoSuchValue

    run, _ = tuned_run
    best = run.best["objective"]
    assert run.value("tune.score") == best  # node score's default output, best trial
    assert run.value("tune", "score.accuracy") == best
    assert run.value("final.accuracy") == run.value("final") == best
    with pytest.raises(KeyError) as unknown_port:
        run.value("tune.scor")
    assert isinstance(unknown_port.value, NoSuchValue)
    assert "no output 'scor'" in str(unknown_port.value)
    assert "score.accuracy" in str(unknown_port.value) and "params" in str(unknown_port.value)
    with pytest.raises(NoSuchValue, match=r"no node 'tuen' \(nodes: .*tune"):
        run.value("tuen")


def test_store_run_outputs_takes_a_run_id_prefix_and_load_returns_the_value(tuned_run):
    from flowopt.errors import StoreError

    run, store = tuned_run
    outputs = store.run_outputs(run.run_id[:6])
    assert outputs == store.run_outputs(run.run_id)
    assert store.load(outputs["tune"]["score.accuracy"]) == run.best["objective"]
    assert store.load(outputs["tune"]["params"]) == run.best["params"]
    with pytest.raises(StoreError, match="no run with id 'zzzz'"):
        store.run_outputs("zzzz")
    with pytest.raises(StoreError, match="no run with id"):
        store.run_outputs("f" * 32)


def test_runs_list_show_and_compare_fit_80_columns_without_cutting_values(tmp_path):
    store, tuned, two = _query_store(tmp_path)
    outputs = {
        "list": flowopt("runs", "list", "--store", store, columns=80),
        "show": flowopt("runs", "show", tuned["run_id"][:8], "--store", store, columns=80),
        "compare": flowopt("runs", "compare", tuned["run_id"][:8], two["run_id"][:8],
                           "--store", store, columns=80),
    }
    for name, result in outputs.items():
        assert result.returncode == 0, (name, result.stderr)
        assert "…" not in result.stdout, name
        assert max(len(line) for line in result.stdout.splitlines()) <= 80, name
    listing = " ".join(outputs["list"].stdout.split())
    best_lr = tuned["best"]["params"]["lr"]
    assert f"tune.lr={best_lr:.4g}" in listing and "final.accuracy=" in listing
    assert tuned["run_id"][:8] in listing and two["run_id"][:8] in listing
    assert "float_score.accuracy" in outputs["compare"].stdout
    assert "quant_score.accuracy" in outputs["compare"].stdout


def test_graph_png_without_graphviz_says_so_in_one_line_and_exits_2(tmp_path):
    import os

    empty = tmp_path / "bin"
    empty.mkdir()
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run([*FLOWOPT, "graph", str(root / "pipelines" / "quickstart.yaml"),
                             "--format", "png", "-o", str(tmp_path / "g.png")],
                            capture_output=True, text=True, env={**os.environ, "PATH": str(empty)})
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "graphviz" in result.stderr
    assert "--format mermaid|dot" in result.stderr and not (tmp_path / "g.png").exists()


def test_a_query_that_matches_nothing_is_not_an_error_when_its_names_exist(tmp_path):
    store, _, _ = _query_store(tmp_path)
    empty = flowopt("runs", "list", "--where", "metrics.accuracy > 2", "--store", store)
    assert empty.returncode == 0 and "no runs" in empty.stdout
    typo = flowopt("runs", "list", "--where", "metrics.acuracy > 0.5", "--store", store)
    assert typo.returncode == 2 and "no run has a metric named 'acuracy'" in typo.stderr
