"""The live progress display: one line per node, with steps for long nodes (rich).

Names shown (the pipeline's, node ids, kinds) are escaped: Rich must not read a
pipeline named ``[link=…]`` as markup (`flowopt.cli.render.text`)."""
from __future__ import annotations

import threading
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from flowopt.events import RunListener

from .render import text

_STYLE = {"pending": "dim", "running": "cyan", "succeeded": "green", "cached": "blue",
          "failed": "bold red", "skipped": "dim yellow", "interrupted": "magenta"}


class LiveProgress(RunListener):
    """A `RunListener` drawing a rich progress table on stderr."""

    def __init__(self, console: Console | None = None):
        self.console = console or Console(stderr=True)
        self.progress = Progress(TextColumn("{task.fields[status]:<11}"),
                                 TextColumn("[bold]{task.description:<16}"),
                                 TextColumn("[dim]{task.fields[kind]:<24}"),
                                 BarColumn(bar_width=24), MofNCompleteColumn(),
                                 TimeElapsedColumn(), console=self.console, transient=False,
                                 refresh_per_second=8)
        self.tasks: dict[str, TaskID] = {}
        self._lock = threading.Lock()

    def _set(self, node_id: str, status: str, **update: Any) -> None:
        style = _STYLE.get(status, "")
        with self._lock:
            task = self.tasks.get(node_id)
            if task is not None:
                self.progress.update(task, status=f"[{style}]{text(status)}[/]", **update)

    def run_started(self, *, run_id: str, graph: Any, **kwargs: Any) -> None:
        self.console.print(f"[bold]flowopt[/] run [cyan]{text(run_id[:12])}[/] · pipeline "
                           f"[bold]{text(graph.name)}[/] · {len(graph)} nodes", highlight=False)
        for node in graph:
            self.tasks[node.id] = self.progress.add_task(
                text(node.id), total=None, start=False, status="[dim]pending[/]",
                kind=text(node.kind.name))
        self.progress.start()

    def node_started(self, *, node_id: str, **kwargs: Any) -> None:
        with self._lock:
            self.progress.start_task(self.tasks[node_id])
        self._set(node_id, "running")

    def node_progress(self, *, node_id: str, step: int, total: int | None, **kwargs: Any) -> None:
        self._set(node_id, "running", completed=step, total=total)

    def node_finished(self, *, node_id: str, status: str, seconds: float, **kwargs: Any) -> None:
        with self._lock:
            task = self.progress.tasks[self.tasks[node_id]]
            total = task.total or 1
        self._set(node_id, status, completed=total if status in ("succeeded", "cached") else task.completed,
                  total=total)
        with self._lock:
            self.progress.stop_task(self.tasks[node_id])

    def run_finished(self, *, run_id: str, status: str, **kwargs: Any) -> None:
        self.progress.stop()
