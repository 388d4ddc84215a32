"""PBT members on long-lived Ray actors (the Ray executor): a `Trainable` whose segments run
in worker processes that keep their trainers between segments.

On the local executor members are threads of the driver: they share its GIL, and on small
models two threads train slower than one. On Ray each of the population's ``parallel``
worker slots is an actor (`flowopt.ray_actors.ActorGroup`) holding a `MemberWorker`: the
tuner's `Trainable` (`session.NodeTrainable`, with its parked live trainers), built once,
inside the actor, from the pipeline's training declaration and the frontier values (sent
through Ray's object store once). A segment is one actor call.

Policy, and why:

* **The driver decides and records.** `population.Population` runs in the driver as it
  does locally — its worker threads only wait on actor calls — so exploit/explore, events,
  member rows and checkpoints are decided and written by one process, as locally.
* **States cross as values.** A segment returns its new state (the checkpoint) to the
  driver, whose `checkpoints.RecorderCheckpoints` and write-behind writer record it
  exactly as locally. The actor keeps the state too, under a token: a member that goes
  back to the actor holding its state sends only the token, and the actor's parked
  trainer goes on without a rebuild or a restore. A member goes back to that actor when
  it is free, else to any free one, which restores from the state sent along (restore is
  exact: same bits either way).
* **States cross encoded.** What crosses is the checkpoint's bytes (`Encoded`: the
  safetensors encoding the store keeps), encoded in the actor that trained it. Pickling
  the torch tensors instead cost 3.5 ms to send and 4.6 ms to receive per segment for
  `tune_pbt.yaml`'s MLP against 1.6 ms to encode and 0.4 ms to decode, and it fell on the
  driver, whose CPU the actors share on a small machine. So the population's
  checkpoints hold states encoded both ways (`PopulationSession` gives them
  `checkpoint_bytes` and `Encoded` as their codec): the writer stores the bytes as they
  came, a checkpoint read back from the store (a resumed run) goes to an actor as it was
  read, and the driver decodes a state only to evaluate the best member at the end
  (benchmarks/RESULTS.md, "driver's work per segment").
* **Same results.** Each actor trains with the threads a local member would get, so with
  ``parallel: 1`` (one actor, segments in submission order) a run equals the local run
  bit for bit. With more workers the local run is not reproducible either: which scores
  a decision sees depends on which segments finished first (asynchronous PBT), and that
  timing differs between threads and processes.
* **Faults.** An actor that dies during a segment is replaced by a new one and the
  segment runs again there from the state the driver holds (`ActorGroup` retries
  ``max_retries`` times, default once); if that dies too the member is `MemberFailed`
  with the cause, and the population trains on without it.
"""
from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections import OrderedDict
from functools import partial
from types import SimpleNamespace
from typing import Any, Mapping

from flowopt.ray_actors import WorkerDied

from .population import MemberFailed
from .training import decode, encode


class Encoded:
    """A state as its checkpoint's bytes (``encode(state)``): how states cross between the
    driver and the actors, and what the driver holds of them (see the module docstring)."""

    __slots__ = ("payload",)

    def __init__(self, payload: bytes) -> None:
        self.payload = payload

    def __reduce__(self) -> tuple[Any, tuple[bytes]]:
        return Encoded, (self.payload,)


def as_state(state: Any) -> Any:
    """`state` decoded, if it is `Encoded`."""
    return decode(state.payload) if isinstance(state, Encoded) else state


def checkpoint_bytes(state: Encoded) -> bytes:
    """The bytes the store keeps for `state`: those it crossed as, not encoded again."""
    return state.payload


class MemberWorker:
    """Inside one actor: the tuner's `Trainable`, its states held under tokens."""

    def __init__(self, trainable: Any, live: int) -> None:
        self.trainable = trainable
        self.trainable.live = live  # a parked trainer per member, as locally
        self._held: OrderedDict[str, Any] = OrderedDict()
        self._keep = 2 * live
        # tokens name states of this worker only: an actor that replaced a dead one must
        # not take the dead one's tokens for its own
        self._nonce = uuid.uuid4().hex
        self._tokens = itertools.count(1)

    def start(self, member: int, params: Mapping[str, Any]) -> tuple[str, Any, dict]:
        return self._reply(self.trainable.start(member, params), None)

    def train(self, token: str | None, state: Any, params: Mapping[str, Any],
              steps: int) -> tuple[str, Any, dict] | None:
        """Train on from the state held under `token`, else from `state`; None when the
        token is not held here and no state came (the driver then sends it)."""
        if state is None:
            state = self._held.get(token) if token is not None else None
            if state is None:
                return None
        else:
            state = as_state(state)
        new_state, score = self.trainable.train(state, params, steps)
        return self._reply(new_state, score)

    def _reply(self, state: Any, score: float | None) -> tuple[str, Encoded, dict]:
        token = f"{self._nonce}:{next(self._tokens)}"
        self._held[token] = state  # the live state: the parked trainer goes on from it
        while len(self._held) > self._keep:
            self._held.popitem(last=False)
        t = self.trainable
        stats = {"train_seconds": t.train_seconds, "eval_seconds": t.eval_seconds,
                 "builds": t.builds}
        t.train_seconds = t.eval_seconds = 0.0
        t.builds = 0
        return token, Encoded(encode(state)), {"score": score, **stats}


