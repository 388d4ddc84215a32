"""The JSON endpoints of `flowopt ui` (Starlette's test client, no browser), its safety
rules (read-only, token, loopback by default, only packaged files served) and the store
queries behind it (pages, series, reuse of a cached run)."""
from __future__ import annotations

import hashlib
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("starlette")
pytest.importorskip("httpx2")  # starlette.testclient's transport

from starlette.testclient import TestClient  # noqa: E402

from flowopt.errors import FlowoptError, StoreError  # noqa: E402
from flowopt.store.browse import ReadOnlyStore  # noqa: E402
from flowopt.ui.server import build_app, check_host  # noqa: E402


def _builder():
    spec = importlib.util.spec_from_file_location(
        "ui_store", Path(__file__).parent / "plugins" / "ui_store.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_store


@pytest.fixture(scope="module")
def ids(tmp_path_factory):
    return _builder()(tmp_path_factory.mktemp("api"))


@pytest.fixture(scope="module")
def client(ids):
    return TestClient(build_app(ReadOnlyStore.open(ids["store"])))


def test_runs_are_paged_with_their_total_and_the_columns_they_have(client):
    first = client.get("/api/runs", params={"limit": 3}).json()
    second = client.get("/api/runs", params={"limit": 3, "offset": 3}).json()
    assert first["total"] == second["total"] == 9
    assert len(first["runs"]) == 3 and len(second["runs"]) == 3
    assert not {r["run_id"] for r in first["runs"]} & {r["run_id"] for r in second["runs"]}
    everything = client.get("/api/runs").json()
    assert "x" in everything["columns"]["params"]
    assert "curve.loss" in everything["columns"]["metrics"]


def test_runs_filter_and_sort_with_the_cli_language(client, ids):
    page = client.get("/api/runs", params={"where": "params.x > 0.5"}).json()
    assert [r["run_id"] for r in page["runs"]] == [ids["plain2"]]
    ordered = client.get("/api/runs", params={"order_by": "metrics.curve.value desc",
                                              "where": "pipeline = 'ui-plain'"}).json()
    values = [r["metrics"]["curve.value"] for r in ordered["runs"]]
    assert values == sorted(values, reverse=True) and len(values) == 2
    by_duration = client.get("/api/runs", params={"order_by": "duration desc"}).json()["runs"]
    seconds = [r["seconds"] for r in by_duration if r["seconds"] is not None]
    # SQLite's julianday() keeps milliseconds: closer durations are ties
    assert all(a >= b - 0.001 for a, b in zip(seconds, seconds[1:])), seconds


def test_a_malformed_filter_answers_with_its_column(client):
    answer = client.get("/api/runs", params={"where": "params.x >> 2"})
    assert answer.status_code == 200
    invalid = answer.json()["invalid"]
    assert invalid["field"] == "where" and invalid["position"] == 10
    assert "column 11" in invalid["error"]
    bad_order = client.get("/api/runs", params={"order_by": "params.x sideways"}).json()
    assert bad_order["invalid"]["field"] == "order_by"


def test_a_run_has_its_graph_series_and_artifacts(client, ids):
    run = client.get(f"/api/runs/{ids['failed'][:8]}").json()
    assert run["run_id"] == ids["failed"] and run["status"] == "failed"
    assert {n["id"]: n["status"] for n in run["graph"]["nodes"]} == {"first": "succeeded",
                                                                     "boom": "failed"}
    assert run["errors"][0]["node"] == "boom" and "boom at x=0.0" in run["errors"][0]["error"]
    plain = client.get(f"/api/runs/{ids['plain']}").json()
    kinds = {f["id"]: f["type"] for f in plain["figures"]}
    assert kinds == {"series:curve.loss": "line", "series:curve.layer_bits": "bar"}
    assert plain["artifacts"][0]["size"] > 0


def test_a_cached_rerun_shows_what_it_reused_and_from_which_run(client, ids):
    run = client.get(f"/api/runs/{ids['cached']}").json()
    tune = next(n for n in run["nodes"] if n["id"] == "tune")
    assert tune["status"] == "cached" and tune["reused_from"]["run_id"] == ids["tuned"]
    assert len(run["trials"]) == 6 and {t["from_run"] for t in run["trials"]} == {ids["tuned"]}
    curves = next(f for f in run["figures"] if f["id"] == "tuner:tune:curves")
    assert len(curves["series"]) == 6  # the reused trials' learning curves
    tuner = client.get(f"/api/runs/{ids['cached']}/tuner/tune").json()
    assert tuner["from_run"] == ids["tuned"] and len(tuner["trials"]) == 6


def test_runs_show_json_of_a_cached_rerun_is_not_an_empty_shell(ids):
    done = subprocess.run([sys.executable, "-m", "flowopt", "runs", "show", ids["cached"],
                           "--store", ids["store"], "--json"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    assert len(shown["trials"]) == 6
    assert all(t["from_run"] == ids["tuned"] for t in shown["trials"])
    original = json.loads(subprocess.run(
        [sys.executable, "-m", "flowopt", "runs", "show", ids["tuned"], "--store", ids["store"],
         "--json"], capture_output=True, text=True).stdout)
    assert [t["objective"] for t in shown["trials"]] == [t["objective"] for t in original["trials"]]


def test_compare_puts_runs_side_by_side_with_series_statistics(client, ids):
    answer = client.get("/api/compare", params={"ids": f"{ids['plain']},{ids['plain2']}"}).json()
    assert answer["params"]["x"]["differs"] is True
    loss = answer["series"]["curve.loss"]
    assert loss[ids["plain"]]["last"] == pytest.approx((0.25 - 1) ** 2 + 1 / 8)
    assert loss[ids["plain"]]["min"] == pytest.approx((0.25 - 1) ** 2 + 1 / 8)
    assert loss[ids["plain"]]["max"] == pytest.approx((0.25 - 1) ** 2 + 1)
    assert len(next(f for f in answer["figures"] if f["id"] == "compare:curve.loss")["series"]) == 2


def test_the_tuner_view_reads_strategy_attributes_when_present(client, ids):
    tuner = client.get(f"/api/runs/{ids['multi']}/tuner/tune").json()
    assert [t["status"] for t in tuner["trials"]].count("pruned") == 1
    assert tuner["trials"][0]["objectives"] == [0.9, 3.0] and tuner["trials"][0]["steps"] == 30
    assert tuner["curve"] == "score.accuracy"
    figures = {f["id"]: f for f in tuner["figures"]}
    assert [v["x"] for v in figures["tuner:curves"]["vlines"]] == [10]
    assert figures["tuner:pareto"]["hypervolume"] == pytest.approx(0.42)
    assert figures["tuner:pareto"]["x"]["label"] == "score.accuracy (max)"  # not "objective 0"
    assert tuner["objectives"] == ["score.accuracy (max)", "quant.<i>bytes</i> (min)"]
    assert tuner["pareto"] == [0, 1, 3]
    assert figures["tuner:hypervolume"]["series"][0]["y"] == pytest.approx([0.1, 0.3, 0.3, 0.42])


def test_pbt_schedules_and_the_copy_tree_are_drawn(client, ids):
    tuner = client.get(f"/api/runs/{ids['pbt']}/tuner/tune").json()
    figures = {f["id"]: f for f in tuner["figures"]}
    lr = {s["name"]: s for s in figures["pbt:tune:lr"]["series"]}
    assert lr["member 1"]["x"] == [0, 10, 10, 20] and lr["member 1"]["y"][-1] == 0.02
    assert figures["pbt:tune:copies"]["arrows"] == [{"x0": 10, "y0": 0, "x1": 10, "y1": 1}]
    run = client.get(f"/api/runs/{ids['pbt']}").json()
    assert run["tuners"] == ["tune"] and "pbt:tune:score" in {f["id"] for f in run["figures"]}


def test_lineage_follows_an_artifact_up_and_down(client, ids):
    run = client.get(f"/api/runs/{ids['plain']}").json()
    artifact = run["artifacts"][0]["id"]
    lineage = client.get(f"/api/lineage/{artifact}").json()
    assert lineage["artifact"] == artifact and lineage["run_id"] == ids["plain"]


def test_unknown_ids_are_404_with_a_hint(client):
    answer = client.get("/api/runs/zzzzzz")
    assert answer.status_code == 404 and answer.json()["error"].startswith("no run with id")


def test_only_the_packaged_page_files_are_served(client):
    assert client.get("/static/app.js").status_code == 200
    for path in ("/static/..%2Fserver.py", "/static/server.py", "/static/%2Fetc%2Fpasswd",
                 "/etc/passwd", "/static/../../store/flowopt.db"):
        assert client.get(path).status_code == 404, path
    page = client.get("/")
    assert "script-src 'self'" in page.headers["content-security-policy"]


def test_the_app_never_writes_to_the_store(ids):
    database = Path(ids["store"]) / "flowopt.db"
    before = hashlib.sha256(database.read_bytes()).hexdigest()
    store = ReadOnlyStore.open(ids["store"])
    client = TestClient(build_app(store))
    for path in ("/api/runs", f"/api/runs/{ids['cached']}", f"/api/runs/{ids['tuned']}/tuner/tune",
                 f"/api/compare?ids={ids['plain']},{ids['plain2']}"):
        assert client.get(path).status_code == 200
    with pytest.raises(StoreError, match="read-only"):
        store._write(lambda conn: None)
    store.engine.dispose()
    assert hashlib.sha256(database.read_bytes()).hexdigest() == before


def test_a_token_is_checked_on_every_request(ids):
    client = TestClient(build_app(ReadOnlyStore.open(ids["store"]), token="s3cret"))
    assert client.get("/api/runs").status_code == 401
    assert client.get("/api/runs", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/api/runs", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    first = client.get("/?token=s3cret")
    assert first.status_code == 200 and "HttpOnly" in first.headers["set-cookie"]
    assert client.get("/api/runs").status_code == 200  # the cookie set by ?token=


def test_a_non_local_host_needs_a_token():
    check_host("127.0.0.1", None)
    check_host("0.0.0.0", "s3cret")
    with pytest.raises(FlowoptError, match="needs a token"):
        check_host("0.0.0.0", None)
    done = subprocess.run([sys.executable, "-m", "flowopt", "ui", "--host", "0.0.0.0",
                           "--store", "nowhere"], capture_output=True, text=True,
                          env={**__import__("os").environ, "FLOWOPT_UI_TOKEN": ""})
    assert done.returncode == 2 and "needs a token" in done.stderr


@pytest.mark.postgres
def test_the_views_answer_the_same_on_postgresql(postgres_url, tmp_path):
    ids = _builder()(tmp_path, postgres_url)
    client = TestClient(build_app(ReadOnlyStore.open(postgres_url)))
    page = client.get("/api/runs", params={"order_by": "duration desc", "limit": 4}).json()
    assert page["total"] == 9 and len(page["runs"]) == 4
    seconds = [r["seconds"] for r in page["runs"]]
    assert all(a >= b - 1e-6 for a, b in zip(seconds, seconds[1:])), seconds
    cached = client.get(f"/api/runs/{ids['cached']}").json()
    assert {t["from_run"] for t in cached["trials"]} == {ids["tuned"]}
    pareto = next(f for f in client.get(f"/api/runs/{ids['multi']}/tuner/tune").json()["figures"]
                  if f["id"] == "tuner:pareto")
    assert sorted(pareto["series"][1]["labels"]) == ["trial 0", "trial 1", "trial 3"]
    compare = client.get("/api/compare", params={"ids": f"{ids['plain']},{ids['plain2']}"}).json()
    assert compare["params"]["x"]["differs"] is True
