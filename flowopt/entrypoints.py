"""Loading the ``flowopt.nodes`` entry-point group: the built-in node library and plugins.

Its own module so that both the registry (a kind looked up by name) and the artifact
codecs (a recipe's builder named by a stored artifact) can load the group without
importing each other. Loading is once per process, under a lock; a plugin that fails
to import is reported with its name and loading is tried again on the next lookup.
"""
from __future__ import annotations

import threading

from .errors import FlowoptError

ENTRY_POINT_GROUP = "flowopt.nodes"

_loaded = False
_lock = threading.RLock()


def load_entry_points() -> None:
    """Import every module of the group (once; a no-op afterwards)."""
    global _loaded
    with _lock:
        if _loaded:
            return
        _loaded = True
        from importlib.metadata import entry_points

        for entry in entry_points(group=ENTRY_POINT_GROUP):
            try:
                entry.load()
            except Exception as exc:
                _loaded = False
                raise FlowoptError(f"cannot load node plugin '{entry.name}' ({entry.value}): "
                                   f"{type(exc).__name__}: {exc}") from exc
