"""ObjectStore: the durable home of all data. Embedded: a local directory; cloud: S3."""

from __future__ import annotations

import builtins
from abc import ABC, abstractmethod
from collections.abc import Sequence

Buffer = bytes | bytearray | memoryview

# Objects up to this size go up as one PUT; the S3 store uploads larger ones in parts (4+
# requests). Writers that size their objects (the object WAL) stay at or below it.
SINGLE_PUT_MAX_BYTES = 16 << 20
# The most record bytes such a writer puts in one object: room is left for the object's
# header and index (a few dozen bytes per stream in it).
SINGLE_PUT_MAX_DATA_BYTES = SINGLE_PUT_MAX_BYTES - (1 << 20)


class ObjectNotFound(KeyError):
    pass


class ObjectExists(Exception):
    """A conditional create found the key already written by someone else (keys are never
    overwritten in the cloud store: an existing key means another writer got there first)."""

    def __init__(self, key: str) -> None:
        super().__init__(f"object {key!r} already exists")
        self.key = key


class ObjectStore(ABC):
    @abstractmethod
    async def put(self, key: str, parts: Sequence[Buffer]) -> None:
        """Store the concatenation of ``parts`` under ``key`` durably; visible once this
        returns. Parts are passed as they are so large objects are never joined in memory."""

    @abstractmethod
    async def get(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        """Bytes [start, end) of the object (to its end when ``end`` is None). A negative
        ``start`` with no ``end`` is a suffix: the last ``-start`` bytes."""

    @abstractmethod
    async def delete(self, key: str) -> None: ...

    @abstractmethod
    async def list(self, prefix: str = "") -> list[str]: ...

    def close(self) -> None:  # noqa: B027 (most stores hold nothing to release)
        """Release threads and connections; calls still running finish or fail."""

    async def list_tops(self) -> builtins.list[str]:
        """The first level of the key space: each ``<name>/`` prefix once, and each key with
        no ``/``. Lets a caller list a part of a large store (compaction lists a shard of its
        own objects per run); stores that can answer without listing every key do."""
        tops: set[str] = set()
        for key in await self.list():
            head, slash, _ = key.partition("/")
            tops.add(head + slash if slash else key)
        return sorted(tops)
