"""Fast decodes under load, memory handed back when idle: per process, whatever malloc the process runs.

A 12 MP photo needs two 36 MB buffers (decoder output, RGB copy) plus Pillow's 48 MB RGBX copy, and a
malloc that returns each one at free faults in ~100 MB of new pages per photo; a malloc that keeps them
holds hundreds of MB per decoding process for good. Both prices, per allocator, are measured by
`make bench-allocators` (docs/reliability.md, "Memory").

So a step process does both: `keep_large_buffers` tells the allocator it runs on to reuse freed
buffers, and `IdleRelease` hands every free page back once the step has been idle for a second.
The allocator is the one tritonserver was started with: the Python backend forks each stub with
tritonserver's environment, so an LD_PRELOAD allocator reaches every step (python_backend,
src/stub_launcher.cc), where glibc's mallopt is accepted and ignored. Each allocator is recognised by
a symbol only it exports.
"""

from __future__ import annotations

import ctypes
import threading
import time

M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
M_MMAP_THRESHOLD = -3
MIB = 1 << 20
IDLE_RELEASE_S = 1.0  # a step idle this long hands its free memory back
JEMALLOC_ALL_ARENAS = 4096  # MALLCTL_ARENAS_ALL in jemalloc 5's mallctl names ("arena.4096.purge")


def _process() -> ctypes.CDLL:
    return ctypes.CDLL(None)  # the symbols of the process: an LD_PRELOAD allocator's come first


def allocator() -> str:
    """ "tcmalloc", "jemalloc" or "glibc": the malloc this process runs on."""
    process = _process()
    if hasattr(process, "MallocExtension_ReleaseFreeMemory"):
        return "tcmalloc"
    if hasattr(process, "mallctl"):
        return "jemalloc"
    return "glibc"


def keep_large_buffers(mmap_threshold: int = 64 * MIB, trim_threshold: int = 128 * MIB) -> str:
    """Let this process's malloc reuse freed decode buffers; returns the allocator it acted on.

    glibc: serve buffers up to `mmap_threshold` (about 21 megapixels) from the heap, keep up to
    `trim_threshold` of free heap. tcmalloc: turn aggressive decommit off in this process (the server
    may run with TCMALLOC_AGGRESSIVE_DECOMMIT, which every step inherits). jemalloc: its decay,
    from MALLOC_CONF, already applies.
    """
    name, process = allocator(), _process()
    if name == "tcmalloc":
        process.MallocExtension_SetNumericProperty(b"tcmalloc.aggressive_memory_decommit", ctypes.c_size_t(0))
    elif name == "glibc":
        process.mallopt(M_MMAP_THRESHOLD, mmap_threshold)
        process.mallopt(M_TRIM_THRESHOLD, trim_threshold)
    return name


def release_free_memory() -> None:
    """Hand every free page of this process's malloc back to the kernel now."""
    name, process = allocator(), _process()
    if name == "tcmalloc":
        process.MallocExtension_ReleaseFreeMemory()
    elif name == "jemalloc":
        process.mallctl(f"arena.{JEMALLOC_ALL_ARENAS}.purge".encode(), None, None, None, ctypes.c_size_t(0))
    else:
        process.malloc_trim(ctypes.c_size_t(0))


class IdleRelease:
    """A daemon thread that calls release_free_memory once the step has been idle `idle_s` seconds.

    `busy()` at the start of an execution and `idle()` at its end; the release runs once per idle
    period, never during an execution (ctypes drops the GIL, so it would otherwise race for pages).
    """

    def __init__(self, idle_s: float = IDLE_RELEASE_S) -> None:
        self.idle_s = idle_s
        self._lock = threading.Lock()
        self._working = False
        self._last = time.monotonic()
        self._dirty = False
        self._wake = threading.Event()
        threading.Thread(target=self._run, name="idle-release", daemon=True).start()

    def busy(self) -> None:
        with self._lock:
            self._working, self._dirty = True, True

    def idle(self) -> None:
        with self._lock:
            self._working, self._last = False, time.monotonic()
        self._wake.set()

    def _due(self) -> float | None:
        """Seconds until the release is due; 0 now; None while working or with nothing to release."""
        with self._lock:
            if self._working or not self._dirty:
                return None
            return max(0.0, self._last + self.idle_s - time.monotonic())

    def _run(self) -> None:
        while True:
            wait = self._due()
            if wait is None:
                self._wake.wait()
                self._wake.clear()
                continue
            if wait > 0:
                self._wake.wait(wait)
                self._wake.clear()
                continue
            with self._lock:
                if self._working or time.monotonic() - self._last < self.idle_s:
                    continue
                self._dirty = False
                release_free_memory()
