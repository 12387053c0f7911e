"""Object store helpers for tests: the directory store counting GETs per object (what S3
bills; compaction's reads are counted with it)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from broker_service.stream.objectstore.fs import FsObjectStore


class CountingGets(FsObjectStore):
    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.gets: Counter[str] = Counter()

    async def get(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        self.gets[key] += 1
        return await super().get(key, start, end)
