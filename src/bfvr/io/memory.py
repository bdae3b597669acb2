"""Process-level memory settings for long streaming runs.

glibc gives every thread that allocates its own malloc arena (up to 8 x cores). The decoder's,
encoder's and torch's worker threads each churn through frame-sized buffers, and the free space left
in many arenas makes the resident size creep up over a long video even though nothing is kept
(measured: +6 % peak RSS from a 10 s to a 2 min video). Two arenas keep it flat at no measurable
speed cost. Call this at the start of a process (the CLI's `restore` does), before threads start.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_ARENA_MAX = -8


def limit_malloc_arenas(n: int = 2) -> bool:
    """Cap glibc's malloc arenas at `n` (Linux/glibc only; elsewhere a no-op). Returns True if applied."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(_M_ARENA_MAX, int(n)))
    except (OSError, AttributeError):
        return False
