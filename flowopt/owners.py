"""Kinds that own a subgraph: the one hook the compiler and the scheduler know.

Some node kinds run other nodes of the pipeline themselves, many times (a tuner runs the
nodes between its searched params and its objective once per trial). The engine does
not know what such a kind does; it knows only this protocol, set on the kind as
``NodeKind.owner`` (`flowopt.registry`):

* at compile time `SubgraphOwner.plan` works out and checks what each of its nodes owns
  and returns an `OwnedPlan` per node (the compiler adds the plan's ``fingerprint`` to
  the node's cache key, and `SubgraphOwner.export_port` resolves bindings such as
  ``tune.train`` — the owner's copy of an owned node's output);
* the scheduler leaves owned nodes out of the run (`Graph.scheduled`), makes the owner
  node wait for its **frontier** (the outputs of non-owned nodes that owned nodes
  read), and calls `SubgraphOwner.run` with a `Host` — a typed view of the run, never
  the scheduler itself;
* `SubgraphOwner.summary` gives what ``run --json`` prints for the node (``best``).

So the dependency runs one way: `flowopt.tuning` implements this protocol and imports
the compiler and the scheduler; they never import it. Owner objects are compared by
identity: the compiler calls `plan` once per distinct owner with every node of the
pipeline whose kind has that owner, so one owner can check rules across its nodes
(no param searched by two tuners).
"""
from __future__ import annotations

import threading
from typing import Any, Callable, Mapping, Protocol


class OwnedPlan(Protocol):
    """What an owner node owns (frozen; built by `SubgraphOwner.plan`)."""

    node_id: str
    owned: tuple[str, ...]  # node ids it runs itself, in the graph's topological order
    frontier: Mapping[str, Any]  # "node.port" -> Binding: non-owned outputs owned nodes read

    def fingerprint(self) -> Mapping[str, Any]:
        """What enters the owner node's cache key beyond its config and inputs."""


class Host(Protocol):
    """What an owner node may use of the run that executes it.

    ``graph`` is the whole compiled graph (owned nodes included: `flowopt.graph.Graph`);
    ``recorder`` is the run's recorder (the engine's `Recorder` plus whatever protocols
    the owner needs of it, e.g. `flowopt.tuning.records.TuningRecorder`); ``cancel`` is
    the run's cancel flag (set by Ctrl-C; owners stop their work when it is set);
    ``device`` the run's device option; ``threads`` the CPU threads the owner node may
    use; ``workers`` the run executor's workers; ``use_cache`` false under
    ``--no-cache``; ``source`` the pipeline file, if any; ``actors`` the executor's
    factory of long-lived workers that keep state between calls
    (`flowopt.ray_executor.RayExecutor.actors`), None where the executor runs everything
    in this process (local).
    """

    graph: Any
    recorder: Any
    cancel: threading.Event
    device: str
    threads: int
    workers: int
    use_cache: bool
    source: str | None
    actors: Callable[..., Any] | None

    def emit(self, event: str, **kwargs: Any) -> None:
        """Send a run event to the listeners (progress display, hooks)."""

    def log_metric(self, node_id: str, key: str, value: float, step: int | None) -> None:
        """One point of the metric series ``node_id.key`` of this run."""

    def run_subgraph(self, graph: Any, recorder: Any, *, workers: int = 1,
                     threads: int = 1) -> Any:
        """Run a compiled graph as a run of its own (a child run: `recorder` decides its
        parent) with this run's device, cancel flag and cache policy; returns its
        `flowopt.scheduler.RunResult` (a failed node is a result, not an exception)."""


class SubgraphOwner(Protocol):
    """The hook of a kind that owns a subgraph (see the module docstring)."""

    def plan(self, spec: Any, kinds: Mapping[str, Any], configs: Mapping[str, Any],
             bindings: Mapping[str, Mapping[str, Any]], dag: Any,
             error: Callable[..., Exception]) -> dict[str, OwnedPlan]:
        """Plans for every node of `spec` whose kind has this owner, after checking them;
        raise ``error(path, message, hint=None)`` to refuse (exit 2, one line)."""

    def export_port(self, kinds: Mapping[str, Any], text: str) -> Any:
        """``NODE[.PORT]`` as an output port of the owner node (a `Port`), or None."""

    def run(self, host: Host, run_id: str, node: Any, inputs: Mapping[str, Any],
            done: Mapping[str, Mapping[str, Any]]) -> tuple[dict[str, Any], dict[str, Any],
                                                             dict[str, float]]:
        """Execute owner node `node`: its `inputs` are the frontier's values, `done` the
        `ArtifactRef`s of every node finished so far. Returns ``(values, refs, metrics)``
        as the scheduler records them; raises to fail the node."""

    def summary(self, graph: Any, node_id: str, outputs: Mapping[str, Any],
                recorder: Any) -> Mapping[str, Any] | None:
        """What ``run --json`` prints as ``best`` for a finished owner node, or None."""


__all__ = ["Host", "OwnedPlan", "SubgraphOwner"]
