"""The STN loop: weight steps on training batches, hyperparameter steps on validation
batches, alternating in one training run (imports torch).

Policy, after MacKay et al. (2019) and the authors' code:

* Hyperparameters λ are held unconstrained (``point``) with a perturbation scale
  (``scale``, the std is ``softplus(scale)``); every example of a batch draws its own
  λ + softplus(scale)·ε, mapped into the domain (`stn_layers.Hyper`).
* Warm-up: ``warmup`` weight steps with perturbed λ and no hyperparameter step, so the
  response weights learn what the gates mean before λ moves.
* Then cycles of ``train_steps`` weight steps (training batches, train mode: dropout and
  noise on at each example's λ) and ``valid_steps`` hyperparameter steps (validation
  batches, eval mode: regularisers off, so λ acts only through the hyper-gates — which is
  why the training loss is never differentiated with respect to λ, and dropout rates or
  an integer like a cutout size can be tuned). The hyper loss is the validation loss at
  perturbed λ minus τ·entropy, the entropy of the perturbation being Σ log softplus(s)
  up to a constant: it keeps the scale from collapsing to zero. Adam (``hyper_lr``)
  updates ``point`` and ``scale``.
* Delta-STN (``delta: true``, Bae & Grosse 2020): the *centred* parameterisation
  ŵ(λ) = w + Φ(λ − λ₀) — the gates see the perturbation λ − λ₀ from the current λ₀
  instead of λ, so they are silent at λ₀ and ``w`` are the weights *at* λ₀ — and the
  *linearisation*: where the network runs at a perturbed λ it runs as its first-order
  expansion in the weight perturbation, f(x; w) + J_w f · Φ(λ − λ₀)
  (`stn_layers._StnNet.linearised`, a Jacobian-vector product), so Φ is fitted as a
  response *Jacobian* rather than as a full nonlinear response. A weight step is two
  updates, each with its own optimizer of the node's kind: the general weights at λ₀
  (gates silent, the plain network) and the response weights and gates on the
  linearised output at perturbed λ (the authors' code linearises there). The
  hyperparameter step differentiates the validation loss of the same linearised
  output at perturbed λ, so its hypergradient is the direct term plus the response
  Jacobian's, (J_w f Φ)ᵀ ∂L/∂f — the model the response step fitted, not the
  nonlinear network it only approximates locally.
* The weight optimizer is any optimizer kind's, built by the kind's own constructor
  (`optimizer.common.optimizer_for`, as the node and PBT build it), with its lr schedule
  applied per weight step; ``steps`` counts weight steps, as for a plain optimizer node.

Every randomness (batch orders, per-example λ, dropout masks, noise) comes from
generators seeded from ``seed``, so a run repeats bit for bit on one machine.

The result holds the trained STN, the plain model it exports at the final λ, and the
*schedule*: the hyperparameters in force from each weight step on, which is what
``tuner.stn`` records as metric series and what `retrain` replays on a plain model.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.nn.functional as F

from flowopt.artifacts import Dataset, Model
from flowopt.errors import FlowoptError

from ...optimizer.schedules import Constant, factor
from ...optimizer.training import BatchOrder, load_optimizer_state, optimizer_state
from ...stn_layers import set_generator

LOG_EVERY = 10  # weight steps per logged training loss


@dataclass(frozen=True)
class Settings:
    """The loop's knobs (see the module docstring); defaults are the reference's for an MLP."""

    steps: int
    batch_size: int = 64
    warmup: int = 0
    train_steps: int = 5
    valid_steps: int = 1
    hyper_lr: float = 3e-3
    entropy_weight: float = 1e-3
    scale: float = 0.5
    delta: bool = False
    eval_every: int = 50
    checkpoint_every: int = 250  # weight steps between checkpoints (0: none)


@dataclass
class Result:
    net: Any  # the trained STN module (eval mode, CPU)
    plain: Model  # exported at the final λ
    schedule: list[tuple[int, dict[str, float]]]  # (first weight step, values in force)
    final: dict[str, float]
    scales: dict[str, float]
    weight_steps: int
    hyper_steps: int
    passes: int  # mini-batch forward/backward passes (a Delta-STN weight step makes two)
    val_curve: list[tuple[int, float]] = field(default_factory=list)  # (step, full val loss)


def softplus_inv(value: float) -> float:
    return value + math.log(-math.expm1(-value))


class StnLoop:
    """One STN training run of `net` (an `stn_layers` model, trained in place on a copy)."""

    def __init__(self, net: Any, recipe: dict[str, Any], train: Dataset, val: Dataset,
                 loss_fn: Callable[..., Any], make_optimizer: Callable[[Any], Any],
                 settings: Settings, *, seed: int, device: str = "cpu", schedule: Any = None,
                 log: Callable[[str, float, int | None], None] | None = None,
                 cancel: Any = None, name: str = "tuner.stn", meta: dict[str, Any] | None = None):
        self.s, self.name, self.device = settings, name, device
        self.recipe, self.meta = recipe, dict(meta or {})
        self.net = copy.deepcopy(net).to(device).train()
        self.net.delta = settings.delta
        self.hyper = self.net.hyper
        self.x, self.y = train.x.to(device), train.y.to(device)
        self.vx, self.vy = val.x.to(device), val.y.to(device)
        self.loss_fn = loss_fn
        self.schedule = schedule if schedule is not None else Constant()
        self.log = log or (lambda *_: None)
        self.cancel = cancel
        generator = torch.Generator().manual_seed(seed)
        self.noise = torch.Generator(device=device).manual_seed(seed + 1)
        self.masks = torch.Generator(device=device).manual_seed(seed + 2)
        set_generator(self.net, self.masks)
        self.train_order = BatchOrder(len(train), settings.batch_size, generator)
        self.val_order = BatchOrder(len(val), settings.batch_size,
                                    torch.Generator().manual_seed(seed + 3))
        self.point = torch.nn.Parameter(self.net.point.detach().clone())
        self.scale = torch.nn.Parameter(torch.full_like(self.point, softplus_inv(settings.scale)))
        self.hyper_optimizer = torch.optim.Adam([self.point, self.scale], lr=settings.hyper_lr)
        if settings.delta:
            self.optimizers = [make_optimizer(self.net.general_parameters()),
                               make_optimizer(self.net.response_parameters())]
        else:
            self.optimizers = [make_optimizer(self.net.parameters())]
        self.base_lrs = [[g["lr"] for g in o.param_groups] for o in self.optimizers]
        self.step = self.hyper_steps = self.passes = 0
        self.trace: list[tuple[int, dict[str, float]]] = []
        self.scale_trace: list[dict[str, float]] = []  # the scales beside each trace point
        self.val_curve: list[tuple[int, float]] = []
        self._window: list[float] = []

    # -- λ ---------------------------------------------------------------------------
    def _perturbed(self, batch: int) -> torch.Tensor:
        eps = torch.randn(batch, len(self.hyper), generator=self.noise, device=self.device)
        return self.point + F.softplus(self.scale) * eps

    def _entropy(self) -> torch.Tensor:
        return torch.log(F.softplus(self.scale)).sum()

    def values(self) -> dict[str, float]:
        with torch.no_grad():
            now = self.net.values(self.point.detach()[None, :])[0]
        return {h.name: float(now[i]) for i, h in enumerate(self.hyper)}

    def scales(self) -> dict[str, float]:
        std = F.softplus(self.scale.detach())
        return {h.name: float(std[i]) for i, h in enumerate(self.hyper)}

    # -- steps -----------------------------------------------------------------------
    def weight_step(self) -> None:
        self.step += 1
        lr_factor = factor(self.schedule, self.step, self.s.steps)
        for optimizer, bases in zip(self.optimizers, self.base_lrs, strict=True):
            for group, base in zip(optimizer.param_groups, bases, strict=True):
                group["lr"] = base * lr_factor
        rows = next(self.train_order).to(self.device)
        x, y = self.x[rows], self.y[rows]
        self.net.train()
        with torch.no_grad():
            perturbed = self._perturbed(len(rows))
            values = self.net.values(perturbed)
        if self.s.delta:
            now = self.point.detach()
            general = self._update(0, x, y, torch.zeros_like(perturbed),
                                   self.net.values(now[None, :]).expand(len(rows), -1))
            self._update(1, x, y, perturbed - now, values, linear=True)
            value = general
        else:
            value = self._update(0, x, y, perturbed, values)
        self._window.append(value)
        self.log("lr", self.base_lrs[0][0] * lr_factor, self.step)
        if self.step % LOG_EVERY == 0 or self.step == self.s.steps:
            self.log("loss", sum(self._window) / len(self._window), self.step)
            self._window.clear()
        if self.s.eval_every and (self.step % self.s.eval_every == 0 or self.step == self.s.steps):
            self.evaluate()

    def _output(self, x: torch.Tensor, gate: torch.Tensor, values: torch.Tensor,
                linear: bool) -> torch.Tensor:
        return self.net.linearised(x, gate, values) if linear else self.net(x, gate, values)

    def _update(self, which: int, x: torch.Tensor, y: torch.Tensor, gate: torch.Tensor,
                values: torch.Tensor, linear: bool = False) -> float:
        optimizer = self.optimizers[which]
        optimizer.zero_grad(set_to_none=True)
        loss = self.loss_fn(self._output(x, gate, values, linear), y)
        if not torch.isfinite(loss):
            raise FlowoptError(f"{self.name}: the training loss became {loss.item()} at weight "
                               f"step {self.step}; try a lower lr")
        loss.backward()
        optimizer.step()
        self.passes += 1
        return float(loss.detach())

    def hyper_step(self) -> None:
        rows = next(self.val_order).to(self.device)
        self.net.eval()  # dropout and noise off: λ reaches the loss only through the gates
        perturbed = self._perturbed(len(rows))
        gate = perturbed - self.point.detach() if self.s.delta else perturbed
        values = self.net.values(perturbed.detach())
        loss = self.loss_fn(self._output(self.vx[rows], gate, values, self.s.delta),
                            self.vy[rows])
        objective = loss - self.s.entropy_weight * self._entropy()
        # Only λ and its scale get gradients; the weights' would be thrown away.
        grads = torch.autograd.grad(objective, [self.point, self.scale])
        self.point.grad, self.scale.grad = grads
        self.hyper_optimizer.step()
        self.hyper_steps += 1
        self.passes += 1
        with torch.no_grad():
            self.net.point.copy_(self.point)
        self.net.train()

    @torch.no_grad()
    def evaluate(self) -> float:
        """The loss on the whole validation set at the current λ (eval mode)."""
        was = self.net.training
        self.net.eval()
        value = float(self.loss_fn(self.net(self.vx), self.vy))
        self.net.train(was)
        self.val_curve.append((self.step, value))
        self.log("val_loss", value, self.step)
        return value

    def _record(self) -> None:
        values, scales = self.values(), self.scales()
        self.trace.append((self.step + 1, values))
        self.scale_trace.append(scales)
        self._log_hyper(self.step, values, scales)

    def _log_hyper(self, step: int, values: dict[str, float], scales: dict[str, float]) -> None:
        for name, value in values.items():
            self.log(f"hyper.{name}", value, step)
            self.log(f"hyper_scale.{name}", scales[name], step)

    # -- checkpoints -----------------------------------------------------------------
    def checkpoint(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Everything needed to go on from here, at a cycle boundary: ``(tensors, JSON
        meta)`` as `optimizer.training.Trainer.checkpoint` (same encoding)."""
        tensors = {f"net.{k}": v.detach().cpu().clone() for k, v in self.net.state_dict().items()}
        tensors["point"] = self.point.detach().cpu().clone()
        tensors["scale"] = self.scale.detach().cpu().clone()
        scalars = {"hyper": optimizer_state(self.hyper_optimizer, "hyper_optimizer", tensors)}
        for i, optimizer in enumerate(self.optimizers):
            scalars[str(i)] = optimizer_state(optimizer, f"optimizer{i}", tensors)
        for name, order in (("train_order", self.train_order), ("val_order", self.val_order)):
            for key, value in order.state_dict().items():
                tensors[f"{name}.{key}"] = value
        tensors["noise"] = self.noise.get_state().cpu()
        tensors["masks"] = self.masks.get_state().cpu()
        meta = {"steps": self.s.steps, "step": self.step, "hyper_steps": self.hyper_steps,
                "passes": self.passes, "trace": [[step, v] for step, v in self.trace],
                "scale_trace": self.scale_trace,
                "val_curve": [list(p) for p in self.val_curve], "window": self._window,
                "optimizer_scalars": scalars}
        return tensors, meta

    def restore(self, state: tuple[dict[str, torch.Tensor], dict[str, Any]]) -> "StnLoop":
        """Continue from a `checkpoint` of a run with the same settings, data and seed: the
        run then ends exactly as one never stopped. The hyperparameter series recorded
        so far are logged again (a resumed run's series are whole, without duplicates)."""
        tensors, meta = state
        if meta["steps"] != self.s.steps:
            raise ValueError(f"{self.name}: checkpoint is for a run of {meta['steps']} "
                             f"weight steps, this one has {self.s.steps}")
        with torch.no_grad():
            self.net.load_state_dict({k[4:]: v for k, v in tensors.items()
                                      if k.startswith("net.")})
            self.point.copy_(tensors["point"])
            self.scale.copy_(tensors["scale"])
        scalars = meta["optimizer_scalars"]
        load_optimizer_state(self.hyper_optimizer, "hyper_optimizer", tensors, scalars["hyper"])
        for i, optimizer in enumerate(self.optimizers):
            load_optimizer_state(optimizer, f"optimizer{i}", tensors, scalars[str(i)])
        for name, order in (("train_order", self.train_order), ("val_order", self.val_order)):
            order.load_state_dict({"generator": tensors[f"{name}.generator"],
                                   "pending": tensors[f"{name}.pending"]})
        self.noise.set_state(tensors["noise"])
        self.masks.set_state(tensors["masks"])
        self.step, self.hyper_steps = int(meta["step"]), int(meta["hyper_steps"])
        self.passes = int(meta["passes"])
        self.trace = [(int(step), dict(v)) for step, v in meta["trace"]]
        self.scale_trace = [dict(v) for v in meta["scale_trace"]]
        self.val_curve = [(int(step), float(v)) for step, v in meta["val_curve"]]
        self._window = list(meta["window"])
        for (step, values), scales in zip(self.trace, self.scale_trace, strict=True):
            self._log_hyper(step - 1, values, scales)
        for step, value in self.val_curve:
            self.log("val_loss", value, step)
        return self

    # -- the run ---------------------------------------------------------------------
    def run(self, on_checkpoint: Callable[["StnLoop"], None] | None = None) -> Result:
        """Train to the end (from a `restore`d step, if any). With `on_checkpoint`, it is
        called at the first cycle boundary after each ``checkpoint_every`` weight steps
        (the caller takes `checkpoint` there)."""
        s = self.s
        if not self.trace:
            self._record()
        saved = self.step
        while self.step < min(s.warmup, s.steps):
            self._check()
            self.weight_step()
        while self.step < s.steps:
            for _ in range(s.train_steps):
                if self.step >= s.steps:
                    break
                self._check()
                self.weight_step()
            if self.step >= s.steps:
                break
            for _ in range(s.valid_steps):
                self.hyper_step()
            self._record()
            if (on_checkpoint is not None and s.checkpoint_every
                    and self.step - saved >= s.checkpoint_every):
                on_checkpoint(self)
                saved = self.step
        return self.result()

    def _check(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            from flowopt.errors import Interrupted

            raise Interrupted(f"{self.name}: interrupted at weight step {self.step}")

    def result(self) -> Result:
        net = copy.deepcopy(self.net).to("cpu").eval()
        set_generator(net, None)
        plain, recipe = net.to_plain()
        final = self.values()
        meta = {**self.meta, "optimizer": self.name, "steps": self.s.steps,
                "stn": {"final": final, "hyper_steps": self.hyper_steps,
                        "delta": self.s.delta}}
        return Result(net=net, plain=Model(module=plain.eval(), recipe=recipe, meta=meta),
                      schedule=list(self.trace), final=final, scales=self.scales(),
                      weight_steps=self.step, hyper_steps=self.hyper_steps,
                      passes=self.passes, val_curve=list(self.val_curve))


def retrain(model: Model, train: Dataset, loss_fn: Callable[..., Any],
            make_optimizer: Callable[[Any], Any], schedule: list[tuple[int, dict[str, float]]],
            *, steps: int, batch_size: int, seed: int, lr_schedule: Any = None) -> Any:
    """Train plain `model` from scratch with its dropout rates / input noise following
    `schedule` (``[(from step, values)]``, as `Result.schedule`); returns the module.

    The model's recipe must have a dropout layer wherever the schedule sets a rate
    (build it with the schedule's first values). Batch order and masks come from `seed`.
    """
    from ...layers import InputNoise, SeededDropout, set_dropout_generator

    module = copy.deepcopy(model.module).train()
    set_dropout_generator(module, torch.Generator().manual_seed(seed + 2))
    noise = [m for m in module.modules() if isinstance(m, InputNoise)]
    drops = [m for m in module.modules()
             if isinstance(m, SeededDropout) and not isinstance(m, InputNoise)]
    optimizer = make_optimizer(module.parameters())
    order = BatchOrder(len(train), batch_size, torch.Generator().manual_seed(seed))
    bases = [g["lr"] for g in optimizer.param_groups]
    changes = iter(schedule)
    upcoming = next(changes, None)
    for step in range(1, steps + 1):
        while upcoming is not None and upcoming[0] <= step:
            for name, value in upcoming[1].items():
                if name.startswith("dropout."):
                    drops[int(name.split(".")[1])].p = value
                elif name == "input_noise" and noise:
                    noise[0].p = value
            upcoming = next(changes, None)
        f = factor(lr_schedule if lr_schedule is not None else Constant(), step, steps)
        for group, base in zip(optimizer.param_groups, bases, strict=True):
            group["lr"] = base * f
        rows = next(order)
        optimizer.zero_grad(set_to_none=True)
        loss_fn(module(train.x[rows]), train.y[rows]).backward()
        optimizer.step()
    return module.eval()
