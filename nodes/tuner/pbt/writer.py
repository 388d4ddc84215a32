"""Write-behind for PBT's records: store writes run on one background thread, in order.

A ready point writes a checkpoint, one or two events and a member's trial row. Done
inline, those transactions (and encoding the checkpoint) sit on the critical path of
the member's worker or of the controller, for every member at every ready point; on
small models that is several percent of the training time. `WriteBehind` takes them off
it: callers submit jobs and go on, one thread runs the jobs in submission order.

Order is what keeps the store consistent: a checkpoint's row is submitted when its
segment ends, before any event naming it, so no event ever names a checkpoint that is
not (yet) in the store. A process killed with jobs still queued loses only its newest
decisions; the events that did reach the store describe a state the population really
was in, so a resumed run carries on from there (it retrains at most those segments).

The first job that fails stops the writer: later `submit` calls and `flush` re-raise
that error, so training stops instead of going on unrecorded.
"""
from __future__ import annotations

import queue
import threading
from typing import Callable

_STOP = object()


class WriteBehind:
    """Runs submitted jobs on one daemon thread, first in, first out."""

    def __init__(self, name: str = "pbt-writer") -> None:
        self._jobs: queue.Queue = queue.Queue()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, job: Callable[[], object]) -> None:
        """Queue `job`; re-raises the error of an earlier job that failed."""
        self._raise()
        self._jobs.put(job)

    def flush(self) -> None:
        """Wait until every job submitted so far has run; re-raises a job's error."""
        done = threading.Event()
        self._jobs.put(done)
        done.wait()
        self._raise()

    def close(self) -> None:
        """Run what is queued, then stop the thread; re-raises a job's error."""
        self._jobs.put(_STOP)
        self._thread.join()
        self._raise()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def _loop(self) -> None:
        while True:
            job = self._jobs.get()
            if job is _STOP:
                return
            if isinstance(job, threading.Event):  # a flush: everything before it has run
                job.set()
            elif self._error is None:  # after a failure, jobs are dropped, not run
                try:
                    job()
                except BaseException as exc:  # noqa: BLE001 - handed to the caller by _raise
                    self._error = exc
