"""``tuner.pbt``: Population Based Training as a pipeline node (Jaderberg et al. 2017).

A tuner that owns training (`flowopt.tuning.owned`): instead of running whole trials it
trains a population of the one optimizer node it owns, in segments, through
`population.Population` — exploit/explore at every ready point, checkpoints and events
in the run's store, members as trial rows — and scores each segment by running the
owned nodes between the optimizer and the objective (e.g. an evaluator) on the
member's model, so the objective is whatever metric port the tuner is bound to.

Checked at compile time (`check_plan`, exit 2, one line): the tuner owns exactly one
node whose kind trains and can pause (every optimizer kind declares it:
`flowopt.training.Training`), and every searched param is the whole value of one of
that node's fields the kind declares ``mutable`` (lr, weight decay, betas or momentum,
schedule: `flowopt.tuning.subgraph.mutable_fields`). A param reaching anything else (a
model width, a batch size, eps, an evaluator) is refused, naming the field, as the
paper's "hyperparameters that can be changed during training" require.

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
from flowopt.tuning import Strategy, register_tuner
from flowopt.tuning.subgraph import mutable_fields

from .policy import PbtConfig, initial_params


class PbtNodeConfig(PbtConfig):
    """`PbtConfig`'s fields plus ``steps``: training steps per member (default: the
    optimizer node's own ``steps``, so the tuned node trains as long as it would alone)."""

    steps: int | None = Field(None, ge=1)


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
        mutable_fields(plan, spec, kinds, error, who="tuner.pbt")

    @staticmethod
    def replay(recorder: Any, run_id: str, node_id: str | None = None, *,
               pipeline: Any = None, plugins: Any = None) -> dict[str, Any]:
        """``flowopt pbt replay``: retrain a finished run's best member (`session.replay_run`)."""
        from .session import replay_run

        return replay_run(recorder, run_id, node_id, pipeline=pipeline, plugins=plugins)

    def run_owned(self, session: Any) -> dict[str, Any]:
        """Train the population (see the module docstring); returns the tuner's values."""
        from .session import PopulationSession

        return PopulationSession(self, session).run()


register_tuner("tuner.pbt", PopulationBasedTraining)


__all__ = ["PbtNodeConfig", "PopulationBasedTraining", "param_fields"]
