"""Content-addressed artifact blobs on the file system, written atomically.

A blob lives at ``ROOT/ab/cdef…`` (its content hash). Writes go to a temporary file in
the same directory and are renamed into place, so a reader never sees half a blob and
two processes writing the same content both succeed. File names come from content
hashes only (40 hex digits, checked), so no node or user string can name a path outside
the root.

A blob's mtime is the last time a run wrote (or would have written) it: `put` of content
that is already there refreshes the mtime, so `gc` can tell a blob a live run has just
produced from old garbage with the same content. `delete_if_older` moves a blob aside
before deleting it and puts it back if a `put` touched it meanwhile.
"""
from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Iterator

_DIGEST = re.compile(r"[0-9a-f]{40}")


class BlobStore:
    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def path(self, digest: str) -> Path:
        if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
            raise ValueError(f"not a content hash: {digest!r}")
        return self.root / digest[:2] / digest[2:]

    def digests(self) -> Iterator[str]:
        """Every blob's content hash (files that are not blobs are skipped)."""
        if not self.root.is_dir():
            return
        for folder in sorted(self.root.iterdir()):
            if folder.is_dir() and len(folder.name) == 2:
                for file in sorted(folder.iterdir()):
                    digest = folder.name + file.name
                    if _DIGEST.fullmatch(digest) and file.is_file():
                        yield digest

    def leftovers(self) -> list[Path]:
        """Temporary files of writes that never finished (a crash between write and rename)."""
        return sorted(self.root.glob("*/.tmp-*")) if self.root.is_dir() else []

    def delete(self, digest: str) -> int:
        """Remove a blob; returns the bytes freed."""
        path = self.path(digest)
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            return 0
        return size

    def exists(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def delete_if_older(self, digest: str, cutoff: float) -> int | None:
        """Remove a blob unless its mtime is `cutoff` or later; returns the bytes freed,
        None if it was kept.

        The blob is first renamed aside (atomic): a `put` from then on writes a fresh copy,
        and a `put` that refreshed it just before shows in the mtime, checked after."""
        path = self.path(digest)
        aside = path.with_name(f".gc-{path.name}")
        try:
            os.replace(path, aside)
        except FileNotFoundError:
            return 0
        stat = aside.stat()
        if stat.st_mtime >= cutoff:
            if path.exists():  # a put wrote it again meanwhile: same content
                aside.unlink()
            else:
                os.replace(aside, path)
            return None
        aside.unlink()
        return stat.st_size

    def put(self, digest: str, payload: bytes) -> None:
        target = self.path(digest)
        if target.is_file():
            try:
                os.utime(target)  # a live run uses it now: gc must see it as new
                return
            except FileNotFoundError:
                pass  # gc removed it just now: write it again
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(payload)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def get(self, digest: str) -> bytes:
        return self.path(digest).read_bytes()
