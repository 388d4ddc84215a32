"""A node kind's code as part of its identity (its cache keys).

As DVC hashes a stage's code dependencies, a kind defined outside the installed node
packages — a ``plugins:`` file, a module of your own, a script — is identified by the
hash of its module's source as well as by its name and version: editing a plugin, even a
line outside the function such as a missing ``import``, changes the cache keys of its
kinds, so exactly the results it made are computed again. Kinds shipped by a package
through the ``flowopt.nodes`` entry-point group (the built-ins included) are identified
by their ``version`` instead: an installed package's source does not change under a
user, and hashing it would throw away every cached result on each upgrade, a fixed
comment included.
"""
from __future__ import annotations

import functools
import hashlib
import inspect
from pathlib import Path
from typing import Any, Callable

from .registry import ENTRY_POINT_GROUP


@functools.lru_cache(maxsize=1)
def _shipped_packages() -> tuple[str, ...]:
    """Modules named by the ``flowopt.nodes`` entry points (the installed node packages)."""
    from importlib.metadata import entry_points

    return tuple(entry.value.split(":")[0].strip()
                 for entry in entry_points(group=ENTRY_POINT_GROUP))


@functools.lru_cache(maxsize=None)
def code_digest(fn: Callable[..., Any]) -> str | None:
    """Hash of the source of the module defining `fn`, or None for a kind an installed
    node package ships (module docstring) and when the source cannot be read (an
    interactive session: such a kind is identified by name and version alone).

    Cached per function object: a plugin file that changed is executed again when it is
    loaded (`flowopt.registry.load_plugin`), which makes new functions."""
    module = getattr(fn, "__module__", "") or ""
    if any(module == p or module.startswith(p + ".") for p in _shipped_packages()):
        return None
    try:
        source = inspect.getsourcefile(fn)
    except TypeError:
        return None
    try:
        payload = Path(source).read_bytes() if source else None
    except OSError:
        return None
    return hashlib.blake2b(payload, digest_size=16).hexdigest() if payload is not None else None
