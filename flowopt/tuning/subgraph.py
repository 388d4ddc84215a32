"""What a tuner owns, worked out and checked when the pipeline is compiled.

A tuner node's ``objective`` input is bound to a metric port ``O.m``. The tuner **owns**
every node that both lies upstream of ``O`` (``O`` included) and is reached by one of
the params it **searches** — the ``search:`` params that reach ``O``. Per trial, the
owned nodes run again with the trial's param values; everything else upstream of ``O``
does not depend on them, so it runs once, in the tuning run itself, before the tuner.

Consequences, each enforced here (a `GraphError` naming file:line and key, before
anything runs):

* the objective must be a metric port, and at least one searched param must reach it;
* every ``search:`` param must matter to some tuner's objective (one that reaches none
  "cannot matter" — an error rather than a warning, because the trials it would cost are
  real), and no param is searched by two tuners;
* a tuner must not own another tuner; a node that is not owned must not consume an owned
  node's output directly — it binds ``TUNER.NODE[.PORT]``, the best trial's output;
* ``parallel`` must not exceed ``trials``, and the strategy's own config must validate;
* capabilities (`flowopt.tuning.strategy`): several objectives (a list ``mode``) only on
  a strategy with ``multi_objective``; a ``pruner`` only with one objective, on a tuner
  that owns exactly one training node that can pause (a kind declared with
  ``training=``), and only with fields the pruner accepts (`pruner.validate_pruner`);
* a searched param that sets a field of an owned training node while it trains (PBT
  always, a pruner's resumed trials never — they keep their params) must be one the
  kind declares ``mutable`` (`mutable_fields` for the strategies that ask it);
* a strategy may check its plan further (``check_plan(plan, spec, kinds, configs, error)``:
  tuner.pbt refuses params that training cannot change mid-run).

For scheduling, the tuning run sees a reduced graph (`flowopt.graph.Graph.scheduled`):
owned nodes are left out (they run in the trials' child runs) and the tuner's inputs
become its **frontier** — the outputs of non-owned nodes that owned nodes consume — so
the tuner starts once they are done, and its input edges in the store are honest lineage.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, Mapping

import networkx as nx
import pydantic

from flowopt.artifacts import canonical_json
from flowopt.registry import NodeKind, Port
from flowopt.spec import PARAM_REF, Domain, PipelineSpec

from .kinds import is_tuner, split_config, strategy_class
from .pruner import validate_pruner


@dataclass(frozen=True)
class TunerPlan:
    """A tuner's share of the graph (frozen; built by `plan_tuners`)."""

    node_id: str
    kind: str
    objective: Any  # flowopt.graph.Binding: the metric port the tuner reads
    space: Mapping[str, Domain]  # searched params, in search: order
    owned: tuple[str, ...]  # run per trial, in the graph's topological order
    needed: tuple[str, ...]  # upstream closure of the objective: a trial graph's nodes
    frontier: Mapping[str, Any]  # "node.port" -> Binding: non-owned outputs owned nodes use
    space_key: str
    #: every objective binding in order (several objectives); empty means (objective,)
    all_objectives: tuple[Any, ...] = ()
    #: the owned nodes whose kind trains and can pause (`flowopt.training`), in order
    training: tuple[str, ...] = ()

    @property
    def metric(self) -> str:
        return f"{self.objective.node}.{self.objective.port}"

    @property
    def objectives(self) -> tuple[Any, ...]:
        """Every objective binding, in the order written."""
        return self.all_objectives or (self.objective,)

    @property
    def metrics(self) -> tuple[str, ...]:
        """``NODE.PORT`` of every objective, in order."""
        return tuple(f"{b.node}.{b.port}" for b in self.objectives)

    def fingerprint(self) -> dict[str, Any]:
        """What enters the tuner's cache key beyond its config and input: the space."""
        return {"__search__": {k: d.model_dump() for k, d in self.space.items()}}


