"""Keep the server's memory flat over a long run: glibc's allocator thresholds, fixed at start.

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

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter numbers (malloc.h)
MMAP_THRESHOLD_BYTES = 32 * 2**20  # glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit systems


def fix_malloc_thresholds() -> bool:
    """Fix glibc's mmap threshold at :data:`MMAP_THRESHOLD_BYTES`; True when it was set (glibc only)."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
