"""Give the kernel back the page cache of bytes we wrote and will not read again.

A WAL segment is read only after a crash, and an object written here is read back through the
broker's own block cache: keeping their pages cached after the fsync buys nothing, and costs
the next writes fresh pages. Measured on this project's 2-vCPU Firecracker host (the kind of VM
Fargate runs on), writing 32 MiB to a new file and fsyncing it took 75 ms of CPU when the pages
stayed cached and 14 ms when they were dropped after the fsync (the next writes reuse the
freed pages instead of touching new memory); in the broker, the upload's object writes alone
were ~3.5 CPU-s per GiB produced before this (docs/PERFORMANCE.md, issue 21).
"""

from __future__ import annotations

import os

_DONTNEED = getattr(os, "POSIX_FADV_DONTNEED", None)
PAGE = 4096


def drop_written(fd: int, start: int = 0, length: int = 0) -> None:
    """After an fsync: drop the clean cached pages of ``[start, start + length)`` (length 0:
    to the end of the file). ``start`` is rounded down to a page, so the partial page a
    previous call had to leave (it was not whole yet) goes too. Never fails: it is advice."""
    if _DONTNEED is None:  # not on this platform (macOS): the kernel keeps them
        return
    begin = start - start % PAGE
    try:
        os.posix_fadvise(fd, begin, length + (start - begin) if length else 0, _DONTNEED)
    except OSError:
        pass
