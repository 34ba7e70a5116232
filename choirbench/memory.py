"""Handing freed heap memory back to the operating system between the phases of long work.

glibc keeps memory freed by large NumPy/torch temporaries inside the process's heap for reuse, and
holes between live blocks are never returned by itself, so a process that has run one memory-hungry
phase (the multi-F0 network over a long recording) carries that phase's peak into the next one (the
separation). ``malloc_trim(0)`` releases every whole free page of every arena (glibc >= 2.8). The
values computed are unaffected; the cost is the page faults when the memory is touched again, so it
is called between phases or blocks, not per operation.
"""
from __future__ import annotations

import ctypes
import functools


@functools.lru_cache(maxsize=1)
def _libc():
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim  # noqa: B018  (not glibc: no such symbol)
    except (OSError, AttributeError):
        return None
    return libc


def trim_heap() -> bool:
    """Return the heap's free pages to the OS (glibc ``malloc_trim(0)``).

    True when memory was released; False when none was, or off glibc (a no-op there).
    """
    libc = _libc()
    return bool(libc is not None and libc.malloc_trim(0))
