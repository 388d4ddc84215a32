"""Composition root: compile → open the store → schedule, shared by the CLI and `Pipeline.run`.

This is the one place that wires the engine to the store; the engine modules themselves
only see the `Recorder` protocol. The store package is imported lazily.
"""
from __future__ import annotations

import os
from dataclasses import replace
from typing import Any

from .executors import check_local_resources, make_executor
from .graph import Graph
from .scheduler import RunResult, Scheduler

DEFAULT_STORE = ".flowopt"


def store_location(store: str | None = None) -> str:
    """The store to use: the argument, else ``$FLOWOPT_STORE``, else ``./.flowopt``."""
    return store or os.environ.get("FLOWOPT_STORE") or DEFAULT_STORE


def open_recorder(store: Any = None) -> Any:
    """A `Recorder` for a directory, a SQLAlchemy URL, or an existing recorder object."""
    if store is not None and not isinstance(store, (str, os.PathLike)):
        return store
    from flowopt.store import Store

    return Store.open(store_location(os.fspath(store) if store is not None else None))


def source_files(graph: Graph) -> list[dict[str, Any]]:
    """The files nodes read (`Path` config fields) with their content hashes, by cache key —
    where lineage ends. The hash is the one that went into the node's cache key."""
    from pathlib import Path

    from .graph import _file_digest

    files = []
    for node in graph:
        if not any(isinstance(v, str) for v in node.config.values()):
            continue
        try:
            model = node.kind.config.model_validate(dict(node.config))
        except Exception:  # noqa: BLE001 - the file vanished since compile; the node will say so
            continue
        for name, value in model:
            if isinstance(value, Path):
                size = value.stat().st_size if value.is_file() else None
                files.append({"cache_key": node.cache_key, "field": name,
                              "path": str(value.resolve()), "hash": _file_digest(value),
                              "size": size})
    return files


def execute(graph: Graph, *, store: Any = None, workers: int | None = None,
            executor: str = "local", use_cache: bool = True, device: str = "auto",
            listeners: list[Any] | None = None, source: str | None = None,
            scheduler_hook: Any = None, address: str | None = None) -> RunResult:
    """Run a compiled graph and record it; returns the `RunResult`.

    The executor is made (and the nodes' ``resources`` checked against the machine or the
    cluster) before the store is opened, so a run that cannot start writes nothing.
    `scheduler_hook`, if given, receives the `Scheduler` before it starts (the CLI uses it
    to learn the run id of an interrupted run).
    """
    runner = make_executor(executor, workers, address)
    try:
        check = getattr(runner, "check", None)
        if check is not None:
            check(graph)
        else:
            check_local_resources(graph)
        recorder = open_recorder(store)
    except BaseException:
        runner.shutdown()
        raise
    if hasattr(recorder, "record_sources"):
        recorder.record_sources(source_files(graph))
    scheduler = Scheduler(graph, recorder, runner,
                          use_cache=use_cache, device=device, listeners=listeners or [],
                          source=source)
    if scheduler_hook is not None:
        scheduler_hook(scheduler)
    result = scheduler.run()
    best = result.best or {}
    if "params" in best and hasattr(recorder, "log_params"):
        # A tuned run's best params become queryable run params: params.TUNER.NAME.
        recorder.log_params(result.run_id, {f"{best['node']}.{k}": v
                                            for k, v in best["params"].items()})
    return replace(result, _graph=graph)  # lets run.value name default outputs