def export_port(kinds: Mapping[str, NodeKind], text: str) -> Port | None:
    """``NODE[.PORT]`` as a tuner's output port named ``NODE.PORT`` (None if no such output)."""
    node_id, _, port = text.partition(".")
    kind = kinds.get(node_id)
    output = kind.output(port or None) if kind is not None else None
    if output is None:
        return None
    return Port(f"{node_id}.{output.name}", output.type, output.optional)


def plan_tuners(spec: PipelineSpec, kinds: Mapping[str, NodeKind], configs: Mapping[str, Any],
                bindings: Mapping[str, Mapping[str, Any]], dag: nx.DiGraph,
                error: Callable[..., Exception]) -> dict[str, TunerPlan]:
    """Plans for every tuner node, after checking the rules in the module docstring."""
    tuners = [nid for nid in spec.nodes if is_tuner(kinds[nid])]
    if not tuners:
        return {}
    order = {nid: i for i, nid in enumerate(nx.lexicographical_topological_sort(dag))}
    plans: dict[str, TunerPlan] = {}
    claimed: dict[str, str] = {}
    for tid in tuners:
        _check_config(tid, kinds[tid].name, configs[tid], error)
        objective = bindings[tid]["objective"]
        objectives = [objective] + [bindings[tid][f"objective[{i}]"]
                                    for i in range(1, len(bindings[tid]))
                                    if f"objective[{i}]" in bindings[tid]]
        _check_objectives(tid, kinds[tid].name, configs[tid], len(objectives), error)
        for i, obj in enumerate(objectives):
            source = kinds[obj.node]
            if obj.port not in source.metrics:
                metrics = ", ".join(source.metrics) or "none"
                where = ("nodes", tid, "in", "objective") + ((i,) if len(objectives) > 1 else ())
                raise error(where, f"the objective must be a metric port; '{obj}' is not one "
                                   f"(metrics of '{obj.node}' ({source.name}): {metrics})")
        upstream = set().union(*(nx.ancestors(dag, o.node) | {o.node} for o in objectives))
        searched = [p for p in spec.search if f"params.{p}" in upstream]
        if not searched:
            what = ", ".join(spec.search) or "none"
            raise error(("nodes", tid, "in", "objective"),
                        f"tuner '{tid}': objective '{objective}' depends on no searched param "
                        f"(search: {what})",
                        hint="add the params to search: (or fo.param(..., low=, high=)) and use "
                             "them in nodes upstream of the objective")
        for name in searched:
            if name in claimed:
                raise error(("search", name), f"param '{name}' is searched by two tuners "
                                              f"('{claimed[name]}' and '{tid}')")
            claimed[name] = tid
        reached = set().union(*(nx.descendants(dag, f"params.{p}") for p in searched))
        owned = sorted((n for n in upstream if n in reached and not dag.nodes[n].get("param")),
                       key=order.__getitem__)
        for nid in owned:
            if is_tuner(kinds[nid]):
                raise error(("nodes", nid), f"tuner '{tid}' would run tuner '{nid}' in every "
                                            "trial: its searched params reach it",
                            hint="a tuner cannot own another tuner; search disjoint params")
        needed = sorted((n for n in upstream if not dag.nodes[n].get("param")),
                        key=order.__getitem__)
        owned_set = set(owned)
        frontier = {f"{b.node}.{b.port}": b for nid in owned for b in bindings[nid].values()
                    if b.node not in owned_set}
        space = {p: spec.search[p] for p in searched}
        space_key = hashlib.blake2b(canonical_json({
            "space": {k: d.model_dump() for k, d in space.items()},
            "objective": str(objective) if len(objectives) == 1 else [str(o) for o in objectives]}),
            digest_size=16).hexdigest()
        plans[tid] = TunerPlan(node_id=tid, kind=kinds[tid].name, objective=objective,
                               space=MappingProxyType(space), owned=tuple(owned),
                               needed=tuple(needed), frontier=MappingProxyType(frontier),
                               space_key=space_key,
                               all_objectives=tuple(objectives) if len(objectives) > 1 else (),
                               training=tuple(n for n in owned if kinds[n].training is not None))
        _check_capabilities(plans[tid], kinds, configs, error)
        check = getattr(strategy_class(kinds[tid].name), "check_plan", None)
        if check is not None:  # e.g. tuner.pbt: only params training can change mid-run
            check(plans[tid], spec, kinds, configs, error)
        if getattr(split_config(kinds[tid].name, dict(configs[tid]))[0], "pruner", None):
            from .pausable import check_resource  # early stopping: the steps are not searched

            check_resource(plans[tid], spec, kinds, error)
    _check_claims(spec, dag, claimed, error)
    _check_consumers(spec, kinds, bindings, plans, error)
    return plans


