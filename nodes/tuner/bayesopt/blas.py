"""One BLAS thread for the calling thread while a GP is fitted and queried.

The GP's matrices are at most a few hundred wide. Threaded OpenBLAS only adds
synchronisation there, and on a loaded 2-core machine its waiting threads make a
150×150 Cholesky + inverse take 150 ms instead of 1.3 ms (measured here), and slow
scipy's L-BFGS-B, whose C code calls BLAS, as much. Optuna's GPSampler fights the same
contention (``optuna/_gp/thread_limiting.py``).

OpenBLAS ≥ 0.3.27 has ``openblas_set_num_threads_local``, which changes the count for
the calling thread only, so other threads of the process (a training node running
beside the tuner) keep theirs; threadpoolctl, the usual tool, sets the process-wide
count instead. The OpenBLAS copies numpy and scipy loaded are found in
``/proc/self/maps``; where there is none (another BLAS, another OS) this is a no-op.
"""
from __future__ import annotations

import contextlib
import ctypes
from collections.abc import Iterator

_setters: list | None = None


def _find_setters() -> list:
    found = []
    try:
        with open("/proc/self/maps", encoding="utf-8") as maps:
            paths = {line.split()[-1] for line in maps if "openblas" in line.lower()}
    except OSError:
        return found
    for path in sorted(paths):
        try:
            fn = ctypes.CDLL(path).openblas_set_num_threads_local
        except (OSError, AttributeError):
            continue
        fn.restype, fn.argtypes = ctypes.c_int, [ctypes.c_int]
        found.append(fn)
    return found


@contextlib.contextmanager
def single_threaded() -> Iterator[None]:
    """Run the body with one OpenBLAS thread in this thread; restore the previous count after."""
    global _setters
    if _setters is None:
        import numpy  # noqa: F401 - make sure the libraries are loaded before looking
        import scipy.linalg  # noqa: F401

        _setters = _find_setters()
    previous = [fn(1) for fn in _setters]
    try:
        yield
    finally:
        for fn, count in zip(_setters, previous):
            fn(count)
