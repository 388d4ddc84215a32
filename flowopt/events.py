"""Run events for listeners (the progress display, tests, user hooks).

Listener methods take keyword-only arguments and must accept ``**kwargs`` so the engine
can add arguments later without breaking anyone. Events may arrive from worker threads.
"""
from __future__ import annotations

from typing import Any


class RunListener:
    """Base class with no-op hooks; override what you need."""

    def run_started(self, *, run_id: str, graph: Any, **kwargs: Any) -> None: ...

    def node_started(self, *, node_id: str, **kwargs: Any) -> None: ...

    def node_progress(self, *, node_id: str, step: int, total: int | None, **kwargs: Any) -> None: ...

    def node_finished(self, *, node_id: str, status: str, seconds: float, **kwargs: Any) -> None: ...

    def run_finished(self, *, run_id: str, status: str, **kwargs: Any) -> None: ...


class Broadcast:
    """Fans an event out to several listeners; a failing listener never fails the run."""

    def __init__(self, listeners: list[RunListener]):
        self.listeners = list(listeners)

    def __call__(self, event: str, **kwargs: Any) -> None:
        for listener in self.listeners:
            try:
                getattr(listener, event)(**kwargs)
            except Exception:  # noqa: BLE001 - display problems must not kill a run
                pass
