"""Shared fixtures: the toy node kinds, throw-away stores (SQLite and PostgreSQL), and
`make_ctx`, the `Context` a node function receives, for unit tests of node kinds."""
from __future__ import annotations

import importlib.util
import os
import sys
import threading
import uuid
from pathlib import Path
from typing import Any, Callable

import pytest

from flowopt.context import Context
from flowopt.registry import load_plugin

TESTS = Path(__file__).parent
TOY_PLUGIN = TESTS / "plugins" / "toy.py"
load_plugin(str(TOY_PLUGIN))


def _register(name: str, path: Path) -> None:
    """Make a test helper module importable by name (tests are not a package)."""
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)


_register("pbt_support", TESTS / "pbt_support.py")  # PBT scaffolding: `import pbt_support`


@pytest.fixture
def toy_plugin() -> str:
    return str(TOY_PLUGIN)


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def write_pipeline(tmp_path: Path):
    """Write a pipeline file (text) next to a copy-free reference to the toy plugin."""

    def write(text: str, name: str = "pipeline.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text.replace("TOY_PLUGIN", str(TOY_PLUGIN)), encoding="utf-8")
        return path

    return write


POSTGRES_URL = os.environ.get("FLOWOPT_TEST_POSTGRES_URL",
                              "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _postgres_admin():
    """An AUTOCOMMIT engine on the test server, or a skip reason."""
    try:
        import sqlalchemy as sa

        engine = sa.create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        return engine, None
    except Exception as exc:  # noqa: BLE001 - any failure means: no server to test against
        return None, f"no PostgreSQL server at {POSTGRES_URL} ({type(exc).__name__})"


@pytest.fixture(scope="session")
def postgres_database():
    """A fresh PostgreSQL database for this test session, dropped at its end:
    ``(admin engine on it, its URL)``; skips (with the reason shown) where no server answers."""
    admin, reason = _postgres_admin()
    if admin is None:
        pytest.skip(reason)
    import sqlalchemy as sa

    name = f"flowopt_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"
    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        yield engine, url
    finally:
        from flowopt.store import Store

        Store.dispose_all()
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def postgres_url(request, tmp_path, monkeypatch):
    """A brand-new, empty PostgreSQL store URL: its own schema in the session's database
    (``?options=-csearch_path=…``), dropped after the test; artifacts under tmp_path."""
    engine, url = request.getfixturevalue("postgres_database")
    import sqlalchemy as sa

    schema = f"t_{uuid.uuid4().hex[:12]}"
    with engine.connect() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    monkeypatch.setenv("FLOWOPT_ARTIFACTS", str(tmp_path / "artifacts"))
    try:
        yield f"{url}?options=-csearch_path%3D{schema}"
    finally:
        from flowopt.store import Store

        Store.dispose_all()
        with engine.connect() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))


@pytest.fixture(params=["sqlite", "postgres"])
def store_location(request, tmp_path):
    """A brand-new store location on each backend (PostgreSQL: see `postgres_url`)."""
    if request.param == "sqlite":
        yield str(tmp_path / "store")
        return
    yield request.getfixturevalue("postgres_url")


@pytest.fixture
def make_ctx() -> Callable[..., Context]:
    """``make_ctx(seed=0)``: a Context whose logged metrics and progress land in lists.

    ``ctx.logged`` holds ``(key, value, step)`` tuples and ``ctx.events`` the emitted
    ``(event, fields)`` pairs; ``ctx.cancel_event.set()`` cancels the node.
    """

    def make(seed: int = 0, *, device: str = "cpu") -> Context:
        logged: list[tuple[str, float, int | None]] = []
        events: list[tuple[str, dict[str, Any]]] = []
        cancel = threading.Event()
        ctx = Context(run_id="test", node_id="node", seed=seed, device=device, cancel=cancel,
                      emit=lambda event, **fields: events.append((event, fields)),
                      log_metric=lambda key, value, step: logged.append((key, value, step)))
        ctx.logged, ctx.events, ctx.cancel_event = logged, events, cancel  # type: ignore[attr-defined]
        return ctx

    return make


@pytest.fixture(scope="module")
def blobs() -> Any:
    """A small, learnable 3-class `Dataset` (fixed seed), shared by the training tests."""
    import torch

    from flowopt.artifacts import Dataset

    generator = torch.Generator().manual_seed(0)
    centres = 2.0 * torch.randn(3, 6, generator=generator)
    y = torch.arange(240) % 3
    x = centres[y] + 0.7 * torch.randn(240, 6, generator=generator)
    return Dataset(x=x, y=y, meta={"task": "classification", "n_classes": 3, "n_features": 6})


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray (2 CPUs) shared by the whole test session, shut down at its end;
    skips visibly where Ray is not installed (the test extra installs it)."""
    ray = pytest.importorskip("ray", reason="Ray is not installed: pip install 'flowopt[ray]'")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
    try:
        yield ray
    finally:
        if started:
            ray.shutdown()
