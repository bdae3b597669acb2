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
thousands of large intermediates per call (STC at 24x512x512 in bf16: about 8 GB of them; PGTFormer's
512x512 decoder levels 25-100 MB each), and a fresh mapping for each one costs page faults and zeroing every
time (STC's calls ran 15 % slower in `bfvr restore` than the same forward in a plain process:
benchmarks/stc_overhead.py; PGTFormer's bf16 window 8.45 against 6.13 CPU-s on one thread). So
`model_call()`, which the engine wraps around every model call, sets the mmap threshold to glibc's ceiling
(32 MiB) for the call's duration, so the heap serves the intermediates and keeps them for the next call
(trim threshold 64 MiB from then on, glibc's own pairing), then puts the streaming threshold back. The heap
then holds about one call's working set, the same from the first call to the last: memory stays flat in
the video's length. Measured on PGTFormer bf16 (4 frames through the engine, one thread): 29.3 CPU-s /
1.87 GB peak untuned, 28.3 / 1.84 GB with this setting, 25.4 / 1.89 GB with a 2 GiB trim threshold, 24.0 /
2.0-2.15 GB serving every allocation from the heap (M_MMAP_MAX 0: its largest intermediates are above 32
MiB); with two threads the 2 GiB trim threshold raised the peak to 1.97-2.03 GB against 1.81-1.91, so the
64 MiB one stays (issue 24: no higher peak memory). Without `tune_malloc_for_streaming` in the process,
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
#: during a model call: glibc's ceiling for a fixed mmap threshold (HEAP_MAX_SIZE / 2 on 64-bit)
MODEL_MMAP_THRESHOLD = 32 << 20
#: from the first model call on: free heap kept up to this (glibc's pairing: 2x the mmap threshold)
MODEL_TRIM_THRESHOLD = 64 << 20
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
    """Around one model call: the heap serves allocations up to 32 MiB (not fresh mappings) and is kept
    for the next call, when `tune_malloc_for_streaming` tuned this process; otherwise nothing (see the module
    doc)."""
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
