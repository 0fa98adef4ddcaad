"""At most a few large decodes at once across every preprocess process of one server.

An image at the per-image limit (decoding.DEFAULT_MAX_PIXELS, 120 megapixels) holds 7 bytes per
pixel while it is decoded and resized: 840 MB in one process. With one such image on every
preprocess instance at once, a pod would need instances x 840 MB on top of its ordinary peak. So
an image above LARGE_PIXELS (a 24-megapixel full-frame photo, 168 MB at its peak) first takes one of
LARGE_SLOTS slots shared by the server's preprocess processes: the pod's peak is then instances x
the peak at LARGE_PIXELS plus LARGE_SLOTS x the peak at the limit (model_repository/memory.py).
An image that finds no free slot within WAIT_S is refused with a message that says so; the other
images and requests go on.

A slot is an exclusive flock on a file in a directory of the server's own (its process id names it,
every stub being a child of tritonserver): the kernel drops the lock when the holder exits, so a
killed step never keeps one.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from preprocess.formats import ImageDecodeError

LARGE_PIXELS = 24_000_000
LARGE_SLOTS = 2
WAIT_S = 1.0  # about the preprocess queue's timeout: a request should not wait longer for a slot
_POLL_S = 0.02


def server_directory(server_pid: int | None = None) -> Path:
    """The slot directory of a tritonserver; by default this process's parent's (a step's server)."""
    return Path(tempfile.gettempdir()) / f"paddleclas-decode-slots-{server_pid or os.getppid()}"


@dataclass(frozen=True)
class DecodeSlots:
    directory: Path
    slots: int = LARGE_SLOTS
    large_pixels: int = LARGE_PIXELS
    wait_s: float = WAIT_S

    def _try_each(self) -> int | None:
        """An fd holding one free slot's lock, or None when all are taken."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        for index in range(self.slots):
            fd = os.open(self.directory / f"slot-{index}", os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                os.close(fd)
        return None

    @contextmanager
    def hold(self, pixels: int) -> Iterator[None]:
        """Run the body holding a slot when `pixels` is above large_pixels; refuse after wait_s without one."""
        if pixels <= self.large_pixels:
            yield
            return
        deadline = time.monotonic() + self.wait_s
        while (fd := self._try_each()) is None:
            if time.monotonic() >= deadline:
                raise ImageDecodeError(
                    f"image of {pixels:,} pixels: the server decodes at most {self.slots} images above "
                    f"{self.large_pixels:,} pixels at once and none finished within {self.wait_s:g} s; try again"
                )
            time.sleep(_POLL_S)
        try:
            yield
        finally:
            os.close(fd)  # closing the only descriptor drops the lock
