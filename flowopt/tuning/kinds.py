"""Tuner kinds: a `Strategy` class plus the framework's `with:` fields make a node kind.

``register_strategy("tuner.random", RandomSearch)`` registers a node kind whose

* input is ``objective`` (bound to a metric port, e.g. ``score.accuracy``);
* outputs are ``params`` (the best trial's params, a JSON mapping) and ``objective``
  (its objective, a metric), plus — resolved at compile time, not listed on the kind —
  every output of every node the tuner owns, as ``NODE.PORT`` (``tune.train`` binds the
  best trial's ``train.model``);
* ``with:`` fields are `TunerConfig`'s (mode, trials, parallel, max_failures,
  warm_start, pruner) followed by the strategy's own ``Config`` fields.

The kind's function is never called: the kind's ``owner`` hook
(`flowopt.tuning.owner.TUNERS`) plans it at compile time and runs it when the
scheduler reaches it (`flowopt.owners`).

A strategy with ``owns_training = True`` (PBT) is run by `flowopt.tuning.owned`
instead: it trains the owned subgraph itself, so its framework fields are
`TrainingTunerConfig`'s (mode, parallel: no ``trials``, ``max_failures`` or
``warm_start``, which only mean something for whole trials), and its ``extra_outputs``
(e.g. PBT's ``schedule``) are added to the kind's outputs.
"""
from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Annotated, Any, Literal

import pydantic
from pydantic import Field

from flowopt.artifacts import Metric
from flowopt.errors import FlowoptError
from flowopt.registry import REGISTRY, NodeFactory, NodeKind, Port

if TYPE_CHECKING:
    from .strategy import Strategy

_STRATEGIES: dict[str, type] = {}
_FACTORIES: dict[str, NodeFactory] = {}
_lock = threading.Lock()


Mode = Literal["max", "min"]


def _mode(value: Any) -> Any:
    """``max`` / ``min``, or a non-empty list of them (one per objective)."""
    items = value if isinstance(value, list) else [value]
    if not items or any(item not in ("max", "min") for item in items):
        raise ValueError("Input should be 'max' or 'min' (or a list of them, one per "
                         f"objective), got {value!r}")
    return value


Modes = Annotated[Any, pydantic.AfterValidator(_mode)]


class TunerConfig(pydantic.BaseModel):
    """The framework's `with:` fields, shared by every tuner kind.

    Defaults: ``parallel`` 1 (one trial at a time — the safe choice on a small
    machine); ``max_failures`` None: the search stops when its first 5 trials have all
    failed (`trials.FIRST_FAILURES`), and never once a trial has succeeded. Why: a
    search whose first five trials all fail is broken — a bug in a node, a missing
    import, a missing file — not unlucky: if trials failed independently with
    probability p, five in a row would happen with p⁵ (3 % even at p = ½), while a
    systematic error fails every trial, so going on spends the whole budget to show the
    same error twenty times. After a success, failures are an ordinary outcome of
    tuning (divergence at extreme params) and do not stop the search unless
    ``max_failures: N`` (stop after more than N) asks for it. ``warm_start`` false (a run starts from its own trials only);
    ``pruner`` None (every trial trains to the end; a mapping ``{name: ..., ...}``
    selects a registered early-stopping policy, `flowopt.tuning.pruner`). ``mode``
    and ``trials`` have no default: which way is better and how much to spend are the
    user's decisions. ``mode`` is a list, one per objective, for several objectives
    (only on a strategy with ``multi_objective = True``).
    """

    model_config = pydantic.ConfigDict(extra="forbid")
    mode: Modes
    trials: Annotated[int, Field(ge=1)]
    parallel: Annotated[int, Field(ge=1)] = 1
    max_failures: Annotated[int, Field(ge=0)] | None = None
    warm_start: bool = False
    pruner: dict[str, Any] | None = None
    #: several objectives: the hypervolume's reference point (objective units); None infers it
    reference_point: list[Any] | None = None

    @property
    def modes(self) -> tuple[str, ...]:
        """One mode per objective."""
        return (self.mode,) if isinstance(self.mode, str) else tuple(self.mode)


class TrainingTunerConfig(pydantic.BaseModel):
    """The framework's `with:` fields of a tuner that owns training (`flowopt.tuning.owned`):
    ``mode`` (no default, as above) and ``parallel`` (1, as above: members trained at once)."""

    model_config = pydantic.ConfigDict(extra="forbid")
    mode: Modes
    parallel: Annotated[int, Field(ge=1)] = 1

    @property
    def modes(self) -> tuple[str, ...]:
        return (self.mode,) if isinstance(self.mode, str) else tuple(self.mode)


