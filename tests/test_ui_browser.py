"""`flowopt ui` in a real browser: the CLI serves a store on a free port and headless
Chromium (Playwright, driving the system's ``chromium``; no browser download) goes
through every view as a user would. No page may log a console error; each view is
saved as a screenshot under ``build/ui-screenshots/`` (or ``$FLOWOPT_UI_SCREENSHOTS``)
for a person to look at.

Skipped, with the reason shown, when Playwright or a system Chromium is missing; CI
installs both (``.ci/run``) and sets ``FLOWOPT_REQUIRE_BROWSER``, which turns a missing
Chromium into a failure there.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

playwright_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
pytest.importorskip("uvicorn", reason="the ui extra is not installed")

CHROMIUM = next((p for p in (os.environ.get("FLOWOPT_CHROMIUM"), shutil.which("chromium"),
                             shutil.which("chromium-browser")) if p), None)
if CHROMIUM is None and os.environ.get("FLOWOPT_REQUIRE_BROWSER"):
    raise RuntimeError("FLOWOPT_REQUIRE_BROWSER is set but no chromium is installed")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no system chromium "
                                "(apt-get install chromium)")
ROOT = Path(__file__).resolve().parents[1]
SHOTS = Path(os.environ.get("FLOWOPT_UI_SCREENSHOTS", ROOT / "build" / "ui-screenshots"))


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, Path(__file__).parent / "plugins" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ui")
    ids = _load("ui_store").build_store(folder)
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "flowopt", "ui", "--store", ids["store"],
                               "--port", str(port)], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(url + "/api/runs?limit=1", timeout=1)
            break
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                pytest.fail(f"flowopt ui did not start: {server.stdout.read()}")
            time.sleep(0.1)
    yield url, ids
    server.terminate()
    server.wait(timeout=10)


@pytest.fixture(scope="module")
def browser():
    with playwright_api.sync_playwright() as p:
        instance = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                     args=["--no-sandbox", "--disable-gpu"])
        yield instance
        instance.close()


@pytest.fixture()
def page(browser):
    """A page that fails the test on any console error, uncaught exception or dialog."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    tab = context.new_page()
    problems: list[str] = []
    tab.on("console", lambda m: problems.append(f"console {m.type}: {m.text}")
           if m.type == "error" else None)
    tab.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    tab.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))
    yield tab
    context.close()
    assert problems == []


