"""``tuner.stn``: Self-Tuning Networks as a pipeline node (MacKay et al. 2019; Delta-STN,
Bae & Grosse 2020).

A tuner that owns training (`flowopt.tuning.owned`), like ``tuner.pbt``, but with one
network instead of a population: the model node it owns is rebuilt with STN layers
(`flowopt.nodes.stn_layers`), and one run alternates weight steps on the optimizer
node's training data with hyperparameter steps on the objective node's validation data
(`loop`). The searched params are the model's regularisers: every hyperparameter is
adapted online, so what comes out is a *schedule*, not one value per param.

Checked at compile time (`check_plan`, exit 2, one line, nothing stored):

* the tuner owns exactly one optimizer node (any optimizer kind: the weight steps use
  the kind's own algorithm and lr schedule) and one model node feeding it, of a kind with
  STN layers (``model.mlp``, ``model.cnn``);
* every searched param sets, as a whole value, one of that model's fields STN can tune —
  ``dropout`` (one hyperparameter per layer, all starting at the param's value), and
  ``input_noise``; for ``model.cnn`` also ``cutout`` (an integer range). A param reaching
  anything else (the learning rate, a width, a batch size) is refused, naming which
  fields STN can tune; so are choices (STN needs a range) and a dropout range outside
  [0, 1);
* the objective comes from a node with a ``data`` input the tuner does not own (e.g.
  ``evaluator.classification`` on the validation split): its batches drive the
  hyperparameter steps;
* ``train_steps`` and ``valid_steps`` ≥ 1 and ``entropy_weight`` ≥ 0 (field checks);
  ``parallel`` is 1 (one network).

Outputs: ``params`` (the final hyperparameters as the model's fields: ``dropout`` a list
with one rate per layer), ``objective`` (the objective of the exported model),
``schedule`` (``{"steps", "weight_steps", "hyper_steps", "schedule": [{step, params}]}``,
the hyperparameters in force from each step on), ``network`` (the trained STN itself,
recipe + weights) and every owned node's outputs after the optimizer as ``NODE.PORT``:
``tune.train`` is the trained model exported as a plain model at the final
hyperparameters. Each hyperparameter's value and perturbation scale are logged per
hyperparameter step as the tuner's metric series ``hyper.NAME`` and
``hyper_scale.NAME``, beside ``loss``, ``lr`` and ``val_loss`` (see docs/stn.md).

A killed run resumes: the run is checkpointed every ``checkpoint_every`` weight steps
and the same pipeline run again goes on from the last checkpoint (`session`).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from flowopt.registry import Port
from flowopt.spec import PARAM_REF

from ...optimizer.common import is_optimizer_kind
from ..strategy import Strategy, register_tuner

MODELS = {"model.mlp": ("dropout", "input_noise"),
          "model.cnn": ("dropout", "input_noise", "cutout")}


class StnConfig(BaseModel):
    """``tuner.stn``'s own ``with:`` fields (see `SelfTuningNetworks`)."""

    model_config = ConfigDict(extra="forbid")
    warmup: int | None = Field(None, ge=0)
    train_steps: int | None = Field(None, ge=1)
    valid_steps: int = Field(1, ge=1)
    hyper_lr: float = Field(3e-3, gt=0)
    entropy_weight: float = Field(1e-3, ge=0)
    scale: float = Field(0.5, gt=0)
    delta_stn: bool = False
    steps: int | None = Field(None, ge=1)
    checkpoint_every: int = Field(250, ge=0)


def _kind_name(kind: Any) -> str:
    return kind if isinstance(kind, str) else kind.name


def roles(plan: Any, spec: Any, kinds: Mapping[str, Any]) -> tuple[list[str], str | None]:
    """The owned optimizer nodes, and the node feeding the first one's ``model`` input."""
    trainers = [nid for nid in plan.owned if _kind_name(kinds[nid]).startswith("optimizer.")]
    if not trainers:
        return trainers, None
    source = spec.nodes[trainers[0]].inputs.get("model")
    return trainers, (source.split(".", 1)[0] if source else None)