def _check_config(tid: str, kind: str, config: Mapping[str, Any],
                  error: Callable[..., Exception]) -> None:
    try:
        framework, _ = split_config(kind, dict(config))
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        raise error(("nodes", tid, "with", *first["loc"]), first["msg"]) from None
    trials = getattr(framework, "trials", None)  # a tuner that owns training has none
    if trials is not None and framework.parallel > trials:
        raise error(("nodes", tid, "with", "parallel"),
                    f"parallel ({framework.parallel}) must not exceed trials ({trials})")


def _check_objectives(tid: str, kind: str, config: Mapping[str, Any], count: int,
                      error: Callable[..., Exception]) -> None:
    """Several objectives: one mode each and a sound reference point (which strategies
    take several objectives is `_check_capabilities`' rule)."""
    from .objectives import check_objectives

    if not getattr(strategy_class(kind), "multi_objective", False):
        return  # `_check_capabilities` refuses several objectives in one line
    framework, _ = split_config(kind, dict(config))
    problem = check_objectives(count, framework.mode, getattr(framework, "reference_point", None))
    if problem is not None:
        raise error(("nodes", tid, "with", problem[0]), f"tuner '{tid}': {problem[1]}")
def _check_capabilities(plan: TunerPlan, kinds: Mapping[str, NodeKind],
                        configs: Mapping[str, Any], error: Callable[..., Exception]) -> None:
    """What the strategy and the pruner support (module docstring), one line each."""
    tid = plan.node_id
    strategy = strategy_class(plan.kind)
    framework, _ = split_config(plan.kind, dict(configs[tid]))
    objectives = max(len(framework.modes), len(plan.objectives))
    if objectives > 1 and not getattr(strategy, "multi_objective", False):
        raise error(("nodes", tid, "with", "mode"),
                    f"tuner '{tid}' ({plan.kind}) takes one objective, got {objectives}",
                    hint="use a multi-objective tuner, or one objective and one mode")
    pruner = getattr(framework, "pruner", None)
    if pruner is None:
        return
    where = ("nodes", tid, "with", "pruner")
    if objectives > 1:
        raise error(where, f"tuner '{tid}': a pruner needs one objective, got {objectives}")
    if len(plan.training) != 1:
        owned = ", ".join(f"{n} ({kinds[n].name})" for n in plan.owned)
        why = ("owns no node that trains and can pause" if not plan.training else
               f"owns {len(plan.training)} training nodes ({', '.join(plan.training)})")
        raise error(where, f"tuner '{tid}' cannot prune: it {why}; a pruner stops one "
                           f"training node early (owned: {owned})")
    train = plan.training[0]
    steps = configs[train].get(kinds[train].training.steps)
    try:
        validate_pruner(pruner, int(steps) if steps is not None else None)
    except ValueError as exc:
        raise error(where, f"tuner '{tid}': {exc}") from None