def _shot(tab, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def _view(tab, name: str) -> None:
    tab.wait_for_selector(f'body[data-view="{name}"]')


def test_the_runs_table_filters_sorts_and_shows_where_errors_at_their_column(served, page):
    url, ids = served
    page.goto(url + "/#/runs?where=" + urllib.parse.quote("pipeline != 'ui-live'"))
    _view(page, "runs")
    rows = page.locator("#runs-table tbody tr")
    assert rows.count() == 9  # trial runs are children, hidden from the list
    page.fill("#where", "params.x > 0.5")
    page.click("#apply")
    playwright_api.expect(page.locator("#runs-table tbody tr")).to_have_count(1)
    assert page.locator("#runs-table tbody tr").get_attribute("data-run") == ids["plain2"]
    _shot(page, "runs-filtered")
    page.fill("#where", "params.x >> 2")
    page.click("#apply")
    page.wait_for_selector("#where-error:not(:empty)")
    error = page.text_content("#where-error")
    assert "column 11" in error and error.splitlines()[-1] == " " * 10 + "^"
    page.goto(url + "/#/runs?order_by=pipeline")
    page.wait_for_selector('th.sorted-asc[data-field="pipeline"]')
    names = page.locator("#runs-table td.pipeline").all_text_contents()
    assert names == sorted(names)
    _shot(page, "runs")


def test_markup_from_the_store_is_shown_as_text(served, page):
    url, ids = served
    page.goto(f"{url}/#/run/{ids['hostile']}")
    _view(page, "run")
    assert page.text_content("#pipeline-name") == "<script>alert(1)</script>"
    assert page.locator("main script").count() == 0  # the page's dialog hook would catch alert()


def test_a_run_shows_its_graph_series_per_layer_bars_and_artifacts(served, page):
    url, ids = served
    page.goto(url)
    _view(page, "runs")
    page.click(f'tr[data-run="{ids["plain"]}"] a')
    _view(page, "run")
    assert page.get_attribute('#run-graph g[data-node="curve"]', "data-status") == "succeeded"
    loss = page.evaluate("window.flowoptPlots['series:curve.loss']")
    assert loss["type"] == "line" and loss["series"][0]["x"] == list(range(1, 9))
    bars = page.evaluate("window.flowoptPlots['series:curve.layer_bits']")
    assert bars["type"] == "bar" and bars["series"][0]["y"] == [8, 4, 4, 8]
    assert page.locator('[data-plot="series:curve.layer_bits"] g[data-series] rect').count() == 4
    _shot(page, "run")


def test_lineage_goes_down_to_source_files_and_its_links_lead_on(served, page):
    url, ids = served
    page.goto(f"{url}/#/run/{ids['lineage']}")
    _view(page, "run")
    page.click('#artifacts-table tr:has-text("table.dataset") a')
    _view(page, "lineage")
    assert page.text_content("#sources-table tbody").count(ids["csv"]) == 1
    downstream = page.locator("#downstream-table tbody tr")
    assert downstream.count() >= 1 and "split" in downstream.first.text_content()
    _shot(page, "lineage")
    page.click("#downstream-table tbody tr >> nth=0 >> a >> nth=0")  # a product of split
    playwright_api.expect(page.locator("#upstream-table tbody tr")).not_to_have_count(0)
    assert "table" in page.text_content("#upstream-table")


def test_a_running_run_updates_live(served, page):
    from flowopt.recording import RunInfo
    from flowopt.store import Store

    url, ids = served
    store = Store.open(ids["store"])
    run_id = store.begin_run(RunInfo(pipeline="ui-live", seed=0, params={}, spec={}))
    store.log_metric(run_id, "train", "loss", 1.0, 1)
    store.flush()
    try:
        page.goto(f"{url}/#/run/{run_id}")
        _view(page, "run")
        assert page.text_content("h1 .status") == "running"
        for step in range(2, 6):
            store.log_metric(run_id, "train", "loss", 1.0 / step, step)
    finally:
        store.end_run(run_id, "succeeded")
        store.close()
    playwright_api.expect(page.locator("h1 .status")).to_have_text("succeeded", timeout=10_000)
    loss = page.evaluate("window.flowoptPlots['series:train.loss']")
    assert loss["series"][0]["x"] == [1, 2, 3, 4, 5]


def test_a_failed_run_names_the_node_and_its_error(served, page):
    url, ids = served
    page.goto(f"{url}/#/run/{ids['failed']}")
    _view(page, "run")
    assert "boom: ValueError: boom at x=0.0" in page.text_content("#errors") or \
        "boom at x=0.0" in page.text_content("#errors")
    assert page.get_attribute('#run-graph g[data-node="boom"]', "data-status") == "failed"
    _shot(page, "run-failed")


def test_a_cached_rerun_shows_what_it_reused_and_where_from(served, page):
    url, ids = served
    page.goto(f"{url}/#/run/{ids['cached']}")
    _view(page, "run")
    assert page.get_attribute('#run-graph g[data-node="tune"]', "data-status") == "cached"
    note = page.locator("#reused-note a")
    assert note.first.text_content() == ids["tuned"][:12]
    page.click("text=tune: 6 trials")
    _view(page, "tuner")
    assert page.locator("#trials-table tbody tr").count() == 6
    _shot(page, "tuner-cached")


def test_compare_overlays_series_and_hides_equal_rows(served, page):
    url, ids = served
    page.goto(url)
    _view(page, "runs")
    for role in ("plain", "plain2"):
        page.check(f'tr[data-run="{ids[role]}"] input.pick')
    page.click("#compare")
    _view(page, "compare")
    rows = page.locator("#compare-table tbody tr[data-key]")
    everything = rows.count()
    assert page.locator('tr[data-key="params.x"]').count() == 1
    page.check("#differences-only")
    page.wait_for_selector("#compare-table tr.same", state="detached")
    keys = page.locator("#compare-table tr[data-key]").evaluate_all("rows => rows.map(r => r.dataset.key)")
    assert "params.x" in keys and all(k != "series (last).curve.layer_bits" for k in keys)
    overlay = page.evaluate("window.flowoptPlots['compare:curve.loss']")
    assert len(overlay["series"]) == 2
    page.select_option("#series-stat", "min")
    page.wait_for_selector('tr[data-key="series (min).curve.loss"]')
    _shot(page, "compare")


def test_the_tuner_view_draws_trials_best_so_far_pareto_and_rungs(served, page):
    url, ids = served
    page.goto(f"{url}/#/tuner/{ids['tuned']}/tune")
    _view(page, "tuner")
    objective = page.evaluate("window.flowoptPlots['tuner:objective']")
    trials = objective["series"][0]
    best = objective["series"][-1]
    assert best["name"] == "best so far (min)"
    assert best["y"][-1] == pytest.approx(min(trials["y"]))  # read from the plot's data
    assert page.locator('[data-plot="tuner:parallel"] path').count() == 6
    _shot(page, "tuner")
    page.goto(f"{url}/#/tuner/{ids['multi']}/tune")
    page.wait_for_selector('[data-plot="tuner:pareto"]')
    pareto = page.evaluate("window.flowoptPlots['tuner:pareto']")
    assert pareto["hypervolume"] == pytest.approx(0.42)
    front = pareto["series"][1]
    assert sorted(front["labels"]) == ["trial 0", "trial 1", "trial 3"]
    curves = page.evaluate("window.flowoptPlots['tuner:curves']")
    assert [v["x"] for v in curves["vlines"]] == [10]  # the pruned trial stopped at a rung
    _shot(page, "tuner-pareto")
    page.goto(f"{url}/#/tuner/{ids['pbt']}/tune")
    page.wait_for_selector('[data-plot="pbt:tune:copies"] svg')
    assert page.locator('[data-plot="pbt:tune:copies"] line.arrow').count() == 1
    _shot(page, "tuner-pbt")


def test_the_report_draws_the_same_figures_offline(served, page, tmp_path):
    from flowopt.cli.report import write_report
    from flowopt.store import Store

    _, ids = served
    out = write_report(Store.open(ids["store"], create=False), ids["tuned"], tmp_path / "r.html")
    page.goto(out.as_uri())
    page.wait_for_selector('[data-plot="tuner:objective"] svg')
    best = page.evaluate("window.flowoptPlots['tuner:objective'].series.slice(-1)[0].name")
    assert best == "best so far (min)"
    assert page.locator('[data-plot="tuner:curves"] g[data-series] path').count() == 6
    _shot(page, "report-tuned")