def member_worker(values: Mapping[str, Any], *, graph: Any, plan: Any, config: Any, seed: int,
                  device: str, threads: int, live: int) -> MemberWorker:
    """What each actor builds (inside itself): the tuner's `Trainable` over `values`."""
    from .session import build_trainable

    return MemberWorker(build_trainable(graph, plan, config, values, seed=seed, device=device,
                                        threads=threads), live)


class ActorTrainable:
    """The driver's `Trainable` over an `ActorGroup` of `MemberWorker`s (module docstring).

    `local` is the same `Trainable` built in the driver (no trainer is built until asked):
    it evaluates the best member at the end and carries the counters the session reports.
    The states it takes and returns are `Encoded` (the session's checkpoints hold them so).
    """

    def __init__(self, group: Any, local: Any) -> None:
        self.group, self.local = group, local
        self.steps = local.steps
        self.builds = 0  # trainers built in the actors
        self._free = set(range(len(group)))
        self._changed = threading.Condition()
        self._where: OrderedDict[int, tuple[Any, int, str]] = OrderedDict()  # id -> (state, slot, token)
        self._keep = 4 * max(1, local.live)
        self._created = time.perf_counter()
        self.ready_seconds: dict[int, float] = {}  # slot -> until its first reply (its start)

    @property
    def actors_built(self) -> int:
        """Actors started: one per slot, and one per replacement of a dead one."""
        return len(self.group) + self.group.replaced

    @property
    def train_seconds(self) -> float:
        return self.local.train_seconds

    @property
    def eval_seconds(self) -> float:
        return self.local.eval_seconds

    def evaluate(self, model: Any) -> Any:
        return self.local.evaluate(model)

    def model_from(self, state: Any, params: Mapping[str, Any]) -> Any:
        return self.local.model_from(as_state(state), params)

    # -- the Trainable protocol ----------------------------------------------------------
    def start(self, member: int, params: Mapping[str, Any]) -> Any:
        state, _ = self._segment(None, "start", member, dict(params))
        return state

    def train(self, state: Any, params: Mapping[str, Any], steps: int) -> tuple[Any, float]:
        return self._segment(state, "train", dict(params), steps)

    # -- slots ---------------------------------------------------------------------------
    def _segment(self, state: Any, method: str, *args: Any) -> tuple[Any, float]:
        entry = self._where.get(id(state)) if state is not None else None
        held = entry is not None and entry[0] is state
        slot = self._acquire(entry[1] if held else None)
        try:
            if method == "start":
                reply = self.group.call(slot, "start", *args)
            else:
                token = entry[2] if held and entry[1] == slot else None
                params, steps = args
                reply = self.group.call(slot, "train", token, None if token else state,
                                        params, steps)
                if reply is None:  # the actor no longer holds it (a new actor): send it
                    reply = self.group.call(slot, "train", None, state, params, steps)
        except WorkerDied as exc:
            raise MemberFailed(str(exc)) from None
        finally:
            self._release(slot)
        token, new_state, stats = reply
        self.ready_seconds.setdefault(slot, time.perf_counter() - self._created)
        self._account(stats)
        with self._changed:
            self._where[id(new_state)] = (new_state, slot, token)
            while len(self._where) > self._keep:
                self._where.popitem(last=False)
        return new_state, stats["score"]

    def _account(self, stats: Mapping[str, Any]) -> None:
        with self._changed:
            self.local.train_seconds += stats["train_seconds"]
            self.local.eval_seconds += stats["eval_seconds"]
            self.builds += stats["builds"]

    def _acquire(self, preferred: int | None) -> int:
        with self._changed:
            self._changed.wait_for(lambda: self._free)
            slot = preferred if preferred in self._free else min(self._free)
            self._free.discard(slot)
            return slot

    def _release(self, slot: int) -> None:
        with self._changed:
            self._free.add(slot)
            self._changed.notify()


def on_actors(actors: Any, session: Any, local: Any, config: Any) -> ActorTrainable:
    """The population's `Trainable` on the executor's actors: one per worker slot."""
    plan, graph = session.plan, session.graph
    # what `build_trainable` reads of the graph: the owned nodes and the spec (the whole
    # compiled graph holds the owners' locks and does not travel)
    owned = SimpleNamespace(nodes={nid: graph.nodes[nid] for nid in plan.owned}, spec=graph.spec)
    build = partial(member_worker, graph=owned, plan=plan, config=config, seed=session.node.seed,
                    device=local.device, threads=session.threads, live=config.population)
    group = actors(build, dict(session.values), session.config.parallel,
                   functions=[node.kind.fn for node in owned.nodes.values()],
                   name=f"tuner '{session.node.id}'",
                   tag=f"flowopt/{session.run_id}/{session.node.id}", cancel=session.cancel)
    return ActorTrainable(group, local)


__all__ = ["ActorTrainable", "Encoded", "MemberWorker", "as_state", "checkpoint_bytes",
           "member_worker", "on_actors"]
