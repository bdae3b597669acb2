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

The 4 MiB threshold is wrong for the model's own forward pass, though: a network allocates and frees
thousands of 4-32 MiB intermediates per call (STC at 24x512x512 in bf16: about 8 GB of them), and a fresh
mapping for each one costs page faults and zeroing every time (STC's calls ran 15 % slower in `bfvr restore`
than the same forward in a plain process: benchmarks/stc_overhead.py). So `model_call()`, which the engine
wraps around every model call, puts glibc's own ceiling back for the call's duration (32 MiB: the heap serves
the intermediates and keeps them for the next call, as without tuning) and the streaming threshold after it.
The trim threshold is 64 MiB from then on (glibc's default pairing, 2x the mmap threshold), so the heap the
calls reuse is not returned and re-faulted between them. Without `tune_malloc_for_streaming` in the process,
`model_call()` does nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import sys
from collections.abc import Iterator

_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8
_M_TRIM_THRESHOLD = -1
#: during a model call: glibc's ceiling of its dynamic mmap threshold, and the trim threshold it pairs with it
MODEL_MMAP_THRESHOLD, MODEL_TRIM_THRESHOLD = 32 << 20, 64 << 20
#: (libc, the streaming mmap threshold) once `tune_malloc_for_streaming` applied in this process
_tuned: tuple[ctypes.CDLL, int] | None = None


def tune_malloc_for_streaming(arenas: int = 2, mmap_threshold: int = 4 << 20) -> bool:
    """Cap glibc's malloc arenas and fix its mmap threshold. Returns True if applied."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = bool(libc.mallopt(_M_ARENA_MAX, int(arenas)))
        ok = bool(libc.mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold))) and ok
    except (OSError, AttributeError):
        return False
    global _tuned
    _tuned = (libc, int(mmap_threshold)) if ok else None
    return ok


@contextlib.contextmanager
def model_call() -> Iterator[None]:
    """Around one model call: the heap serves allocations up to 32 MiB (not fresh mappings) while it runs,
    when `tune_malloc_for_streaming` tuned this process; otherwise nothing (see the module doc)."""
    if _tuned is None:
        yield
        return
    libc, streaming = _tuned
    libc.mallopt(_M_TRIM_THRESHOLD, MODEL_TRIM_THRESHOLD)
    libc.mallopt(_M_MMAP_THRESHOLD, MODEL_MMAP_THRESHOLD)
    try:
        yield
    finally:
        libc.mallopt(_M_MMAP_THRESHOLD, streaming)
