"""Lazy numba compilation of plain-Python loops. numba is optional: without it the
callers fall back to torch, and :func:`parallel` returns None."""
from __future__ import annotations

from typing import Callable, Dict, Optional

_compiled: Dict[Callable, Optional[Callable]] = {}


def prange(n):
    """``range`` in plain Python; ``numba.prange`` (split across cores) when compiled."""
    return range(n)


def parallel(fn: Callable) -> Optional[Callable]:
    """``fn`` compiled once with numba (parallel, cached on disk, GIL released), its
    module-level ``_prange`` calls split across cores; None without numba."""
    if fn not in _compiled:
        try:
            import numba
        except ImportError:
            _compiled[fn] = None
        else:
            globals_ = dict(fn.__globals__, _prange=numba.prange)
            copy = type(fn)(fn.__code__, globals_)
            _compiled[fn] = numba.njit(parallel=True, cache=True, nogil=True)(copy)
    return _compiled[fn]
