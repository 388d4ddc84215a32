"""PBT's checkpoints in the tuning run's recorder, through the recorder protocol only.

`RecorderCheckpoints` is population's `Checkpoints` over any
`flowopt.tuning.records.CheckpointRecorder` (the store, a `MemoryRecorder`): a state is
encoded to bytes and saved as an immutable checkpoint whose id the events record, so
copying a member is naming the source's id and resuming is loading it. Nothing here
knows how the store keeps them.

The checkpoint is written at once (not batched with the run's rows): an event that
names a checkpoint must never outlive it, and a killed run resumes from these. With a
`writer` (`writer.WriteBehind`) "at once" means "on the writer, before any event
submitted later": `save` names the checkpoint, queues the encoding and the write, and
returns. The last `keep` states are also held in memory (decoded), so copies within one
process skip decoding — and never wait for a write.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Any, Callable

from flowopt.recording import new_id
from flowopt.tuning.records import CheckpointRecorder


class RecorderCheckpoints:
    """`population.Checkpoints` in a `CheckpointRecorder`; `encode`/`decode` turn a state
    into bytes and back (see the module docstring)."""

    def __init__(self, recorder: CheckpointRecorder, encode: Callable[[Any], bytes],
                 decode: Callable[[bytes], Any], *, fmt: str = "safetensors", keep: int = 32,
                 writer: Any = None) -> None:
        self.recorder, self.encode, self.decode, self.fmt = recorder, encode, decode, fmt
        self.keep, self.writer = keep, writer
        self._recent: "OrderedDict[str, Any]" = OrderedDict()
        self._lock = threading.Lock()
        self.seconds = 0.0  # time spent encoding, writing, reading and decoding

    def save(self, member: int, step: int, state: Any) -> str:
        checkpoint_id = new_id()
        self._remember(checkpoint_id, state)

        def write() -> None:
            started = time.perf_counter()
            self.recorder.save_checkpoint(f"member{member}@{step}", self.encode(state),
                                          self.fmt, checkpoint_id=checkpoint_id)
            self._count(time.perf_counter() - started)

        if self.writer is None:
            write()
        else:
            self.writer.submit(write)
        return checkpoint_id

    def load(self, checkpoint_id: str) -> Any:
        with self._lock:
            if checkpoint_id in self._recent:
                self._recent.move_to_end(checkpoint_id)
                return self._recent[checkpoint_id]
        if self.writer is not None:
            self.writer.flush()  # it may still be on its way to the recorder
        started = time.perf_counter()
        state = self.decode(self.recorder.load_checkpoint(checkpoint_id))
        self._remember(checkpoint_id, state)
        self._count(time.perf_counter() - started)
        return state

    def _remember(self, checkpoint_id: str, state: Any) -> None:
        with self._lock:
            self._recent[checkpoint_id] = state
            while len(self._recent) > self.keep:
                self._recent.popitem(last=False)

    def _count(self, seconds: float) -> None:
        with self._lock:
            self.seconds += seconds


__all__ = ["RecorderCheckpoints"]
