"""Executors run one node task at a time each; the scheduler owns all policy.

An executor only needs `submit(fn) -> Future`, `workers` and `shutdown()`. The
`SyncExecutor` runs each task inside `submit` (deterministic, easy to debug) and is the
reference the parallel executor is tested against; `ThreadExecutor` runs tasks on a
thread pool — torch and the numba kernels release the GIL in their hot loops, and
threads pass values between nodes without copying or pickling.
"""
from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Protocol

from .errors import FlowoptError


class Executor(Protocol):
    workers: int

    def submit(self, fn: Callable[[], Any]) -> Future: ...

    def shutdown(self) -> None: ...


class SyncExecutor:
    """Runs each task immediately in the calling thread."""

    workers = 1

    def submit(self, fn: Callable[[], Any]) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn())
        except BaseException as exc:  # noqa: BLE001 - delivered through the future
            future.set_exception(exc)
        return future

    def shutdown(self) -> None:
        pass


class ThreadExecutor:
    """Runs tasks on `workers` threads."""

    def __init__(self, workers: int | None = None):
        self.workers = max(1, workers or default_workers())
        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="flowopt")

    def submit(self, fn: Callable[[], Any]) -> Future:
        return self._pool.submit(fn)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def make_executor(name: str = "local", workers: int | None = None) -> Executor:
    """``local`` (threads; ``workers=1`` gives the synchronous executor) or ``ray``."""
    if name == "local":
        return SyncExecutor() if workers == 1 else ThreadExecutor(workers)
    if name == "ray":
        raise FlowoptError("the ray executor is not available in this release",
                           hint="use --executor local")
    raise FlowoptError(f"unknown executor '{name}' (choose local or ray)")
