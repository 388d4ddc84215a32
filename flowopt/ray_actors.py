"""Long-lived Ray actors for work that keeps state between calls (the Ray executor's `actors`).

A node task starts from nothing each time; some work must not: a PBT member keeps its live
trainer between segments (no rebuild, no restore), which a task cannot. `ActorGroup` holds
``count`` Ray actors, each holding one object built *inside* it by ``build(shared)``:
``shared`` (the frontier values: data, initial model) goes into Ray's object store once and
every actor reads it from there; ``build`` travels by pickle — its functions by reference
when they live in flowopt's own modules, by value for plugin files (the executor registers
them), so the actor imports nothing a store row names.

Policy, and why:

* **Slots.** Actors are addressed by slot (0 .. count-1); the caller decides which slot a
  call goes to (a member goes back to the actor that holds its trainer). One call at a time
  per actor (Ray runs an actor's methods in order), so the object needs no locks.
* **Resources.** Each actor reserves ``cpus`` CPUs (default 1) and ``gpus`` GPUs for its
  whole life: it is a worker slot, not a task.
* **Faults.** An actor that dies during a call (its process killed, out of memory) is
  replaced by a new one — built again from ``build`` — and the call is retried on it,
  ``retries`` times (the executor's ``max_retries``, default 1); then `WorkerDied` names
  the cause. The new actor has none of the old one's state: the caller's protocol must
  cope (PBT sends the checkpoint along when the actor does not hold it). An exception
  raised by the object's own code is not retried: it is re-raised as it is.
* **Cancel.** The run's cancel flag is checked before each call and polled while one
  waits; when it is set every actor of the group is killed (Ray cannot interrupt a
  running actor method otherwise) and the call raises `Interrupted`.
* **Names.** With a ``tag`` each actor is a named Ray actor, ``TAG/SLOT.N`` (N counts the
  group's replacements), so an operator (or a test) can find one with
  ``ray.util.list_named_actors()`` and ``ray.get_actor``.
* **End.** `close` kills the actors; the group is a context of one node's execution.
"""
from __future__ import annotations

import threading
from typing import Any, Callable

from .errors import Interrupted

_POLL_SECONDS = 0.25


class WorkerDied(RuntimeError):
    """An actor died during a call, and so did every retry."""


class _Holder:
    """The actor: holds ``build(shared)`` and calls its methods by name."""

    def __init__(self, build: Callable[[Any], Any], shared: Any) -> None:
        self.target = build(shared)

    def call(self, method: str, *args: Any) -> Any:
        return getattr(self.target, method)(*args)


class ActorGroup:
    """``count`` actors holding ``build(shared)`` each (see the module docstring)."""

    def __init__(self, ray: Any, build: Callable[[Any], Any], shared: Any, count: int, *,
                 cpus: float = 1, gpus: float = 0, retries: int = 1, name: str = "flowopt",
                 tag: str | None = None, cancel: threading.Event | None = None) -> None:
        self.ray, self.build, self.retries = ray, build, retries
        self.cancel = cancel or threading.Event()
        self._shared = ray.put(shared)
        self._options = {"num_cpus": cpus, "num_gpus": gpus, "max_restarts": 0,
                         "max_concurrency": 1}
        self._class = ray.remote(_Holder)
        self.name, self.tag = name, tag
        self.replaced = 0  # actors started again after one died
        self._actors = [self._start(slot) for slot in range(count)]

    def __len__(self) -> int:
        return len(self._actors)

    def _start(self, slot: int) -> Any:
        named = {"name": f"{self.tag}/{slot}.{self.replaced}"} if self.tag else {}
        return self._class.options(**self._options, **named).remote(self.build, self._shared)

    def handle(self, slot: int) -> Any:
        """The Ray actor handle now serving `slot` (tests kill it with ``ray.kill``)."""
        return self._actors[slot]

    def call(self, slot: int, method: str, *args: Any) -> Any:
        """``method(*args)`` on the object of actor `slot`; blocks, honours cancel."""
        ray = self.ray
        for attempt in range(self.retries + 1):
            self._check_cancel()  # calls shorter than a poll would never see it otherwise
            ref = self._actors[slot].call.remote(method, *args)
            while not ray.wait([ref], timeout=_POLL_SECONDS)[0]:
                self._check_cancel()
            try:
                return ray.get(ref)
            except ray.exceptions.RayTaskError as exc:
                cause = getattr(exc, "cause", None)
                if isinstance(cause, BaseException):
                    raise cause from None
                raise
            except ray.exceptions.RayActorError as exc:
                if self.cancel.is_set():
                    raise Interrupted(f"{self.name}: cancelled") from None
                cause = type(exc).__name__
                self._actors[slot] = self._start(slot)  # a fresh one, built again
                self.replaced += 1
        raise WorkerDied(f"the Ray actor of {self.name} slot {slot} died during "
                         f"'{method}' (tried {self.retries + 1} times): {cause}")

    def _check_cancel(self) -> None:
        if self.cancel.is_set():
            self.close()
            raise Interrupted(f"{self.name}: cancelled")

    def close(self) -> None:
        for actor in self._actors:
            try:
                self.ray.kill(actor)
            except Exception:  # noqa: BLE001 - already gone
                pass


__all__ = ["ActorGroup", "WorkerDied"]
