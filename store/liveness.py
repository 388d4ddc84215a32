"""Keeping runs honest: a background flusher/heartbeat, and spotting abandoned runs.

While a store has open runs, one daemon thread per store wakes every
`FLUSH_SECONDS`, writes the buffered rows (metric points, executions, edges) and, every
`HEARTBEAT_SECONDS`, stamps ``heartbeat_at`` on the open runs. So a process killed with
``kill -9`` loses at most the rows of the last `FLUSH_SECONDS` (and its finished nodes
are in the store, reusable from cache), and an ``atexit`` hook flushes whatever is left
on a normal exit.

A run is *abandoned* when it still says ``running`` but its process is gone: on the
same host, its pid no longer exists; on any host, its heartbeat is older than
`STALE_SECONDS`. Queries mark such runs ``abandoned`` before they read (a guarded
``UPDATE … WHERE status = 'running'``); a heartbeat from a run wrongly marked (a process
that was only frozen) sets it back to ``running``.
"""
from __future__ import annotations

import atexit
import os
import socket
import threading
import time
import weakref
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import select, update

from .schema import Run

FLUSH_SECONDS = float(os.environ.get("FLOWOPT_FLUSH_SECONDS", "1.0"))
HEARTBEAT_SECONDS = float(os.environ.get("FLOWOPT_HEARTBEAT_SECONDS", "5.0"))
STALE_SECONDS = float(os.environ.get("FLOWOPT_STALE_SECONDS", "60.0"))
HOST = socket.gethostname()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return True
    return True


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def reap_abandoned(store: Any) -> list[str]:
    """Mark running runs whose process is gone as ``abandoned``; returns their ids."""
    now = datetime.now(timezone.utc)
    stale = timedelta(seconds=STALE_SECONDS)
    with store.engine.connect() as conn:
        rows = conn.execute(select(Run.id, Run.host, Run.pid, Run.heartbeat_at)
                            .where(Run.status == "running")).all()
    gone = [run_id for run_id, host, pid, beat in rows
            if (host == HOST and pid and pid != os.getpid() and not pid_alive(pid))
            or (beat is not None and now - _utc(beat) > stale)]  # type: ignore[operator]
    if gone:
        try:
            store._write(lambda conn: conn.execute(
                update(Run).where(Run.id.in_(gone), Run.status == "running")
                .values(status="abandoned",
                        error="abandoned: the run's process stopped without finishing it")))
        except Exception:  # noqa: BLE001 - a read-only store still answers queries
            return []
    return gone


class Heartbeat:
    """The per-store background thread; runs while the store has open runs."""

    def __init__(self, store: Any):
        self._store = weakref.ref(store)
        self._open: set[str] = set()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def opened(self, run_id: str) -> None:
        with self._lock:
            self._open.add(run_id)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="flowopt-heartbeat",
                                                daemon=True)
                self._thread.start()

    def closed(self, run_id: str) -> None:
        with self._lock:
            self._open.discard(run_id)
            if not self._open:
                self._wake.set()

    @property
    def running(self) -> bool:
        thread = self._thread
        return thread is not None and thread.is_alive()

    def wake(self) -> None:
        """Flush now rather than at the next tick (the buffer is full)."""
        self._wake.set()

    def stop(self) -> None:
        with self._lock:
            self._open.clear()
        self._wake.set()

    def _loop(self) -> None:
        last_beat = time.monotonic()
        while True:
            self._wake.wait(FLUSH_SECONDS)
            with self._lock:  # decided under the lock `opened` takes: no run is left unwatched
                if not self._open:
                    self._thread = None
                    return
                self._wake.clear()
            store = self._store()
            if store is None:
                return
            try:
                store.flush()
                if time.monotonic() - last_beat >= HEARTBEAT_SECONDS:
                    last_beat = time.monotonic()
                    self.beat(store)
            except Exception:  # noqa: BLE001 - never kill the run; the next tick retries
                pass
            del store

    def beat(self, store: Any) -> None:
        with self._lock:
            ids = sorted(self._open)
        if not ids:
            return
        now = datetime.now(timezone.utc)

        def write(conn: Any) -> None:
            conn.execute(update(Run).where(Run.id.in_(ids)).values(heartbeat_at=now))
            conn.execute(update(Run).where(Run.id.in_(ids), Run.status == "abandoned")
                         .values(status="running", error=None))

        store._write(write)


_STORES: "weakref.WeakSet[Any]" = weakref.WeakSet()


def track(store: Any) -> None:
    _STORES.add(store)


@atexit.register
def _flush_at_exit() -> None:
    for store in list(_STORES):
        try:
            store.flush()
        except Exception:  # noqa: BLE001 - exiting anyway; nothing better to do
            pass
