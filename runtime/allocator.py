"""Freed memory is kept for the next request instead of being handed back to the kernel (glibc's malloc).

By default glibc serves a large allocation with ``mmap`` and unmaps it when it is freed, and it trims
the heap's freed top back to the kernel. Either way, each request's large buffers (a 12 MP photo's
7 MB body, the JSON text of its base64, the decoded image) land on fresh pages, which the kernel
zero-fills one page fault at a time. A 12 MP base64 request took about 10,800 page faults (42 MB) this
way, 10 to 20 ms of it (docs/performance.md); with the two settings below, under ten. The memory is
reused by the next request, so a server holds about its largest request's working set between
requests. Where the C library is not glibc (macOS, musl), nothing changes.
"""

from __future__ import annotations

import ctypes

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # <malloc.h>
MMAP_THRESHOLD = 32 << 20
"""Allocations below this come from the heap, where a freed one is reused (glibc's largest allowed value)."""
TRIM_THRESHOLD = 128 << 20
"""The heap keeps up to this much freed memory at its top before it hands any back."""


def keep_freed_memory() -> bool:
    """Sets both thresholds; whether the C library took them."""
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the process's own symbols, the C library's among them
    except (OSError, AttributeError):  # no mallopt: not glibc
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
