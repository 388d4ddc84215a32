"""The command line, end to end in subprocesses (as a user runs it)."""
from __future__ import annotations

import json
import subprocess
import sys
import time

FLOWOPT = [sys.executable, "-m", "flowopt"]


def run(*args, cwd=None):
    return subprocess.run([*FLOWOPT, *args], capture_output=True, text=True, cwd=cwd, timeout=300)


def test_help_is_fast_and_imports_neither_torch_nor_numba():
    code = ("import sys, time; t=time.perf_counter(); from flowopt.cli.app import app\n"
            "try:\n    app(['--help'])\nexcept SystemExit: pass\n"
            "print('HEAVY' if {'torch','numba'} & set(sys.modules) else 'LIGHT', time.perf_counter()-t)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
    assert "LIGHT" in out
    assert "runs" in out and "validate" in out


def test_run_json_then_list_and_show(write_pipeline, store_dir):
    path = write_pipeline("pipeline: cli\nplugins: [TOY_PLUGIN]\nparams: {v: 2.0}\nnodes:\n"
                          "  a: {kind: toy.number, with: {value: '${params.v}'}}\n"
                          "  s: {kind: toy.add, in: {a: a}}\n")
    first = run("run", str(path), "--store", str(store_dir), "--json")
    assert first.returncode == 0, first.stderr
    report = json.loads(first.stdout)
    assert report["status"] == "succeeded" and report["metrics"]["s.total"] == 2.0
    assert set(report) >= {"run_id", "pipeline", "status", "store", "seconds", "nodes", "metrics"}
    second = json.loads(run("run", str(path), "--store", str(store_dir), "--json",
                            "-s", "params.v=3").stdout)
    assert second["metrics"]["s.total"] == 3.0
    assert second["nodes"]["a"]["status"] == "succeeded"
    listed = json.loads(run("runs", "list", "--store", str(store_dir), "--json").stdout)
    assert [r["run_id"] for r in listed] == [second["run_id"], report["run_id"]]
    assert listed[0]["params"] == {"v": 3.0}
    shown = json.loads(run("runs", "show", report["run_id"][:8], "--store", str(store_dir),
                           "--json").stdout)
    assert shown["run_id"] == report["run_id"] and len(shown["nodes"]) == 2
    human = run("runs", "show", report["run_id"][:8], "--store", str(store_dir))
    assert human.returncode == 0 and "toy.add" in human.stdout


def test_failing_node_exits_1_with_one_line_and_hint(write_pipeline, store_dir):
    path = write_pipeline("pipeline: f\nplugins: [TOY_PLUGIN]\nnodes:\n  a: {kind: toy.number}\n"
                          "  b: {kind: toy.fail, in: {x: a}, with: {message: kaput}}\n")
    result = run("run", str(path), "--store", str(store_dir))
    assert result.returncode == 1
    assert "while executing node 'b': RuntimeError: kaput" in result.stdout
    assert "1 finished nodes will be reused" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_unknown_run_id_exit_2(store_dir, write_pipeline):
    path = write_pipeline("pipeline: c\nplugins: [TOY_PLUGIN]\nnodes:\n  a: {kind: toy.number}\n")
    run("run", str(path), "--store", str(store_dir), "--json")
    result = run("runs", "show", "nope", "--store", str(store_dir))
    assert result.returncode == 2 and "no run with id 'nope'" in result.stderr


def test_graph_and_validate(write_pipeline):
    path = write_pipeline("pipeline: g\nplugins: [TOY_PLUGIN]\nnodes:\n  a: {kind: toy.number}\n"
                          "  s: {kind: toy.add, in: {a: a}}\n")
    assert "a -->|value → a| s" in run("graph", str(path)).stdout
    assert "valid" in run("validate", str(path)).stdout


def test_ctrl_c_leaves_run_interrupted_exit_130(write_pipeline, store_dir):
    import signal

    path = write_pipeline("pipeline: i\nplugins: [TOY_PLUGIN]\nnodes:\n  a: {kind: toy.number}\n"
                          "  s: {kind: toy.slow, in: {x: a}, with: {steps: 2000, delay: 0.01}}\n")
    proc = subprocess.Popen([*FLOWOPT, "run", str(path), "--store", str(store_dir), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and not (store_dir / "flowopt.db").exists():
        time.sleep(0.1)
    time.sleep(1.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err
    listed = json.loads(run("runs", "list", "--store", str(store_dir), "--json").stdout)
    assert listed[0]["status"] == "interrupted"