def strategy_mode(config: Any) -> Any:
    """The ``mode`` a strategy is constructed with: a string for one objective, a tuple
    for several."""
    modes = config.modes
    return modes[0] if len(modes) == 1 else modes


FRAMEWORK_FIELDS = tuple(TunerConfig.model_fields)


def owns_training(kind: "NodeKind | str | type") -> bool:
    """True for a strategy (or its kind) that trains the owned subgraph itself."""
    strategy = kind if isinstance(kind, type) else _STRATEGIES.get(
        kind.name if isinstance(kind, NodeKind) else kind)
    return bool(getattr(strategy, "owns_training", False))


def _framework(strategy: type) -> type[pydantic.BaseModel]:
    return TrainingTunerConfig if owns_training(strategy) else TunerConfig


def _config_model(kind: str, strategy: type) -> type[pydantic.BaseModel]:
    own = getattr(strategy, "Config", None)
    base = _framework(strategy)
    fields: dict[str, Any] = {}
    for name, info in (own.model_fields.items() if own is not None else ()):
        if name in base.model_fields:
            raise FlowoptError(f"tuner '{kind}': strategy field '{name}' clashes with the "
                               f"framework's fields ({', '.join(base.model_fields)})")
        fields[name] = (info.annotation, info)
    return pydantic.create_model(  # type: ignore[call-overload]
        f"{kind.replace('.', '_')}_config", __base__=base, **fields)


def _not_called(**_: Any) -> None:
    raise FlowoptError("a tuner node is run by its owner hook (flowopt.tuning.owner), "
                       "not called directly")


def register_strategy(kind: str, strategy: "type[Strategy]", owner: Any) -> NodeKind:
    """Register node kind `kind` driven by `strategy`, with `owner` as its hook
    (`owner.TUNERS`; `owner.register_tuner` is the public way in).

    Registering the same class again is a no-op (a module imported twice); another class
    under a taken name is an error.
    """
    with _lock:
        old = _STRATEGIES.get(kind)
        if old is not None:
            if _qualname(old) != _qualname(strategy):
                raise FlowoptError(f"tuner kind '{kind}' is registered twice "
                                   f"({_qualname(old)} and {_qualname(strategy)})")
            return REGISTRY.get(kind)
        node_kind = NodeKind(
            name=kind, version=int(getattr(strategy, "version", 1)), fn=_not_called,
            inputs=(Port("objective", Metric),),
            outputs=(Port("params", Any), Port("objective", Metric),
                     *getattr(strategy, "extra_outputs", ()), *_pareto_ports(strategy)),
            config=_config_model(kind, strategy),
            metrics=("objective", "hypervolume") if _multi(strategy) else ("objective",),
            deterministic=False,
            wants_context=False, doc=(strategy.__doc__ or "").strip(), owner=owner)
        REGISTRY.add(node_kind)
        _STRATEGIES[kind] = strategy
        _FACTORIES[kind] = NodeFactory(node_kind)
    return node_kind


def _multi(strategy: type) -> bool:
    return bool(getattr(strategy, "multi_objective", False))


def _pareto_ports(strategy: type) -> tuple[Port, ...]:
    """A multi-objective strategy's kind also outputs the front (`objectives.PARETO_PORTS`),
    optional: a run with one objective produces none of them."""
    if not _multi(strategy):
        return ()
    return (Port("pareto", Any, True), Port("hypervolume", Metric, True),
            Port("reference_point", Any, True))


def _qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def is_tuner(kind: NodeKind | str) -> bool:
    return (kind.name if isinstance(kind, NodeKind) else kind) in _STRATEGIES


def strategy_class(kind: str) -> "type[Strategy]":
    return _STRATEGIES[kind]  # type: ignore[return-value]


def split_config(kind: str, config: dict[str, Any]) -> tuple[Any, pydantic.BaseModel]:
    """A tuner node's validated config, as the framework's part and the strategy's part."""
    strategy = strategy_class(kind)
    base = _framework(strategy)
    framework = base.model_validate({k: config[k] for k in base.model_fields if k in config})
    own = getattr(strategy, "Config", None)
    rest = {k: v for k, v in config.items() if k not in base.model_fields}
    return framework, (own.model_validate(rest) if own is not None else pydantic.BaseModel())


def factories() -> dict[str, NodeFactory]:
    """Python-API factories by short name (``random`` for ``tuner.random``)."""
    with _lock:
        return {kind.rsplit(".", 1)[-1]: factory for kind, factory in _FACTORIES.items()}
