"""One execution of a ``tuner.stn`` node (imports torch; loaded only when the node runs).

`StnSession` reads the owned subgraph: the model node (run once with its configured
values, which are the hyperparameters' starting points), the optimizer node (its data,
loss, algorithm, lr schedule, batch size, steps) and the objective's node (its ``data``
is the validation set of the hyperparameter steps). It turns the searched params into
STN hyperparameters — a ``dropout`` param into one per layer, each with the param's
domain — builds the STN from the model's recipe and weights, runs `loop.StnLoop`, then
scores the exported plain model by running the owned nodes after the optimizer, as
``tuner.pbt`` does. The run is recorded as one trial row (number 0) with the final
hyperparameters and the objective.

Resume: every ``checkpoint_every`` weight steps (at a cycle boundary) the loop's whole
state (`loop.StnLoop.checkpoint`: weights, λ and its scales, both optimizers' states,
batch orders, generators, the step, the schedule so far) is saved through PBT's
`RecorderCheckpoints`, in the optimizer checkpoints' encoding, and then trial row 0
(status ``running``) names it. A run of the same node after a kill (same cache key,
found as PBT finds its killed population: `TrainingSession.resumable_trials`) restores
the last one and trains on; it ends as a run never killed, bit for bit on one machine.
"""
from __future__ import annotations

import math
import threading
import time
from typing import Any, Mapping

from flowopt.artifacts import Model, as_metric
from flowopt.context import Context
from flowopt.errors import FlowoptError
from flowopt.tuning.records import FrozenTrial

from ...optimizer.training import decode_checkpoint, encode_checkpoint
from ..pbt.checkpoints import RecorderCheckpoints
from ..pbt.node import param_fields
from .loop import Settings, StnLoop
from .node import roles


def _quiet(node: Any, device: str, cancel: threading.Event, threads: int) -> Context:
    return Context(run_id="stn", node_id=node.id, seed=node.seed, device=device, cancel=cancel,
                   emit=lambda *_, **__: None, log_metric=lambda *_: None, threads=threads)


def hyper_specs(recipe: Mapping[str, Any], fields: Mapping[str, list[str]],
                space: Mapping[str, Any]) -> tuple[list[dict[str, Any]], dict[str, list[str]]]:
    """STN hyperparameters for the searched params, and param -> hyperparameter names."""
    from ...stn_layers import tunable

    names = tunable(recipe)
    specs: list[dict[str, Any]] = []
    owners: dict[str, list[str]] = {}
    for param, keys in fields.items():
        domain = space[param]
        for key in keys:
            for name in (n for n in names if n.split(".")[0] == key):
                specs.append({"name": name, "low": float(domain.low), "high": float(domain.high),
                              "log": bool(domain.log), "integer": bool(domain.integer)})
                owners.setdefault(param, []).append(name)
    return specs, owners


def as_params(values: Mapping[str, float], owners: Mapping[str, list[str]]) -> dict[str, Any]:
    """Hyperparameter values as the searched params (dropout: a list, one per layer)."""
    out: dict[str, Any] = {}
    for param, names in owners.items():
        if names[0].startswith("dropout."):
            out[param] = [values[n] for n in names]
        elif names[0] == "cutout":
            out[param] = int(values[names[0]])
        else:
            out[param] = values[names[0]]
    return out


