"""``tuner.pbt``: Population Based Training as a pipeline node (Jaderberg et al. 2017).

A tuner that owns training (`flowopt.tuning.owned`): instead of running whole trials it
trains a population of the one optimizer node it owns, in segments, through
`population.Population` — exploit/explore at every ready point, checkpoints and events
in the run's store, members as trial rows — and scores each segment by running the
owned nodes between the optimizer and the objective (e.g. an evaluator) on the
member's model, so the objective is whatever metric port the tuner is bound to.

Checked at compile time (`check_plan`, exit 2, one line): the tuner owns exactly one
optimizer node, of kind ``optimizer.sgd``, ``optimizer.adam`` or ``optimizer.adamw``,
and every searched param sets one of that node's fields that training can change
mid-run (`training.MUTABLE`: lr, weight_decay, and momentum for SGD). A param reaching
anything else (a model width, a batch size, an evaluator) is refused, as the paper's
"hyperparameters that can be changed during training" require.

Outputs: ``params`` (the best member's params at the end), ``objective`` (its last
score), ``schedule`` (its hyperparameter schedule: ``origin`` — the member whose initial
weights it holds — and ``[{step, params}]``), and every owned node's outputs as
``NODE.PORT`` (``tune.train`` is the best member's trained model). A killed run resumes
from its latest checkpoints when the same pipeline is run again (through the store's
events; finished segments are not retrained).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import Field

from flowopt.registry import Port
from flowopt.spec import PARAM_REF

from ..strategy import Strategy, register_tuner
from .policy import PbtConfig, initial_params

TRAINABLE_KINDS = {"optimizer.sgd": "sgd", "optimizer.adam": "adam", "optimizer.adamw": "adamw"}
MUTABLE = {"sgd": ("lr", "momentum", "weight_decay"), "adam": ("lr", "weight_decay"),
           "adamw": ("lr", "weight_decay")}  # the same as training.MUTABLE (no torch here)
SHARED = ("steps", "batch_size", "schedule", "on_nonfinite", "eval_every", "device")


class PbtNodeConfig(PbtConfig):
    """`PbtConfig`'s fields plus ``steps``: training steps per member (default: the
    optimizer node's own ``steps``, so the tuned node trains as long as it would alone)."""

    steps: int | None = Field(None, ge=1)


def _trainer_node(plan: Any, kinds: Mapping[str, Any]) -> list[str]:
    return [nid for nid in plan.owned if _kind_name(kinds[nid]).startswith("optimizer.")]


def _kind_name(kind: Any) -> str:
    return kind if isinstance(kind, str) else kind.name


def param_fields(spec: Any, node_id: str, names: Sequence[str]) -> dict[str, list[str]]:
    """Searched param -> the fields of node `node_id` it sets (whole-value references)."""
    fields: dict[str, list[str]] = {name: [] for name in names}
    for key, value in spec.nodes[node_id].config.items():
        whole = PARAM_REF.fullmatch(value) if isinstance(value, str) else None
        if whole and whole.group(1) in fields:
            fields[whole.group(1)].append(key)
    return fields


class PopulationBasedTraining(Strategy):
    """Population Based Training (Jaderberg et al. 2017): members train asynchronously;
    every ``interval`` steps a member exploits (copies a better member's weights and
    optimizer state) and explores (perturbs its params).

    Ports: ``objective`` (in, a metric port downstream of one optimizer node);
    ``params``, ``objective``, ``schedule`` and the best member's owned outputs (out).
    ``with:`` (defaults, from the paper unless said): ``mode`` (required), ``parallel``
    (1: members trained at once), ``population`` (8), ``interval`` (100 steps),
    ``burn_in`` (0), ``selection`` (truncation | tournament), ``fraction`` (0.2; Ray
    Tune uses 0.25), ``factors`` ([0.8, 1.2]), ``resample_probability`` (0.25),
    ``steps`` (the optimizer node's). See docs/pbt.md.
    """

    Config = PbtNodeConfig
    owns_training = True
    extra_outputs = (Port("schedule", Any),)

    def ask(self, pending: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """The initial params of the next member (the draw `Population` makes for it)."""
        return initial_params(self.space, self.seed, len(self.observations) + len(pending))

    @staticmethod
    def check_plan(plan: Any, spec: Any, kinds: Mapping[str, Any], configs: Any,
                   error: Any) -> None:
        """Refuse what PBT cannot train (see the module docstring)."""
        trainers = _trainer_node(plan, kinds)
        if len(trainers) != 1:
            raise error(("nodes", plan.node_id, "in", "objective"),
                        f"tuner.pbt needs exactly one optimizer node between the searched "
                        f"params and the objective; '{plan.node_id}' owns "
                        f"{len(trainers)} ({', '.join(trainers) or 'none'})")
        train = trainers[0]
        kind = _kind_name(kinds[train])
        if kind not in TRAINABLE_KINDS:
            raise error(("nodes", train, "kind"),
                        f"tuner.pbt trains with {', '.join(TRAINABLE_KINDS)}; '{train}' is {kind}")
        allowed = MUTABLE[TRAINABLE_KINDS[kind]]
        fields = param_fields(spec, train, list(plan.space))
        for nid in plan.owned:
            for key, value in spec.nodes[nid].config.items():
                for name in set(PARAM_REF.findall(str(value))) & set(plan.space):
                    if nid != train or key not in allowed or key not in fields[name]:
                        raise error(("search", name),
                                    f"tuner.pbt: searched param '{name}' sets {nid}.with.{key}, "
                                    f"which cannot change while a member trains (PBT can "
                                    f"change {train}'s {', '.join(allowed)})",
                                    hint="search it with tuner.random or tuner.bayesopt instead")

    def run_owned(self, session: Any) -> dict[str, Any]:
        """Train the population (see the module docstring); returns the tuner's values."""
        from .session import PopulationSession

        return PopulationSession(self, session).run()


register_tuner("tuner.pbt", PopulationBasedTraining)


__all__ = ["PbtNodeConfig", "PopulationBasedTraining", "param_fields"]
