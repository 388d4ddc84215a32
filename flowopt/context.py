"""The `Context` a node function receives as ``ctx``: seed, metrics, progress, cancel.

Every random thing in a node must come from ``ctx.seed`` (or the generators built from
it), never from global RNG state: nodes run concurrently in threads, and global state
would make results depend on scheduling. Long loops call ``ctx.progress(step, total)``,
which feeds the live display and raises `Interrupted` once the run is cancelled.
"""
from __future__ import annotations

import threading
from typing import Any, Callable

from .errors import Interrupted


class Context:
    def __init__(self, *, run_id: str, node_id: str, seed: int, device: str,
                 cancel: threading.Event, emit: Callable[..., None],
                 log_metric: Callable[[str, float, int | None], None], threads: int = 1):
        self.run_id, self.node_id, self.seed = run_id, node_id, seed
        #: CPU threads this node may use (cores / parallel workers): pass it to
        #: torch.set_num_threads or numba.set_num_threads — oversubscribing two cores
        #: with spinning OpenMP pools made small torch models 5-10x slower here.
        self.threads = threads
        self._device = device
        self._cancel = cancel
        self._emit = emit
        self._log_metric = log_metric

    @property
    def device(self) -> str:
        """``cpu`` or ``cuda``: the run's ``device`` option, ``auto`` resolved here."""
        if self._device == "auto":
            import torch

            return "cuda" if torch.cuda.is_available() else "cpu"
        return self._device

    def numpy_rng(self, stream: int = 0) -> Any:
        """A numpy Generator seeded from this node's seed (and an optional stream number)."""
        import numpy as np

        return np.random.default_rng([self.seed, stream])

    def torch_generator(self, stream: int = 0, device: str = "cpu") -> Any:
        """A torch Generator seeded from this node's seed (and an optional stream number)."""
        import torch

        generator = torch.Generator(device=device)
        generator.manual_seed((self.seed + 0x9E3779B97F4A7C15 * stream) & 0x7FFF_FFFF_FFFF_FFFF)
        return generator

    def log_metric(self, key: str, value: float, step: int | None = None) -> None:
        """Record one point of a metric series (stored as ``node.key``)."""
        self._log_metric(key, float(value), step)

    def progress(self, step: int, total: int | None = None, **info: Any) -> None:
        """Report progress of a long node; raises `Interrupted` if the run was cancelled."""
        self.check_cancelled()
        self._emit("node_progress", node_id=self.node_id, step=step, total=total, info=info)

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def check_cancelled(self) -> None:
        if self._cancel.is_set():
            raise Interrupted(f"node '{self.node_id}' cancelled")
