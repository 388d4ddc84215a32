"""Executors run one node task at a time each; the scheduler owns all policy.

An executor only needs `submit(fn) -> Future`, `workers` and `shutdown()`; it may also
run a node's function itself (`call(node, ctx, inputs)`, the Ray executor does: see
`flowopt.ray_executor`) and give a tuner's trial runs an executor of the same kind
(`child(workers)`; `child_executor`). The
`SyncExecutor` runs each task inside `submit` (deterministic, easy to debug) and is the
reference the parallel executor is tested against; `ThreadExecutor` runs tasks on a
thread pool — torch and the numba kernels release the GIL in their hot loops, and
threads pass values between nodes without copying or pickling.
"""
from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Protocol

from .cores import default_workers
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


def make_executor(name: str = "local", workers: int | None = None,
                  address: str | None = None) -> Executor:
    """``local`` (threads; ``workers=1`` gives the synchronous executor) or ``ray`` (joins
    the cluster at `address`, else starts a local one with `workers` CPUs)."""
    if workers is not None and workers < 1:
        raise FlowoptError(f"--workers must be at least 1, got {workers}")
    if name == "local":
        if address is not None:
            raise FlowoptError("--address is for --executor ray")
        return SyncExecutor() if workers == 1 else ThreadExecutor(workers)
    if name == "ray":
        from .ray_executor import RayExecutor

        return RayExecutor(workers, address)
    raise FlowoptError(f"unknown executor '{name}' (choose local or ray)")


def child_executor(parent: Executor, workers: int) -> Executor:
    """The executor of a tuner's trial run: the same kind as the tuning run's."""
    child = getattr(parent, "child", None)
    return child(workers) if child is not None else make_executor("local", workers)


def check_local_resources(graph: Any, cores: int | None = None) -> None:
    """Refuse, before anything runs, a node whose ``resources`` this machine cannot give."""
    cores = cores or default_workers()
    gpus = None
    for node in graph:
        wanted = getattr(node, "resources", None)
        if not wanted:
            continue
        if wanted["cpus"] > cores:
            raise FlowoptError(f"node '{node.id}': resources.cpus {wanted['cpus']:g} is more than "
                        f"this machine's {cores} cores", hint="lower it, or run with "
                        "--executor ray on a cluster that has such a machine")
        if wanted["gpus"] > 0:
            if gpus is None:
                import torch

                gpus = torch.cuda.device_count()
            if wanted["gpus"] > max(gpus, 0) or gpus == 0:
                raise FlowoptError(f"node '{node.id}': resources.gpus {wanted['gpus']:g} but this "
                            f"machine has {gpus} GPU(s)")
