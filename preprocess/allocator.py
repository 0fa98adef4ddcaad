"""Keep camera-sized image buffers in the heap: a third of a large JPEG's decode time was page faults.

glibc serves every allocation above its mmap threshold (at most 32 MiB by default) with a fresh
mmap and unmaps it on free. A 12 MP photo needs two 36 MB buffers (decoder output, RGB copy), so
each request faulted in 72 MB of new pages: 83 ms to decode a 4000x3000 JPEG where the same decode
with the buffers kept takes 48 ms (perf/preprocess_bench.py, one thread). Raising the threshold to
64 MiB keeps buffers up to about 21 megapixels in the heap; the trim threshold bounds the free heap
a process keeps afterwards. Process-wide, so only the preprocess model's own process calls it.
"""

from __future__ import annotations

import ctypes

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3
MIB = 1 << 20


def keep_large_buffers(mmap_threshold: int = 64 * MIB, trim_threshold: int = 128 * MIB) -> bool:
    """Tell glibc's malloc to reuse buffers up to `mmap_threshold`; False where that is not possible."""
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library the process already runs on
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, mmap_threshold)) and bool(mallopt(M_TRIM_THRESHOLD, trim_threshold))
