"""ObjectStore: the durable home of all data. Embedded: a local directory; cloud: S3."""

from __future__ import annotations

from abc import ABC, abstractmethod


class ObjectNotFound(KeyError):
    pass


class ObjectStore(ABC):
    @abstractmethod
    async def put(self, key: str, data: bytes | bytearray | memoryview) -> None:
        """Store ``data`` under ``key`` durably; visible to readers once this returns."""

    @abstractmethod
    async def get(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        """Bytes [start, end) of the object (to its end when ``end`` is None)."""

    @abstractmethod
    async def delete(self, key: str) -> None: ...

    @abstractmethod
    async def list(self, prefix: str = "") -> list[str]: ...
