"""Local-directory ObjectStore: write to a temp file, fsync, link into place (atomic, durable).

A write that fails (a full disk) removes its temp file, so failures never eat the space that
is left; temp files a crash left behind are swept when the store opens.
"""

from __future__ import annotations

import asyncio
import builtins
import os
import time
from collections.abc import Sequence
from pathlib import Path

from broker_service.stream.objectstore.base import Buffer, ObjectExists, ObjectNotFound, ObjectStore
from broker_service.stream.pagecache import drop_written

_IOV_MAX = 512
STALE_TEMP_S = 600.0  # a temp file this old belongs to a write that died


class FsObjectStore(ObjectStore):
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self._sweep_temp_files()

    def _sweep_temp_files(self) -> None:
        """Temp files of writes a crash interrupted (a live writer's are younger: keys are
        unique to their writer, so an old one is nobody's)."""
        cutoff = time.time() - STALE_TEMP_S
        for tmp in self.root.rglob("*.tmp"):
            try:
                if tmp.stat().st_mtime < cutoff:
                    tmp.unlink()
            except FileNotFoundError:
                pass

    def _path(self, key: str) -> Path:
        if key.startswith("/") or ".." in key.split("/"):
            raise ValueError(f"bad object key {key!r}")
        return self.root / key

    def _put(self, key: str, parts: Sequence[Buffer]) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            _write_all(fd, [memoryview(p).cast("B") for p in parts if len(p)])
            os.fsync(fd)
            drop_written(fd)  # read back through the block cache, not the page cache
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)  # a full disk: give back what the attempt took
            raise
        os.close(fd)
        try:
            os.link(tmp, path)  # atomic, and refuses an existing key like S3's If-None-Match
        except FileExistsError:
            raise ObjectExists(key) from None
        finally:
            os.unlink(tmp)
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def _get(self, key: str, start: int, end: int | None) -> bytes:
        try:
            with open(self._path(key), "rb") as f:
                if start < 0 and end is None:
                    f.seek(max(start, -os.fstat(f.fileno()).st_size), os.SEEK_END)
                    return f.read()
                size = os.fstat(f.fileno()).st_size
                stop = size if end is None else min(end, size)
                return os.pread(f.fileno(), max(0, stop - start), start) if stop > start else b""
        except FileNotFoundError as exc:
            raise ObjectNotFound(key) from exc

    async def put(self, key: str, parts: Sequence[Buffer]) -> None:
        await asyncio.to_thread(self._put, key, parts)

    async def get(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        return await asyncio.to_thread(self._get, key, start, end)

    async def delete(self, key: str) -> None:
        await asyncio.to_thread(self._path(key).unlink, missing_ok=True)

    async def list(self, prefix: str = "") -> list[str]:
        def walk() -> list[str]:
            out = []
            for p in self.root.rglob("*"):
                if p.is_file() and not p.name.endswith(".tmp"):
                    key = p.relative_to(self.root).as_posix()
                    if key.startswith(prefix):
                        out.append(key)
            return sorted(out)

        return await asyncio.to_thread(walk)

    async def list_tops(self) -> builtins.list[str]:
        def top() -> list[str]:
            out = []
            for p in self.root.iterdir() if self.root.exists() else ():
                if p.is_dir():
                    out.append(p.name + "/")
                elif not p.name.endswith(".tmp"):
                    out.append(p.name)
            return sorted(out)

        return await asyncio.to_thread(top)


def _write_all(fd: int, views: list[memoryview]) -> None:
    """writev everything, IOV_MAX buffers at a time, resuming after partial writes."""
    i = 0
    while i < len(views):
        n = os.writev(fd, views[i : i + _IOV_MAX])
        while n:
            if n >= len(views[i]):
                n -= len(views[i])
                i += 1
            else:
                views[i] = views[i][n:]
                n = 0
