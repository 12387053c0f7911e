"""Dropping written pages from the page cache (stream/pagecache.py) is advice: the bytes stay
on disk and readable, and a descriptor the kernel refuses never fails the write path."""

from __future__ import annotations

import os
from pathlib import Path

from broker_service.stream.pagecache import drop_written


def test_dropped_pages_read_back_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "seg"
    data = os.urandom(3 * 4096 + 123)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        os.write(fd, data[:5000])
        os.fsync(fd)
        drop_written(fd, 0)
        os.write(fd, data[5000:])  # the next group starts inside a page the first left
        os.fsync(fd)
        drop_written(fd, 5000, len(data) - 5000)
    finally:
        os.close(fd)
    assert path.read_bytes() == data


def test_a_refused_descriptor_is_ignored(tmp_path: Path) -> None:
    fd = os.open(tmp_path / "gone", os.O_WRONLY | os.O_CREAT)
    os.close(fd)
    drop_written(fd, 0)  # EBADF: advice that cannot be given is not an error