class StnSession:
    """Runs the STN for one node execution (see the module docstring)."""

    def __init__(self, strategy: Any, session: Any) -> None:
        self.strategy, self.session, self.config = strategy, session, strategy.config

    def _inputs(self, nid: str) -> dict[str, Any]:
        node = self.session.graph.nodes[nid]
        return {port: self.session.value(b) for port, b in node.inputs.items()}

    def run(self) -> dict[str, Any]:
        import torch

        from ...loss import check_task
        from ...optimizer.common import _SCHEDULE, optimizer_for
        from ...optimizer.training import resolve_device
        from ...stn_layers import build_stn, load_general

        s, config = self.session, self.config
        graph, plan = s.graph, s.plan
        kinds = {nid: n.kind for nid, n in graph.nodes.items()}
        trainers, model_id = roles(plan, graph.spec, kinds)
        train_id = trainers[0]
        assert model_id is not None
        model_node, train_node = graph.nodes[model_id], graph.nodes[train_id]
        objective_node = graph.nodes[plan.objective.node]
        device = resolve_device(str(train_node.config.get("device", "auto")),
                                _quiet(s.node, s.device, s.cancel, s.threads))
        torch.set_num_threads(s.threads)

        model: Model = model_node.kind.call(_quiet(model_node, device, s.cancel, s.threads),
                                            self._inputs(model_id),
                                            dict(model_node.config))["model"]
        base = model.recipe["base"] if model.recipe.get("builder") == "stn" else model.recipe
        fields = param_fields(graph.spec, model_id, list(plan.space))
        specs, owners = hyper_specs(base, fields, plan.space)
        net = build_stn(base, specs, delta=config.delta_stn,
                        generator=torch.Generator().manual_seed(s.node.seed % (2 ** 63)))
        load_general(net, model.module)

        train_inputs = {port: (s.value(b) if b.node != model_id else model)
                        for port, b in train_node.inputs.items()}
        data, loss = train_inputs["data"], train_inputs["loss"]
        val = s.value(objective_node.inputs["data"])
        check_task(f"tuner '{s.node.id}'", loss, model, data, val)
        steps = config.steps or int(train_node.config["steps"])
        batch_size = int(train_node.config["batch_size"])
        warmup = config.warmup
        if warmup is None:  # the reference's five epochs, leaving most steps to tuning
            warmup = min(5 * math.ceil(len(data) / batch_size), steps // 4)
        default_t = 2 if base["builder"] == "cnn" else 5
        settings = Settings(steps=steps, batch_size=batch_size, warmup=warmup,
                            train_steps=config.train_steps or default_t,
                            valid_steps=config.valid_steps, hyper_lr=config.hyper_lr,
                            entropy_weight=config.entropy_weight, scale=config.scale,
                            delta=config.delta_stn, checkpoint_every=config.checkpoint_every,
                            eval_every=int(train_node.config.get("eval_every", 50)))
        loop = StnLoop(net, base, data, val, loss.build(),
                       optimizer_for(train_node.kind.name, train_node.config), settings,
                       seed=s.node.seed % (2 ** 31), device=device,
                       schedule=_SCHEDULE.validate_python(train_node.config["schedule"]),
                       log=s.log_metric, cancel=s.cancel, name=f"tuner '{s.node.id}'",
                       meta=dict(model.meta))
        checkpoints = RecorderCheckpoints(s.recorder, encode_checkpoint, decode_checkpoint, keep=1)
        earlier = next((t for t in s.resumable_trials()
                        if t.number == 0 and (t.attributes or {}).get("checkpoint_id")), None)
        if earlier is not None:  # a killed run of this node: go on from its last checkpoint
            checkpoint_id = earlier.attributes["checkpoint_id"]
            loop.restore(checkpoints.load(checkpoint_id))
            self._running(loop, owners, checkpoint_id)
            s.log_metric("resumed_from", float(loop.step), None)

        def save(run: StnLoop) -> None:
            self._running(run, owners, checkpoints.save(0, run.step, run.checkpoint()))

        started = time.perf_counter()
        result = loop.run(on_checkpoint=save)
        for key, value in (("weight_steps", result.weight_steps),
                           ("hyper_steps", result.hyper_steps), ("passes", result.passes),
                           ("wall_seconds", time.perf_counter() - started)):
            s.log_metric(key, float(value), None)

        produced = self._evaluate(result.plain, train_id)
        objective = as_metric(produced[plan.objective.node][plan.objective.port])
        if not math.isfinite(objective):
            raise FlowoptError(f"tuner '{s.node.id}': the trained network's objective is "
                               f"{objective}")
        params = as_params(result.final, owners)
        s.recorder.record_trial(FrozenTrial(
            run_id=s.run_id, node_id=s.node.id, number=0, params=params, status="succeeded",
            values=objective, steps=result.passes, attributes=dict(s.attributes)))
        recipe = {"builder": "stn", "base": base, "hyper": specs, "delta": config.delta_stn}
        values: dict[str, Any] = {
            "params": params, "objective": objective,
            "schedule": {"steps": steps, "weight_steps": result.weight_steps,
                         "hyper_steps": result.hyper_steps,
                         "schedule": [{"step": step, "params": as_params(v, owners)}
                                      for step, v in result.schedule]},
            "network": Model(module=result.net, recipe=recipe, meta=result.plain.meta)}
        for nid, outputs in produced.items():
            for port, value in outputs.items():
                values[f"{nid}.{port}"] = value
        return values

    def _running(self, loop: StnLoop, owners: Mapping[str, list[str]], checkpoint_id: str) -> None:
        """Trial row 0 while training: the current params and the last checkpoint (written
        before this row names it), which a run of the same node resumes from."""
        s = self.session
        s.recorder.record_trial(FrozenTrial(
            run_id=s.run_id, node_id=s.node.id, number=0, params=as_params(loop.values(), owners),
            status="running", values=None, steps=loop.passes,
            attributes={**s.attributes, "checkpoint_id": checkpoint_id, "step": loop.step}))

    def _evaluate(self, model: Model, train_id: str) -> dict[str, dict[str, Any]]:
        """Run the owned nodes after the optimizer on `model` (as ``tuner.pbt`` scores)."""
        s = self.session
        produced: dict[str, dict[str, Any]] = {train_id: {"model": model}}
        after = s.plan.owned[s.plan.owned.index(train_id) + 1:]
        for nid in after:
            node = s.graph.nodes[nid]
            inputs = {port: produced[b.node][b.port] if b.node in produced else s.value(b)
                      for port, b in node.inputs.items()}
            produced[nid] = node.kind.call(_quiet(node, "cpu", s.cancel, s.threads), inputs,
                                           dict(node.config))
        return produced
