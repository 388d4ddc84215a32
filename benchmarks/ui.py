"""`flowopt ui` against `mlflow server` on the same runs: first byte, rendered runs table,
compare of 100 runs.

    python benchmarks/ui.py                       # 1,000 and 10,000 runs (a few minutes)
    python benchmarks/ui.py --sizes 1000 --repeat 3

Both stores hold the same runs: 3 params (lr, hidden, optimizer), 2 final metrics
(accuracy, loss) and a 20-point loss series each, in one experiment. flowopt's rows are
bulk-inserted with the same values the recorder writes (the benchmark measures reading);
MLflow's go into a SQLite backend made by its client, the runs bulk-inserted through
MLflow's own table models, and `mlflow server --backend-store-uri sqlite:///...` reads
them. Every page load uses a fresh browser context (no HTTP cache), as a first visit.

Measured, each the median of ``--repeat`` tries, in one process on one machine:

* **first byte**: the runs page's HTML (``GET /``), and the JSON the runs table is built
  from (flowopt ``GET /api/runs?limit=50``; MLflow ``POST /api/2.0/mlflow/runs/search``
  with ``max_results=50``, what its UI asks for).
* **runs table rendered**: headless Chromium (the system's, via Playwright) from
  navigation until the table shows the newest run's row.
* **compare 100 runs**: flowopt ``GET /api/compare`` and the rendered Compare view;
  MLflow's compare page (``#/compare-runs``) until the last run's name is shown.

Needs the ``bench`` and ``ui`` extras, ``playwright`` and a system ``chromium``.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

PAGE = 50
SERIES = 20


def runs_data(count: int, seed: int = 0) -> list[dict]:
    import random

    rng = random.Random(seed)
    start = datetime(2026, 11, 1, tzinfo=timezone.utc)
    rows = []
    for i in range(count):
        lr = 10 ** rng.uniform(-4, -1)
        hidden = rng.choice([64, 128, 256])
        accuracy = 0.8 + 0.19 * rng.random()
        loss = [2.0 / (1 + step * lr * 50) + 0.05 * rng.random() for step in range(SERIES)]
        rows.append({"name": f"run-{i:05d}", "lr": lr, "hidden": hidden,
                     "optimizer": rng.choice(["adam", "lion", "sgd"]), "accuracy": accuracy,
                     "loss": loss, "started": start + timedelta(seconds=30 * i),
                     "seconds": 5 + 20 * rng.random()})
    return rows


# -- the two stores ------------------------------------------------------------------------
def fill_flowopt(folder: Path, rows: list[dict]) -> tuple[str, list[str]]:
    from sqlalchemy import insert

    from flowopt.store import Store
    from flowopt.store.schema import Metric, Param, Run

    store = Store.open(str(folder))
    ids = [uuid.uuid4().hex for _ in rows]
    runs, params, metrics = [], [], []
    for run_id, r in zip(ids, rows):
        runs.append({"id": run_id, "pipeline": "bench", "status": "succeeded", "seed": 0,
                     "spec": {}, "source": None, "host": "bench", "pid": 0,
                     "flowopt_version": "bench", "started_at": r["started"],
                     "ended_at": r["started"] + timedelta(seconds=r["seconds"]),
                     "heartbeat_at": r["started"], "error": None, "parent_run_id": None})
        for key in ("lr", "hidden", "optimizer"):
            value = r[key]
            params.append({"run_id": run_id, "key": key, "value": value,
                           "value_num": float(value) if not isinstance(value, str) else None})
        metrics.append({"run_id": run_id, "node_id": "score", "key": "accuracy", "step": None,
                        "value": r["accuracy"], "logged_at": r["started"]})
        metrics.extend({"run_id": run_id, "node_id": "train", "key": "loss", "step": step,
                        "value": value, "logged_at": r["started"]}
                       for step, value in enumerate(r["loss"]))
        metrics.append({"run_id": run_id, "node_id": "train", "key": "loss", "step": None,
                        "value": r["loss"][-1], "logged_at": r["started"]})

    def write(conn):
        conn.execute(insert(Run), runs)
        conn.execute(insert(Param), params)
        for start in range(0, len(metrics), 50_000):
            conn.execute(insert(Metric), metrics[start:start + 50_000])

    store._write(write)
    store.close()
    return str(folder), ids


def fill_mlflow(folder: Path, rows: list[dict]) -> tuple[str, str, list[str]]:
    """The same runs in an MLflow SQLite store. The experiment and the schema come from
    MLflow's client; the runs' rows are bulk-inserted through MLflow's own table models
    (its client logs about 5 runs a second on this machine, too slow for 10,000)."""
    from mlflow.store.tracking.dbmodels import models
    from mlflow.tracking import MlflowClient
    from sqlalchemy import create_engine, insert

    folder.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    experiment = client.create_experiment("bench", artifact_location=str(folder / "artifacts"))
    ids = [uuid.uuid4().hex for _ in rows]
    runs, params, metrics, latest, tags = [], [], [], [], []
    for run_id, r in zip(ids, rows):
        started = int(r["started"].timestamp() * 1000)
        runs.append({"run_uuid": run_id, "name": r["name"], "source_type": "LOCAL",
                     "source_name": "bench", "entry_point_name": "", "user_id": "bench",
                     "status": "FINISHED", "start_time": started,
                     "end_time": started + int(r["seconds"] * 1000), "deleted_time": None,
                     "source_version": "", "lifecycle_stage": "active",
                     "artifact_uri": str(folder / "artifacts" / run_id),
                     "experiment_id": int(experiment)})
        params.extend({"key": k, "value": str(r[k]), "run_uuid": run_id}
                      for k in ("lr", "hidden", "optimizer"))
        points = [("accuracy", r["accuracy"], 0)] + [("loss", v, s) for s, v in enumerate(r["loss"])]
        metrics.extend({"key": k, "value": v, "timestamp": started + s, "step": s,
                        "is_nan": False, "run_uuid": run_id} for k, v, s in points)
        latest.extend([{"key": "accuracy", "value": r["accuracy"], "timestamp": started,
                        "step": 0, "is_nan": False, "run_uuid": run_id},
                       {"key": "loss", "value": r["loss"][-1], "timestamp": started + SERIES - 1,
                        "step": SERIES - 1, "is_nan": False, "run_uuid": run_id}])
        tags.append({"key": "mlflow.runName", "value": r["name"], "run_uuid": run_id})
    engine = create_engine(uri)
    with engine.begin() as conn:
        for model, values in ((models.SqlRun, runs), (models.SqlParam, params),
                              (models.SqlMetric, metrics), (models.SqlLatestMetric, latest),
                              (models.SqlTag, tags)):
            for start in range(0, len(values), 50_000):
                conn.execute(insert(model.__table__), values[start:start + 50_000])
    engine.dispose()
    return uri, experiment, ids


# -- servers -------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, process: subprocess.Popen, seconds: float = 180) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {process.stdout.read() if process.stdout else ''}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer")


def start_flowopt(store: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "flowopt", "ui", "--store", store,
                                "--port", str(port)], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    wait_for(url + "/", process)
    return process, url


def start_mlflow(uri: str, artifacts: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    mlflow = shutil.which("mlflow") or str(Path(sys.executable).with_name("mlflow"))
    process = subprocess.Popen([mlflow, "server", "--backend-store-uri", uri,
                                "--default-artifact-root", str(artifacts), "--host", "127.0.0.1",
                                "--port", str(port), "--workers", "1"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    wait_for(url + "/health", process)
    return process, url


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()


# -- measurements ----------------------------------------------------------------------------
def first_byte(url: str, body: dict | None = None) -> float:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    start = time.perf_counter()
    with urllib.request.urlopen(request, timeout=120) as response:
        response.read(1)
        elapsed = time.perf_counter() - start
        response.read()
    return elapsed


def rendered(browser, url: str, selector: str) -> float:
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    start = time.perf_counter()
    page.goto(url, timeout=120_000, wait_until="commit")  # then wait for what a user sees
    page.wait_for_selector(selector, timeout=120_000)
    elapsed = time.perf_counter() - start
    context.close()
    return elapsed


def median(work, repeat: int) -> float:
    work()  # one warm-up: both servers cache their page files and query plans
    return statistics.median(work() for _ in range(repeat))


def attempt(work) -> float | None:
    """A measurement, or None (shown as a dash) when the page never showed what we wait for."""
    try:
        return work()
    except Exception as exc:  # noqa: BLE001 - a peer's page that did not render is a result
        print(f"  did not render: {str(exc).splitlines()[0]}", file=sys.stderr)
        return None


def measure(size: int, repeat: int, browser, folder: Path) -> dict:
    rows = runs_data(size)
    newest = rows[-1]["name"]
    started = time.perf_counter()
    store, flowopt_ids = fill_flowopt(folder / "flowopt", rows)
    filled = time.perf_counter()
    uri, experiment, mlflow_ids = fill_mlflow(folder / "mlflow", rows)
    result: dict = {"runs": size, "fill_flowopt_s": filled - started,
                    "fill_mlflow_s": time.perf_counter() - filled}
    process, url = start_flowopt(store)
    try:
        result["flowopt"] = {
            "first_byte_page_s": median(lambda: first_byte(url + "/"), repeat),
            "first_byte_api_s": median(lambda: first_byte(f"{url}/api/runs?limit={PAGE}"), repeat),
            "table_rendered_s": median(lambda: rendered(
                browser, url + "/#/runs", f'tr[data-run="{flowopt_ids[-1]}"]'), repeat),
            "compare_100_api_s": median(lambda: first_byte(
                f"{url}/api/compare?ids={','.join(flowopt_ids[-100:])}"), repeat),
            "compare_100_rendered_s": median(lambda: rendered(
                browser, f"{url}/#/compare?ids={','.join(flowopt_ids[-100:])}",
                '[data-plot="compare:train.loss"] svg'), repeat)}
    finally:
        stop(process)
    process, url = start_mlflow(uri, folder / "mlflow" / "artifacts")
    try:
        search = {"experiment_ids": [experiment], "max_results": PAGE,
                  "order_by": ["attributes.start_time DESC"]}
        compare = (f"{url}/#/compare-runs?runs={json.dumps(mlflow_ids[-100:])}"
                   f"&experiments={json.dumps([experiment])}")
        result["mlflow"] = {
            "first_byte_page_s": median(lambda: first_byte(url + "/"), repeat),
            "first_byte_api_s": median(lambda: first_byte(
                url + "/api/2.0/mlflow/runs/search", search), repeat),
            "table_rendered_s": attempt(lambda: median(lambda: rendered(
                browser, f"{url}/#/experiments/{experiment}/runs", f"text={newest}"), repeat)),
            "compare_100_rendered_s": attempt(lambda: median(lambda: rendered(
                browser, compare, f"text={rows[-100]['name']}"), repeat))}
    finally:
        stop(process)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("needs a system chromium (apt-get install chromium)")
    results = []
    with sync_playwright() as p, tempfile.TemporaryDirectory() as tmp:
        browser = p.chromium.launch(executable_path=chromium, headless=True,
                                    args=["--no-sandbox", "--disable-gpu"])
        for size in args.sizes:
            started = time.perf_counter()
            results.append(measure(size, args.repeat, browser, Path(tmp) / str(size)))
            print(json.dumps(results[-1]), f"({time.perf_counter() - started:.0f} s)", flush=True)
        browser.close()
    print(f"{'runs':>6} {'what':<26} {'flowopt':>9} {'mlflow':>9}")
    for r in results:
        for key in ("first_byte_page_s", "first_byte_api_s", "table_rendered_s",
                    "compare_100_api_s", "compare_100_rendered_s"):
            ours, theirs = r["flowopt"].get(key), r["mlflow"].get(key)
            show = lambda v: f"{v * 1000:8.0f}ms" if v is not None else "       –"  # noqa: E731
            print(f"{r['runs']:>6} {key:<26} {show(ours)} {show(theirs)}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    os.environ.setdefault("MLFLOW_ENABLE_WORKSPACES", "false")
    main()
