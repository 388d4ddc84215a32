"""The Ray executor: each node runs as a Ray task; only the driver touches the store.

``flowopt run FILE --executor ray [--address auto|HOST:PORT] [--workers N]`` (and
``Pipeline.run(executor="ray", address=...)``). The scheduler does not change: it submits
a node to one of this executor's ``workers`` driver threads, exactly as to the local
thread executor, and that thread hands the node's function to Ray (`call`) and waits.

Policy, and why:

* **Cluster.** Without an address a local Ray is started with ``workers`` CPUs and stopped
  when the run ends; with one (``auto`` or ``HOST:PORT``) the driver joins that cluster and
  leaves it running. A Ray already started in this process (a test session, a notebook) is
  used as it is and left running. An address nothing answers at is one line within
  seconds (a TCP probe first: Ray itself retries for minutes).
* **Data.** Inputs and outputs cross between driver and workers through Ray's object
  store, not as artifacts in the store's root. The driver already holds every value a
  node needs (it passes them between nodes in memory, as locally) and writes each output
  to the store once, as locally; workers then need neither the store's database nor its
  artifact root. So a cluster needs no shared filesystem, a SQLite store works on one,
  and the run's rows and lineage are written by one process, each exactly once, and are
  the same as a local run's. The cost is one serialisation of each value per task in each
  direction (measured in ``benchmarks/ray_executor.py``).
* **Records.** A task's metric points are buffered in the worker and logged by the driver
  when the task returns, in order; live progress events of a remote node are not
  streamed (the display shows the node running, then its result).
* **Resources.** A node's ``resources: {cpus, gpus}`` become the task's ``num_cpus`` /
  ``num_gpus`` (fractions share a GPU); a node asking for more than any machine of the
  cluster has is refused before anything runs. Its function sees ``ctx.threads`` = its
  cpus (at least 1), else the scheduler's share of the cores, as locally.
* **Faults.** A task whose worker process dies is retried ``max_retries`` times (default
  1), then the node fails with the cause. An exception raised by the node's own code is
  not retried: it would be raised again. Ctrl-C (the run's cancel flag) cancels the
  running tasks and the node is recorded as interrupted.
* **Tuners.** A tuner's trials are child runs whose nodes go through this executor too
  (`child`), so trials run on Ray workers in parallel. A tuner that owns training and
  keeps state between calls (PBT's members and their live trainers) asks for long-lived
  actors instead (`actors`, `flowopt.ray_actors.ActorGroup`); one that does not ask (STN)
  trains in the driver process.
"""
from __future__ import annotations

import socket
import sys
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Iterable, Mapping

from .errors import FlowoptError, Interrupted
from .cores import default_workers

_PROBE_SECONDS = 5.0
_BY_VALUE: set[str] = set()


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise FlowoptError("the ray executor needs Ray, which is not installed",
                           hint="pip install 'flowopt[ray]'") from None
    return ray


def _probe(address: str) -> None:
    """Fail in seconds, with one line, when nothing answers at HOST:PORT."""
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise FlowoptError(f"--address '{address}' is not auto or HOST:PORT")
    try:
        with socket.create_connection((host, int(port)), timeout=_PROBE_SECONDS):
            pass
    except OSError as exc:
        raise FlowoptError(f"no Ray cluster answers at {address} ({exc.strerror or exc})",
                           hint="start one with `ray start --head`, or leave out --address "
                                "to start a local one") from None


def _run_task(fn: Callable[..., Any], wants_context: bool, context: Mapping[str, Any],
              config: Mapping[str, Any], inputs: Mapping[str, Any]) -> tuple[Any, list]:
    """The Ray task: call a node's function with a worker-side `Context`; return its result
    and the metric points it logged (the driver records them)."""
    from flowopt.context import Context

    points: list[tuple[str, float, int | None]] = []
    ctx = Context(run_id=context["run_id"], node_id=context["node_id"], seed=context["seed"],
                  device=context["device"], cancel=threading.Event(),
                  emit=lambda *a, **k: None, threads=context["threads"],
                  log_metric=lambda key, value, step: points.append((key, value, step)))
    kwargs = {**config, **inputs}
    if wants_context:
        kwargs["ctx"] = ctx
    return fn(**kwargs), points