class SelfTuningNetworks(Strategy):
    """Self-Tuning Networks (MacKay et al. 2019): one training run whose network carries
    STN layers and adapts its regularisation hyperparameters online by alternating
    weight steps (training data, perturbed hyperparameters) and hyperparameter steps
    (validation data, eval mode); ``delta_stn: true`` uses Delta-STN (Bae & Grosse 2020).

    Ports: ``objective`` (in, a metric port downstream of one optimizer node);
    ``params``, ``objective``, ``schedule``, ``network`` and the owned outputs (out).
    ``with:`` (defaults, the reference code's): ``mode`` (required), ``warmup`` (weight
    steps before the first hyperparameter step; null: 5 epochs of the training data, at
    most a quarter of the steps), ``train_steps`` (T_train, weight steps per cycle; null:
    5 for model.mlp, 2 for model.cnn), ``valid_steps`` (T_valid, 1), ``hyper_lr`` (Adam's
    lr on the hyperparameters and scales, 3e-3), ``entropy_weight`` (τ, 1e-3),
    ``scale`` (initial perturbation std in the unconstrained space, 0.5), ``delta_stn``
    (false), ``steps`` (weight steps; null: the optimizer node's ``steps``), ``parallel``
    (must be 1). See docs/stn.md.
    """

    Config = StnConfig
    owns_training = True
    extra_outputs = (Port("schedule", Any), Port("network", Any))

    def ask(self, pending: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """The starting hyperparameters (STN runs once; nothing else is asked)."""
        raise NotImplementedError("tuner.stn owns its training run (run_owned)")

    @staticmethod
    def check_plan(plan: Any, spec: Any, kinds: Mapping[str, Any], configs: Any,
                   error: Any) -> None:
        """Refuse what STN cannot tune (see the module docstring)."""
        tid = plan.node_id
        trainers, model_id = roles(plan, spec, kinds)
        if len(trainers) != 1:
            raise error(("nodes", tid, "in", "objective"),
                        f"tuner.stn needs exactly one optimizer node between the searched "
                        f"params and the objective; '{tid}' owns {len(trainers)} "
                        f"({', '.join(trainers) or 'none'})")
        train = trainers[0]
        kind = _kind_name(kinds[train])
        if not is_optimizer_kind(kind):
            raise error(("nodes", train, "kind"),
                        f"tuner.stn trains with an optimizer kind (one registered through "
                        f"optimizer_kind); '{train}' is {kind}")
        if model_id is None or model_id not in plan.owned:
            raise error(("nodes", train, "in", "model"),
                        f"tuner.stn: the model '{train}' trains must be built by a node the "
                        f"searched params reach (a model.mlp or model.cnn with e.g. "
                        f"dropout: ${{params.dropout}})")
        model_kind = _kind_name(kinds[model_id])
        if model_kind not in MODELS:
            raise error(("nodes", model_id, "kind"),
                        f"tuner.stn: model kind '{model_kind}' has no STN layers (STN layers "
                        f"exist for {', '.join(MODELS)})")
        tunable = MODELS[model_kind]
        can = f"STN tunes {model_id}'s {', '.join(tunable)}"
        for nid in plan.owned:
            for key, value in spec.nodes[nid].config.items():
                whole = PARAM_REF.fullmatch(value) if isinstance(value, str) else None
                for name in set(PARAM_REF.findall(str(value))) & set(plan.space):
                    if nid != model_id or key not in tunable or whole is None:
                        raise error(("search", name),
                                    f"tuner.stn: searched param '{name}' sets "
                                    f"{nid}.with.{key}, which STN cannot tune ({can})",
                                    hint="search it with tuner.random or tuner.bayesopt instead")
                    _check_domain(name, key, plan.space[name], error)
        framework = configs[tid]
        if int(framework.get("parallel", 1)) != 1:
            raise error(("nodes", tid, "with", "parallel"),
                        "tuner.stn trains one network: parallel must be 1")
        objective = spec.nodes[plan.objective.node]
        data = objective.inputs.get("data")
        if data is None or data.split(".", 1)[0] in plan.owned:
            raise error(("nodes", tid, "in", "objective"),
                        f"tuner.stn: the objective's node '{plan.objective.node}' needs a "
                        f"'data' input the tuner does not own (the validation data of its "
                        f"hyperparameter steps)")
        own = configs[tid]
        steps = own.get("steps") or configs[train].get("steps")
        warmup = own.get("warmup")
        if warmup is not None and steps is not None and warmup >= steps:
            raise error(("nodes", tid, "with", "warmup"),
                        f"tuner.stn: warmup ({warmup}) must be below the weight steps ({steps})")

    def run_owned(self, session: Any) -> dict[str, Any]:
        """Train the STN (see the module docstring); returns the tuner's values."""
        from .session import StnSession

        return StnSession(self, session).run()


def _check_domain(name: str, key: str, domain: Any, error: Any) -> None:
    where = ("search", name)
    if domain.choices is not None:
        raise error(where, f"tuner.stn: searched param '{name}' has choices; STN tunes a "
                           f"range (give low and high)")
    if key == "dropout" and not (domain.low >= 0 and domain.high < 1):
        raise error(where, f"tuner.stn: the dropout range of '{name}' must lie in [0, 1) "
                           f"(got {domain.low} to {domain.high})")
    if key == "input_noise" and domain.low < 0:
        raise error(where, f"tuner.stn: the input_noise range of '{name}' must start at 0 "
                           f"or above (got {domain.low})")
    if key == "cutout" and not domain.integer:
        raise error(where, f"tuner.stn: cutout is a whole number of pixels: give '{name}' "
                           f"integer: true")
    if math.isinf(domain.low) and math.isinf(domain.high):
        raise error(where, f"tuner.stn: '{name}' needs at least one finite bound")


register_tuner("tuner.stn", SelfTuningNetworks)


__all__ = ["MODELS", "SelfTuningNetworks", "StnConfig"]
