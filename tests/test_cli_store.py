"""The store commands as a user types them: runs list/show/compare, lineage, store check/gc,
and the bad-input contract (exit 2, one line, no traceback, no password)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from flowopt.cli.app import app

PIPELINE = """pipeline: {name}
plugins: [TOY_PLUGIN]
params: {{v: {v}, opt: {opt}}}
nodes:
  a: {{kind: toy.number, with: {{value: '${{params.v}}'}}}}
  s: {{kind: toy.add, in: {{a: a}}}}
"""


def cli(*args: str):
    result = CliRunner().invoke(app, list(args))
    assert "Traceback" not in result.stdout + result.stderr
    return result


@pytest.fixture
def runs(write_pipeline, store_location):
    """Three runs: (digits, v=1, adam), (digits, v=2, sgd), (iris, v=3, adam) -> their ids."""
    ids = []
    for i, (name, v, opt) in enumerate((("digits", 1.0, "adam"), ("digits", 2.0, "sgd"),
                                        ("iris", 3.0, "adam"))):
        path = write_pipeline(PIPELINE.format(name=name, v=v, opt=opt), f"p{i}.yaml")
        result = cli("run", str(path), "--store", store_location, "--json")
        assert result.exit_code == 0, result.stderr
        ids.append(json.loads(result.stdout)["run_id"])
    return store_location, ids


def test_runs_list_filters_orders_and_prints_the_json_contract(runs):
    store, ids = runs
    result = cli("runs", "list", "--store", store, "--where",
                 "params.v >= 2 or params.opt = 'sgd'", "--order-by", "metrics.total desc", "--json")
    assert result.exit_code == 0, result.stderr
    listed = json.loads(result.stdout)
    assert [r["run_id"] for r in listed] == [ids[2], ids[1]]
    assert set(listed[0]) >= {"run_id", "pipeline", "status", "started_at", "ended_at",
                              "params", "metrics"}
    assert listed[0]["params"] == {"v": 3.0, "opt": "adam"}
    since = json.loads(cli("runs", "list", "--store", store, "--since", "1h", "--pipeline",
                           "digits", "--json").stdout)
    assert [r["run_id"] for r in since] == [ids[1], ids[0]]
    human = cli("runs", "list", "--store", store, "--where", "pipeline = 'iris'")
    assert ids[2][:12] in human.stdout and ids[0][:12] not in human.stdout


def test_an_unknown_metric_is_an_empty_result_with_a_note(runs):
    store, _ = runs
    result = cli("runs", "list", "--store", store, "--where", "metrics.accuracy > 0.9", "--json")
    assert result.exit_code == 2 and json.loads(result.stdout) == []
    assert result.stderr.strip() == "note: no run has a metric named 'accuracy'"


def test_a_malformed_where_points_at_the_column(runs):
    store, _ = runs
    result = cli("runs", "list", "--store", store, "--where", "params.v >> 2")
    assert result.exit_code == 2
    first, *hint = result.stderr.splitlines()
    assert first == "error: malformed --where at column 11: expected a number, a 'string', " \
                    "true, false or null, found '>'"
    assert hint[-1].index("^") == hint[-2].index("params") + 10


def test_runs_show_and_compare(runs):
    store, ids = runs
    shown = json.loads(cli("runs", "show", ids[0][:8], "--store", store, "--json").stdout)
    assert shown["run_id"] == ids[0] and shown["trials"] == [] and len(shown["nodes"]) == 2
    compared = cli("runs", "compare", ids[0][:8], ids[1][:8], "--store", store, "--json")
    assert compared.exit_code == 0, compared.stderr
    data = json.loads(compared.stdout)
    assert data["different"]["params"] == ["opt", "v"]  # params in name order
    assert data["metrics"]["s.total"]["values"] == {ids[0]: 1.0, ids[1]: 2.0}
    human = cli("runs", "compare", ids[0][:8], ids[2][:8], "--store", store)
    assert "values differ" in human.stdout and "opt" in human.stdout


def test_unknown_and_ambiguous_ids_exit_2_with_one_line(runs):
    store, ids = runs
    typo = ids[0][:9] + ("x" if ids[0][9] != "x" else "y")
    result = cli("runs", "show", typo, "--store", store)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: no run with id '{typo}' in ")
    assert f"did you mean {ids[0][:12]}" in result.stderr
    lineage = cli("lineage", "0000zzzz", "--store", store)
    assert lineage.exit_code == 2 and "no artifact with id '0000zzzz'" in lineage.stderr


def test_lineage_json_has_the_contract_shape(runs):
    store, ids = runs
    result = cli("lineage", f"{ids[1][:8]}:s.total", "--upstream", "--store", store, "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert set(data) >= {"artifact", "upstream", "downstream"} and data["downstream"] == []
    assert [(e["node"], e["run_id"]) for e in data["upstream"]] == [("a", ids[1])]
    assert set(data["upstream"][0]) >= {"artifact", "node", "run_id"}
    down = json.loads(cli("lineage", data["upstream"][0]["artifact"], "--downstream",
                          "--store", store, "--json").stdout)
    assert {e["node"] for e in down["downstream"]} == {"s"} and down["upstream"] == []


def test_store_check_and_gc_from_the_command_line(tmp_path):
    from flowopt.store import Store

    store = Store.open(tmp_path / "s")
    ref = store.save_outputs("n", {"v": list(range(3000))})["v"]  # no row: an orphan blob
    store.close()
    os.utime(store.blobs.path(ref.hash), (1e9, 1e9))  # its process died long ago
    checked = cli("store", "check", "--store", str(tmp_path / "s"), "--json")
    assert checked.exit_code == 0 and json.loads(checked.stdout)["ok"] is True
    dry = cli("store", "gc", "--store", str(tmp_path / "s"), "--min-age", "0")
    assert dry.exit_code == 0 and "would remove 1 unreferenced blobs" in dry.stdout
    assert (tmp_path / "s" / "artifacts" / ref.hash[:2] / ref.hash[2:]).is_file()
    done = cli("store", "gc", "--store", str(tmp_path / "s"), "--min-age", "0", "--yes")
    assert "removed 1 unreferenced blobs" in done.stdout
    assert not (tmp_path / "s" / "artifacts" / ref.hash[:2] / ref.hash[2:]).exists()


def test_an_unreachable_database_is_one_line_with_the_host_and_never_the_password():
    url = "postgresql+psycopg://flow:s3cr3t-pw@127.0.0.1:1/nowhere"
    result = cli("runs", "list", "--store", url)
    assert result.exit_code == 2
    assert "s3cr3t-pw" not in result.stdout + result.stderr
    first = result.stderr.splitlines()[0]
    assert first.startswith("error: cannot connect to the store database at 127.0.0.1:1")


def test_a_store_directory_that_cannot_be_created_or_written_is_a_clear_error(
        tmp_path, write_pipeline):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    path = write_pipeline(PIPELINE.format(name="x", v=1.0, opt="adam"))
    result = cli("run", str(path), "--store", str(blocker / "store"))
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: cannot create the store directory '{blocker / 'store'}'")
    if os.geteuid() == 0:
        pytest.skip("running as root: every directory is writable, so the read-only case "
                    "cannot be shown here")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    result = cli("run", str(path), "--store", str(locked))
    assert result.exit_code == 2 and "is not writable" in result.stderr


def test_store_queries_import_neither_torch_nor_numba(tmp_path):
    from flowopt.recording import RunInfo
    from flowopt.store import Store

    store = str(tmp_path / "s")
    opened = Store.open(store)
    opened.end_run(opened.begin_run(RunInfo(pipeline="p", seed=0, params={"v": 2}, spec={})),
                   "succeeded")
    code = ("import sys\nfrom flowopt.cli.app import main\nsys.argv=['flowopt','runs','list',"
            f"'--store',{store!r},'--where','params.v > 1']\ntry:\n    main()\n"
            "except SystemExit: pass\nprint('HEAVY' if {'torch','numba'} & set(sys.modules) else 'LIGHT')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip().endswith("LIGHT"), out.stderr


@pytest.mark.parametrize("option, value, message", [
    ("--since", "last tuesday", "error: cannot read time 'last tuesday'"),
    ("--order-by", "metrics.total sideways", "error: cannot read --order-by 'metrics.total sideways'"),
    ("--order-by", "colour", "error: cannot order by 'colour'"),
])
def test_bad_since_and_order_by_values_exit_2_with_one_line(runs, option, value, message):
    store, _ = runs
    result = cli("runs", "list", "--store", store, option, value)
    assert result.exit_code == 2 and result.stderr.splitlines()[0] == message
