"""Keep the server's memory flat over a long run: glibc's allocator settings, fixed at start.

Two settings, both measured with ``benchmarks/serve_load.py`` (docs/serving.md):

- **One arena** (``M_ARENA_MAX`` 1). glibc gives each thread that allocates its own arena (up to 8 per
  core); the uvicorn event loop (uploads, responses) and the inference workers (frames, micro-batches)
  then fragment separate heaps, and the resident size kept growing after the first minute (+13 to
  +23 % by the end of a 2-minute load test with micro-batching). With one arena it stayed within 5 %.
  With 2 cores the threads' contention for one arena costs nothing measurable. ``MALLOC_ARENA_MAX`` in
  the environment, when set, is left as the user chose.
- **A fixed mmap threshold**, as follows.

glibc serves an allocation above ``M_MMAP_THRESHOLD`` (128 KiB at start) with its own ``mmap`` and
returns it to the system on ``free``; but after the first such block is freed it *raises* the
threshold to that block's size (up to 32 MiB). So the first large upload (a 20 MB file, or one a limit
refuses) silently moves every later frame-sized array (1-15 MB: decoded frames, probability maps, a
micro-batch) onto the heap, where fragmentation grows the resident memory well after the first minute.
Fixing the threshold at its ceiling from the start (``mallopt``) makes the allocator behave the same
for the whole run: the heap reaches its working size under the first minute's load and stays there.
Elsewhere than glibc (macOS, musl) nothing is done.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

M_MMAP_THRESHOLD, M_ARENA_MAX = -3, -8  # glibc's mallopt parameter numbers (malloc.h)
MMAP_THRESHOLD_BYTES = 32 * 2**20  # glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit systems


def fix_allocator_settings() -> bool:
    """One arena (unless ``MALLOC_ARENA_MAX`` is set) and the mmap threshold fixed at
    :data:`MMAP_THRESHOLD_BYTES`; True when glibc took them. Call it before the server starts its threads."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    arena = "MALLOC_ARENA_MAX" in os.environ or bool(mallopt(M_ARENA_MAX, 1))
    return arena and bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
