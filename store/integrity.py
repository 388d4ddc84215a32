"""Upkeep: `check` that every artifact's content matches its hash, `gc` unreferenced blobs.

`check` reads every blob an artifact row points to (each content once) and every inline
payload, and recomputes its content hash. With ``repair`` it deletes corrupt blobs and
leftover temporary files of interrupted writes: a missing blob is a cache miss, so the
node that made it simply runs again the next time it is needed — a corrupt one would
be served. (`Store.load` verifies the hash on every read as well.)

`gc` deletes blob files that no artifact row references (a run deleted from the
database, an artifact whose row was never written because its process died). It is a
dry run unless told otherwise, and never deletes what a running or just-finished run
references, whatever ``min_age`` says: a run writes a blob first and its row up to a
second later, so rows alone cannot tell. The rule, in this order:

1. note the time gc starts and the start of the oldest run still ``running``;
2. read which blobs the artifact rows reference (a run that has finished flushed all
   its rows before it said so);
3. keep every blob touched since the earlier of those two times (less `CLOCK_SLACK`
   for the database's clock, `MTIME_SLACK` for the file system's coarse one;
   `BlobStore.put` refreshes the mtime of content that already exists, so a blob a
   live run uses is always that new), and blobs younger than ``min_age``;
4. delete the rest with `BlobStore.delete_if_older`, which backs off if a `put` touches
   the blob while it is being deleted.

A run that started before step 1 is running at step 1; one that started after it
writes its blobs after it; one that finished before step 2 has its rows in; so no
blob of a live run is ever deleted.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from datetime import datetime, timezone

from sqlalchemy import func, select

from flowopt.recording import content_hash

from .schema import Artifact, Execution, Run

LEFTOVER_AGE = 600.0  # seconds before a temporary file is surely not a write in progress
CLOCK_SLACK = 60.0  # seconds: the database's clock and the file system's may differ
MTIME_SLACK = 1.0  # seconds: a file's mtime comes from a coarse clock, a little behind


@dataclass
class CheckReport:
    artifacts: int = 0
    blobs: int = 0
    missing: list[dict[str, Any]] = field(default_factory=list)
    corrupt: list[dict[str, Any]] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.corrupt or self.leftovers)

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "artifacts": self.artifacts, "blobs": self.blobs,
                "missing": self.missing, "corrupt": self.corrupt, "leftovers": self.leftovers,
                "repaired": self.repaired}


@dataclass
class GcReport:
    dry_run: bool
    root: str = ""  # the artifact root scanned (the store's own, see `location`)
    blobs: list[dict[str, Any]] = field(default_factory=list)  # {hash, size}
    kept_young: int = 0
    kept_live: int = 0  # touched since the oldest running run started

    @property
    def bytes(self) -> int:
        return sum(b["size"] for b in self.blobs)

    def to_json(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run, "root": self.root, "removed" if not self.dry_run else "would_remove":
                self.blobs, "bytes": self.bytes, "kept_young": self.kept_young,
                "kept_live": self.kept_live}


class Integrity:
    engine: Any
    blobs: Any

    def check(self, *, repair: bool = False) -> CheckReport:
        """Verify every artifact's content against its hash (see the module docstring)."""
        self.flush()  # type: ignore[attr-defined]
        report = CheckReport()
        by_hash: dict[str, list[dict[str, Any]]] = {}
        with self.engine.connect() as conn:
            rows = conn.execute(select(Artifact.id, Artifact.hash, Artifact.inline,
                                       Execution.node_id, Execution.run_id)
                                .outerjoin(Execution, Execution.id == Artifact.execution_id))
            for aid, digest, inline, node, run_id in rows:
                report.artifacts += 1
                entry = {"artifact": aid, "hash": digest, "node": node, "run_id": run_id}
                if inline is not None:
                    if content_hash(inline) != digest:
                        report.corrupt.append({**entry, "where": "inline"})
                else:
                    by_hash.setdefault(digest, []).append(entry)
        for digest, entries in by_hash.items():
            report.blobs += 1
            path = self.blobs.path(digest)
            try:
                payload = path.read_bytes()
            except FileNotFoundError:
                report.missing.extend(entries)
                continue
            if content_hash(payload) != digest:
                report.corrupt.extend({**e, "where": "blob"} for e in entries)
                if repair:
                    self.blobs.delete(digest)
                    report.repaired.append(f"deleted corrupt blob {digest}")
        now = time.time()
        for leftover in self.blobs.leftovers():
            report.leftovers.append(str(leftover))
            if repair and now - leftover.stat().st_mtime > LEFTOVER_AGE:
                leftover.unlink(missing_ok=True)
                report.repaired.append(f"deleted unfinished write {leftover}")
        return report

    def gc(self, *, dry_run: bool = True, min_age: float = 3600.0) -> GcReport:
        """Delete (or, in a dry run, list) blobs that no artifact references."""
        self.flush()  # type: ignore[attr-defined]
        started = time.time()
        with self.engine.connect() as conn:
            oldest = conn.execute(select(func.min(Run.started_at))
                                  .where(Run.status == "running")).scalar()
        live_since = started - MTIME_SLACK
        if oldest is not None:
            live_since = min(live_since, _timestamp(oldest) - CLOCK_SLACK)
        with self.engine.connect() as conn:
            referenced = set(conn.execute(select(Artifact.hash).where(Artifact.inline.is_(None))
                                          .distinct()).scalars())
        report = GcReport(dry_run=dry_run, root=str(self.blobs.root))
        young_since = time.time() - min_age
        for digest in self.blobs.digests():
            if digest in referenced:
                continue
            try:
                stat = self.blobs.path(digest).stat()
            except FileNotFoundError:
                continue
            if stat.st_mtime >= live_since:
                report.kept_live += 1
                continue
            if stat.st_mtime >= young_since:
                report.kept_young += 1
                continue
            if not dry_run and self.blobs.delete_if_older(digest, live_since) is None:
                report.kept_live += 1  # touched while being deleted
                continue
            report.blobs.append({"hash": digest, "size": stat.st_size})
        return report


def _timestamp(moment: datetime) -> float:
    """Seconds since the epoch of a stored time (UTC; SQLite hands it back naive)."""
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()
