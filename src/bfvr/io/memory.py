"""Process-level malloc settings for long streaming runs (glibc only; elsewhere a no-op).

Two effects made the resident size of `bfvr restore` creep up with the video's length although nothing
is kept (measured on a 512x512 identity restore: peak RSS +6 % from a 10 s to a 2 min video with the
face pipeline, +10 to +20 % on the whole-frame path, and +-25 % run-to-run noise):

* glibc's dynamic mmap threshold: after the first clip-sized buffer (tens of MB) is freed, glibc raises
  the threshold, so later clip buffers come from the heap, which fragments and is rarely returned;
* one malloc arena per allocating thread (decoder, encoder, torch workers), each keeping free space.

A fixed 4 MiB mmap threshold (clip tensors are always mapped and unmapped; frames and smaller buffers stay
on the heap) plus two arenas make the peak flat and lower at no measurable CPU cost. Call this at the
start of a process, before threads start: it changes process-wide state, so only the console script calls
it (`bfvr.cli.main`, before any command runs); library paths (the API, the UI's restore threads) never do.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8


def tune_malloc_for_streaming(arenas: int = 2, mmap_threshold: int = 4 << 20) -> bool:
    """Cap glibc's malloc arenas and fix its mmap threshold. Returns True if applied."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = bool(libc.mallopt(_M_ARENA_MAX, int(arenas)))
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold))) and ok
    except (OSError, AttributeError):
        return False