def mutable_fields(plan: TunerPlan, spec: PipelineSpec, kinds: Mapping[str, NodeKind],
                   error: Callable[..., Exception], *, who: str) -> dict[str, list[str]]:
    """Searched param -> the fields of the one owned training node it sets, refusing a
    param that sets anything else or a field the kind cannot change mid-run.

    For a strategy that changes params while a model trains (`who` names it in the
    message, e.g. ``tuner.pbt``). A param must be the whole value of the field
    (``lr: ${params.lr}``); one line per refusal, at the ``search:`` entry.
    """
    if len(plan.training) != 1:
        raise error(("nodes", plan.node_id, "in", "objective"),
                    f"{who} needs exactly one training node between the searched params and "
                    f"the objective; '{plan.node_id}' owns {len(plan.training)} "
                    f"({', '.join(plan.training) or 'none'})")
    train = plan.training[0]
    declared = kinds[train].training
    fields: dict[str, list[str]] = {name: [] for name in plan.space}
    for nid in plan.owned:
        for key, value in spec.nodes[nid].config.items():
            names = set(PARAM_REF.findall(str(value))) & set(plan.space)
            whole = PARAM_REF.fullmatch(value) if isinstance(value, str) else None
            for name in sorted(names):
                if nid == train and key in declared.mutable and whole:
                    fields[name].append(key)
                    continue
                who_changes = (f"{kinds[nid].name} cannot change" if nid == train else
                               "cannot change")
                raise error(("search", name),
                            f"{who}: searched param '{name}' sets {nid}.with.{key}, which "
                            f"{who_changes} while {train} trains ({who} can change {train}'s "
                            f"{', '.join(declared.mutable)})",
                            hint="search it with tuner.random or tuner.bayesopt instead")
    return fields


def _check_claims(spec: PipelineSpec, dag: nx.DiGraph, claimed: Mapping[str, str],
                  error: Callable[..., Exception]) -> None:
    for name in spec.search:
        if name in claimed:
            continue
        users = sorted(n for n in dag.successors(f"params.{name}"))
        if not users:
            raise error(("search", name), f"search param '{name}' cannot matter: no node uses "
                                          f"${{params.{name}}}",
                        hint="remove it from search:, or use it in a node's with:")
        raise error(("search", name), f"search param '{name}' cannot matter: no tuner's objective "
                                      f"depends on it (it reaches {', '.join(users)})",
                    hint="remove it from search:, or use it upstream of the objective")


def _check_consumers(spec: PipelineSpec, kinds: Mapping[str, NodeKind],
                     bindings: Mapping[str, Mapping[str, Any]], plans: Mapping[str, TunerPlan],
                     error: Callable[..., Exception]) -> None:
    owner = {nid: plan.node_id for plan in plans.values() for nid in plan.owned}
    for nid in spec.nodes:
        for port, b in bindings[nid].items():
            where = ("nodes", nid, "in", port)
            if b.node in plans and "." in b.port:
                plan = plans[b.node]
                exported = b.port.split(".", 1)[0]
                if exported not in plan.owned:
                    raise error(where, f"'{b.node}.{b.port}': tuner '{b.node}' does not run "
                                       f"'{exported}' (it owns: {', '.join(plan.owned)})")
            elif b.node in owner and owner.get(nid) != owner[b.node] \
                    and not (nid == owner[b.node] and port.startswith("objective")):
                tid = owner[b.node]
                raise error(where, f"'{nid}' consumes '{b}', which tuner '{tid}' runs once per "
                                   "trial", hint=f"bind '{tid}.{b}' to use the best trial's output")


def trial_spec(graph: Any, plan: TunerPlan, params: Mapping[str, Any]) -> PipelineSpec:
    """The pipeline one trial runs: the objective's upstream closure, the trial's values
    in place of the searched params' (node ids, seeds and every other value unchanged, so
    nodes the params do not reach keep their cache keys)."""
    needed = set(plan.needed)
    inner = {name for other in graph.tuners.values() if other.node_id in needed
             for name in other.space}
    spec = graph.spec
    return spec.model_copy(update={
        "params": {**spec.params, **params},
        "nodes": {nid: n for nid, n in spec.nodes.items() if nid in needed},
        "search": {k: d for k, d in spec.search.items() if k in inner},
        "plugins": []})  # already loaded by the tuning run (and relative to its file)
