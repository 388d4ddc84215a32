"""`TunerOwner`: the tuning layer as the engine sees it — one `flowopt.owners.SubgraphOwner`.

Every tuner kind (`kinds.register_strategy`) carries the one object `TUNERS` as its
``owner`` hook. The compiler calls `TunerOwner.plan` once with the whole pipeline
(`subgraph.plan_tuners` checks the rules across tuners); the scheduler calls
`TunerOwner.run` for each tuner node, which hands it to the loop its strategy needs:
`trials.TuningLoop` (ask → run a whole trial → tell) or, for a strategy that owns
training, `owned.OwnedLoop`. `register_tuner` (and the `tuner` decorator) registers a
strategy as a kind with this hook; it lives here, above the loops, so that no module of
this package imports one that imports it back.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, TypeVar

from flowopt.owners import Host
from flowopt.registry import NodeKind, Port

from .kinds import owns_training, register_strategy
from .owned import OwnedLoop
from .subgraph import export_port, plan_tuners
from .trials import TuningLoop


class TunerOwner:
    """The `SubgraphOwner` of every tuner kind (see the module docstring)."""

    def plan(self, spec: Any, kinds: Mapping[str, NodeKind], configs: Mapping[str, Any],
             bindings: Mapping[str, Mapping[str, Any]], dag: Any,
             error: Callable[..., Exception]) -> dict[str, Any]:
        return plan_tuners(spec, kinds, configs, bindings, dag, error)

    def export_port(self, kinds: Mapping[str, NodeKind], text: str) -> Port | None:
        return export_port(kinds, text)

    def run(self, host: Host, run_id: str, node: Any, inputs: Mapping[str, Any],
            done: Mapping[str, Mapping[str, Any]]) -> tuple[dict[str, Any], dict[str, Any],
                                                             dict[str, float]]:
        if owns_training(node.kind):
            return OwnedLoop(host, run_id, node, inputs, done).run()
        return TuningLoop(host, run_id, node, inputs, done).run()

    def summary(self, graph: Any, node_id: str, outputs: Mapping[str, Any],
                recorder: Any) -> Mapping[str, Any] | None:
        """``best``: the tuner's params and objective; with several objectives its Pareto
        front (number, params, objectives), hypervolume and reference point."""
        if "pareto" in outputs:
            return {"node": node_id,
                    "pareto": [{k: entry[k] for k in ("number", "params", "objectives")}
                               for entry in recorder.load(outputs["pareto"])],
                    "hypervolume": recorder.load(outputs["hypervolume"]),
                    "reference_point": recorder.load(outputs["reference_point"])}
        if "params" not in outputs or "objective" not in outputs:
            return None
        return {"node": node_id, "params": recorder.load(outputs["params"]),
                "objective": recorder.load(outputs["objective"])}


TUNERS = TunerOwner()

S = TypeVar("S", bound=type)


def register_tuner(kind: str, strategy: S) -> S:
    """Make ``kind`` a tuner node kind driven by ``strategy`` (a `Strategy` subclass);
    returns the class, so it can follow a class body.

    The kind's ``with:`` fields are the framework's (`kinds.TunerConfig`: mode, trials,
    parallel, max_failures, warm_start, pruner; for a strategy that owns training only
    mode and parallel) plus the strategy's own ``Config``. Registering the same class
    again is a no-op; another class under a taken name is an error.
    """
    register_strategy(kind, strategy, TUNERS)
    return strategy


def tuner(kind: str) -> Callable[[S], S]:
    """Decorator form of `register_tuner`: ``@tuner("tuner.mine") class Mine(Strategy): ...``."""

    def wrap(strategy: S) -> S:
        return register_tuner(kind, strategy)

    return wrap


__all__ = ["TUNERS", "TunerOwner", "register_tuner", "tuner"]
