"""The one way bytes become an object: build a stream-set object, PUT it once, commit it.

Uploads (file WAL data going to objects), the object WAL and compaction all write objects;
they differ only in how the object is committed to the metadata store, which they pass in.
A retried write (its first outcome unknown) accepts that its own earlier PUT landed.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from broker_service.metadata.records import StreamRange
from broker_service.stream.object_format import Buffer, StreamSetObjectBuilder
from broker_service.stream.objectstore.base import ObjectExists, ObjectStore

# One stream's part of an object: its batches as (base_offset, end_offset, max_ts, bytes)
Batches = Sequence[tuple[int, int, int, Buffer]]


@dataclass(frozen=True, slots=True)
class WrittenObject:
    key: str
    size: int
    ranges: list[StreamRange]  # one per stream, in the order given


Commit = Callable[[WrittenObject], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class PreparedObject:
    """An object built and not yet written: its bytes, and what committing it records. A
    retry writes the same bytes under the same key, and a commit whose outcome is unknown is
    settled knowing exactly what it would have recorded."""

    parts: list[Buffer]
    written: WrittenObject


class ObjectWriter:
    def __init__(self, objects: ObjectStore, block_bytes: int = 1 << 20) -> None:
        self.objects = objects
        self.block_bytes = block_bytes

    def prepare(
        self,
        key: str,
        streams: Sequence[tuple[int, Batches]],
        coverage: dict[int, tuple[int, int]] | None = None,
    ) -> PreparedObject:
        """Build the object of the streams' batches. ``coverage`` overrides a stream's
        offset range (compaction keeps the exact range it replaces, even where filtering
        removed batches)."""
        builder = StreamSetObjectBuilder(self.block_bytes)
        for stream_id, batches in streams:
            builder.add_stream(stream_id, batches)
        parts = builder.build()
        ranges = []
        for s in builder.spans:
            start, end = (coverage or {}).get(s.stream_id, (s.start_offset, s.end_offset))
            ranges.append(
                StreamRange(s.stream_id, start, end, key, s.position, s.size, s.max_timestamp)
            )
        return PreparedObject(parts, WrittenObject(key, sum(len(p) for p in parts), ranges))

    async def put_and_commit(
        self, prepared: PreparedObject, commit: Commit, *, retry: bool = False
    ) -> WrittenObject:
        """PUT the object once, then ``commit`` it. ``retry``: an earlier attempt may have
        PUT it already (the key is unique to its writer, so it is ours)."""
        try:
            await self.objects.put(prepared.written.key, prepared.parts)
        except ObjectExists:
            if not retry:
                raise
        await commit(prepared.written)
        return prepared.written

    async def write(
        self,
        key: str,
        streams: Sequence[tuple[int, Batches]],
        commit: Commit,
        *,
        retry: bool = False,
        coverage: dict[int, tuple[int, int]] | None = None,
    ) -> WrittenObject:
        """Build, PUT and commit object ``key`` (``prepare`` + ``put_and_commit``)."""
        return await self.put_and_commit(
            self.prepare(key, streams, coverage), commit, retry=retry
        )