class RayExecutor:
    """Runs node functions as Ray tasks (see the module docstring for the policy)."""

    def __init__(self, workers: int | None = None, address: str | None = None, *,
                 max_retries: int = 1, _ray: Any = None, _remote: Any = None):
        if workers is not None and workers < 1:
            raise FlowoptError(f"--workers must be at least 1, got {workers}")
        if max_retries < 0:
            raise FlowoptError(f"max_retries must be at least 0, got {max_retries}")
        self.max_retries = max_retries
        self._owns_ray = False
        if _ray is None:
            _ray = _import_ray()
            if address not in (None, "auto"):
                _probe(address)
            if _ray.is_initialized():
                joined = _ray.get_runtime_context().gcs_address
                if address not in (None, "auto") and address != joined:
                    raise FlowoptError(f"this process is already connected to the Ray cluster "
                                       f"at {joined}, not {address}")
            else:
                try:
                    if address is None:
                        _ray.init(num_cpus=workers or default_workers(), include_dashboard=False,
                                  log_to_driver=False, configure_logging=False)
                    else:
                        _ray.init(address=address, log_to_driver=False, configure_logging=False)
                except ConnectionError as exc:
                    raise FlowoptError(f"cannot join the Ray cluster at {address}: {exc}") from None
                self._owns_ray = True
        self.ray = _ray
        self.remote = _remote or _ray.remote(_run_task)
        if workers is None:
            workers = max(1, int(_ray.cluster_resources().get("CPU", 1)))
        self.workers = workers
        self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="flowopt-ray")

    # -- the Executor protocol ---------------------------------------------------------
    def submit(self, fn: Callable[[], Any]) -> Future:
        return self._pool.submit(fn)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        if self._owns_ray:
            self.ray.shutdown()
            self._owns_ray = False

    def child(self, workers: int) -> "RayExecutor":
        """An executor for a tuner's trial runs: same cluster, its own driver threads."""
        return RayExecutor(max(1, workers), max_retries=self.max_retries, _ray=self.ray,
                           _remote=self.remote)

    def actors(self, build: Callable[[Any], Any], shared: Any, count: int, *,
               functions: Iterable[Callable[..., Any]] = (), cpus: float = 1,
               gpus: float = 0, name: str = "flowopt", tag: str | None = None,
               cancel: threading.Event | None = None) -> Any:
        """`count` long-lived actors, each holding ``build(shared)`` built inside it
        (`flowopt.ray_actors.ActorGroup`); `functions` (node kinds' functions that `build`
        reaches) travel by value where they are not importable by name. The caller closes
        the group.

        At most as many actors as the cluster has room for (its CPUs / `cpus`): an actor
        that cannot be placed would wait for ever, and every call given its slot with it;
        callers share the slots there are."""
        from .ray_actors import ActorGroup

        room = self.ray.cluster_resources().get("CPU", 0)
        if cpus > 0 and room >= cpus:
            count = min(count, int(room // cpus))

        for fn in (getattr(build, "func", build), *functions):  # a partial: its function
            self._by_value(fn)
        return ActorGroup(self.ray, build, shared, count, cpus=cpus, gpus=gpus,
                          retries=self.max_retries, name=name, tag=tag, cancel=cancel)

    # -- running one node --------------------------------------------------------------
    def check(self, graph: Any) -> None:
        """Refuse, before anything runs, a node no machine of the cluster can host."""
        machines = [n.get("Resources", {}) for n in self.ray.nodes() if n.get("Alive")]
        for node in graph:
            wanted = node.resources
            if not wanted:
                continue
            if not any(m.get("CPU", 0) >= wanted["cpus"] and m.get("GPU", 0) >= wanted["gpus"]
                       for m in machines):
                have = ", ".join(f"{m.get('CPU', 0):g} cpus/{m.get('GPU', 0):g} gpus"
                                 for m in machines) or "none"
                raise FlowoptError(
                    f"node '{node.id}': resources {{cpus: {wanted['cpus']:g}, gpus: "
                    f"{wanted['gpus']:g}}} fit no machine of the Ray cluster ({have})")

    def call(self, node: Any, ctx: Any, inputs: Mapping[str, Any]) -> dict[str, Any]:
        """Run `node`'s function as a Ray task and return its outputs (driver thread)."""
        ray = self.ray
        self._by_value(node.kind.fn)
        wanted = node.resources or {}
        threads = max(1, int(wanted["cpus"])) if wanted else ctx.threads
        context = {"run_id": ctx.run_id, "node_id": ctx.node_id, "seed": ctx.seed,
                   "device": ctx._device, "threads": threads}
        ref = self.remote.options(
            num_cpus=wanted.get("cpus", 1), num_gpus=wanted.get("gpus", 0),
            max_retries=self.max_retries, retry_exceptions=False, name=f"flowopt:{node.id}",
        ).remote(node.kind.fn, node.kind.wants_context, context, dict(node.config), dict(inputs))
        while not ray.wait([ref], timeout=0.25)[0]:
            if ctx.cancelled:
                ray.cancel(ref, force=True)
                raise Interrupted(f"node '{node.id}' cancelled")
        try:
            result, points = ray.get(ref)
        except ray.exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, BaseException):
                raise cause from None
            raise
        except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError) as exc:
            raise RuntimeError(f"the Ray worker running '{node.id}' died "
                               f"(tried {self.max_retries + 1} times): "
                               f"{type(exc).__name__}") from None
        for key, value, step in points:
            ctx.log_metric(key, value, step)
        return node.kind.normalise_outputs(result)

    def _by_value(self, fn: Callable[..., Any]) -> None:
        """A kind from a plugin file, a test module or a script may not be importable by
        name on a worker: its module's functions travel by value (flowopt's own by name)."""
        name = getattr(fn, "__module__", None) or "__main__"
        if name == "__main__" or name.split(".")[0] == "flowopt" or name in _BY_VALUE:
            return
        module = sys.modules.get(name)
        if module is not None:
            self.ray.cloudpickle.register_pickle_by_value(module)
            _BY_VALUE.add(name)


__all__ = ["RayExecutor"]
