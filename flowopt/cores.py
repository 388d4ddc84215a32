"""How many CPU cores this process may use (its affinity mask, not the machine's count).

Its own module so that every executor (`executors`, `ray_executor`) can size itself
without importing another executor module.
"""
from __future__ import annotations

import os


def default_workers() -> int:
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
