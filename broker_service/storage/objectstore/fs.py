"""Local-directory ObjectStore: write to a temp file, fsync, rename (atomic, durable)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from .base import ObjectNotFound, ObjectStore


class FsObjectStore(ObjectStore):
    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        if key.startswith("/") or ".." in key.split("/"):
            raise ValueError(f"bad object key {key!r}")
        return self.root / key

    def _put(self, key: str, data: bytes | bytearray | memoryview) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def _get(self, key: str, start: int, end: int | None) -> bytes:
        try:
            with open(self._path(key), "rb") as f:
                f.seek(start)
                return f.read() if end is None else f.read(end - start)
        except FileNotFoundError as exc:
            raise ObjectNotFound(key) from exc

    async def put(self, key: str, data: bytes | bytearray | memoryview) -> None:
        await asyncio.to_thread(self._put, key, data)

    async def get(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        return await asyncio.to_thread(self._get, key, start, end)

    async def delete(self, key: str) -> None:
        try:
            self._path(key).unlink()
        except FileNotFoundError:
            pass

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
