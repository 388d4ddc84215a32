"""The pruner contract: early stopping as a pure policy that returns decisions.

A pruner never runs, stops or resumes anything: the tuning loop asks it questions and
acts on the answers (the same split as PBT's exploit/explore policy). Everything it
knows is in its `Pruner.state`, a JSON value the loop stores with the tuning run after
every decision, so a killed run rebuilds the pruner exactly (``cls(..., state=...)``)
and resumes with its rungs and brackets intact.

The resource is training steps: those of the one pausable training node the tuner owns
(a kind declared with ``training=`` in `flowopt.registry.node`). The loop trains a
trial up to the step `next_report` names, evaluates the objective subgraph on the
partly trained model there, and calls `report`:

* ``"continue"`` — train on to the next report point (or to the end);
* ``"pause"`` — keep the trial's checkpoint and free its worker; the trial is
  ``paused`` until `promote` names it, then it resumes from that checkpoint (never
  retrained), or is ``pruned`` when the search ends without promoting it;
* ``"prune"`` — stop for good: the trial is ``pruned``, told to the strategy with the
  values it reported last.

Before each new trial is asked from the strategy the loop calls ``promote(draining)``
and resumes the trials it names first (in that order); ``draining`` is True once the
trial budget is spent, so a promotion-based pruner (ASHA) can promote what is left
instead of waiting for trials that will never come. `ended` tells the pruner a trial
ended outside its decisions (completed, failed, or interrupted).

Decisions must depend only on the reports seen, in the order they were made, and on
the trial numbers — never on wall-clock time or thread timing — so parallel trials and
a resumed run decide the same as a sequential one given the same reports.

Registration: ``register_pruner("asha", AshaPruner)`` where the class has a pydantic
``Config`` of its ``pruner:`` fields (besides ``name``) and an optional
``check(config, max_steps)`` classmethod that raises `ValueError` for a combination it
refuses (e.g. ``min_steps`` not below the training steps); both run at compile time
(exit 2, one line).
"""
from __future__ import annotations

import threading
from typing import Any, ClassVar, Literal, Mapping, Protocol, runtime_checkable

import pydantic

Decision = Literal["continue", "pause", "prune"]
DECISIONS = ("continue", "pause", "prune")


@runtime_checkable
class Pruner(Protocol):
    """An early-stopping policy (see the module docstring).

    Constructed as ``cls(config, *, mode, max_steps, seed, state=None)``: ``config`` is
    the validated ``Config``, ``mode`` ``"max"`` or ``"min"``, ``max_steps`` a full
    trial's training steps, ``state`` a value `state` returned earlier (a resumed run).
    """

    Config: ClassVar[type[pydantic.BaseModel]]

    def next_report(self, trial: int, step: int) -> int | None:
        """The training step at which trial `trial`, now at `step` (0 when it starts),
        reports next; None: train to the end without reporting."""

    def report(self, trial: int, step: int, value: float) -> Decision:
        """Trial `trial` reached `step` with objective `value` (NaN for a non-finite one)."""

    def promote(self, draining: bool = False) -> list[int]:
        """Paused trials to resume now, in order (each is named once per pause)."""

    def ended(self, trial: int, status: str) -> None:
        """Trial `trial` ended outside a decision: ``succeeded`` (trained to the end),
        ``failed`` or ``interrupted``."""

    def rung(self, trial: int) -> int | None:
        """The highest rung trial `trial` has reached (0-based), None before the first."""

    def state(self) -> Mapping[str, Any]:
        """Everything this pruner knows, as JSON (lists, dicts, numbers, strings)."""


_PRUNERS: dict[str, type] = {}
_lock = threading.Lock()


def register_pruner(name: str, cls: type) -> type:
    """Make `cls` the pruner ``pruner: {name: NAME, ...}`` selects; returns the class."""
    with _lock:
        old = _PRUNERS.get(name)
        if old is not None and f"{old.__module__}.{old.__qualname__}" != \
                f"{cls.__module__}.{cls.__qualname__}":
            raise ValueError(f"pruner '{name}' is registered twice")
        _PRUNERS[name] = cls
    return cls


def pruner_names() -> list[str]:
    with _lock:
        return sorted(_PRUNERS)


def pruner_class(name: str) -> type:
    """The registered class (KeyError naming the known pruners otherwise)."""
    with _lock:
        cls = _PRUNERS.get(name)
        known = ", ".join(sorted(_PRUNERS)) or "none registered"
    if cls is None:
        raise KeyError(f"unknown pruner '{name}' (pruners: {known})")
    return cls


def validate_pruner(data: Mapping[str, Any], max_steps: int | None = None
                    ) -> tuple[type, pydantic.BaseModel]:
    """A ``pruner:`` mapping as (class, validated config); ValueError with one line if bad.

    `max_steps` (the owned training node's steps, when known) lets the class refuse a
    combination (its ``check``).
    """
    if not isinstance(data, Mapping) or "name" not in data:
        raise ValueError("pruner needs a name (e.g. {name: asha, min_steps: 25})")
    try:
        cls = pruner_class(str(data["name"]))
    except KeyError as exc:
        raise ValueError(exc.args[0]) from None
    fields = {k: v for k, v in data.items() if k != "name"}
    try:
        config = cls.Config.model_validate(fields)
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        if first["type"] == "extra_forbidden":
            known = ", ".join(cls.Config.model_fields) or "none"
            raise ValueError(f"unknown field '{where}' for pruner '{data['name']}' "
                             f"(fields: {known})") from None
        raise ValueError(f"pruner '{data['name']}' field '{where}': {first['msg']}") from None
    check = getattr(cls, "check", None)
    if check is not None and max_steps is not None:
        check(config, max_steps)
    return cls, config


__all__ = ["DECISIONS", "Decision", "Pruner", "pruner_class", "pruner_names",
           "register_pruner", "validate_pruner"]
