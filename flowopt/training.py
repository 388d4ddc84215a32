"""Kinds whose node trains step by step and can pause: the declaration tuners read.

A tuner that changes params while a model trains (PBT), stops trials early and resumes
them (a pruner), or trains hyperparameters with the weights (STN) needs three things
of the training node it owns: how many steps it trains (the resource), which ``with:``
fields may change between two steps, and a trainer it can run in pieces, checkpoint
and restore. A kind says so once, when it is registered::

    @node("optimizer.adam", training=Training(mutable=("lr", "weight_decay", "betas",
                                                       "schedule"), start=start_adam))

The engine only carries the declaration (`flowopt.registry.NodeKind.training`); the
tuning layer reads it. A search that would change a field not in ``mutable`` while a
model trains is refused when the pipeline is compiled (exit 2, one line naming the
field), whatever the optimizer kind.

`PausableTrainer` is what ``start`` returns. Restore must be exact: a run paused at step
k, checkpointed, restored (in another trainer, another process) and run on equals a run
that was never paused, bit for bit, given the same fields; that is what makes a promoted
trial equal one trained straight through, and PBT's replay reproduce its best member.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Protocol


class PausableTrainer(Protocol):
    """One training run that can stop at any step and go on later (see the module docstring)."""

    step: int  # steps trained so far
    steps: int  # the run's length (schedules depend on it)

    def run(self, until: int | None = None) -> Any:
        """Train up to step `until` (default: to the end)."""

    def update(self, fields: Mapping[str, Any]) -> None:
        """Change mutable ``with:`` fields (validated values, as in the node's config)
        from the next step on; a field not declared mutable is a ValueError."""

    def checkpoint(self) -> Any:
        """The whole state (weights, optimizer state, generators, step) as a value that
        is never changed afterwards."""

    def restore(self, state: Any) -> "PausableTrainer":
        """Continue from a `checkpoint` of a run of the same kind, config and inputs."""

    def snapshot(self) -> Any:
        """The model as of now, for scoring between steps (valid until the next step)."""

    def result(self) -> Any:
        """The trained model, as the node would output it."""


@dataclass(frozen=True)
class Training:
    """A kind's training declaration (see the module docstring).

    ``mutable``: ``with:`` fields that may change between two steps. ``steps``: the name
    of the field holding the run's length. ``start(config, inputs, ctx)``: a fresh
    `PausableTrainer` for validated `config` and input values `inputs`. ``encode`` /
    ``decode``: a checkpoint to bytes and back (for the store).
    """

    mutable: tuple[str, ...]
    start: Callable[[Mapping[str, Any], Mapping[str, Any], Any], PausableTrainer]
    encode: Callable[[Any], bytes]
    decode: Callable[[bytes], Any]
    steps: str = "steps"

    def refuse(self, fields: Mapping[str, Any] | Any) -> str | None:
        """The first of `fields` that may not change mid-run, or None."""
        return next((f for f in fields if f not in self.mutable), None)


__all__ = ["PausableTrainer", "Training"]
