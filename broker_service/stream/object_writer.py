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


class ObjectWriter:
    def __init__(self, objects: ObjectStore, block_bytes: int = 1 << 20) -> None:
        self.objects = objects
        self.block_bytes = block_bytes

    async def write(
        self,
        key: str,
        streams: Sequence[tuple[int, Batches]],
        commit: Commit,
        *,
        retry: bool = False,
        coverage: dict[int, tuple[int, int]] | None = None,
    ) -> WrittenObject:
        """PUT the streams' batches as object ``key``, then ``commit`` it. ``coverage``
        overrides a stream's offset range (compaction keeps the exact range it replaces, even
        where filtering removed batches)."""
        builder = StreamSetObjectBuilder(self.block_bytes)
        for stream_id, batches in streams:
            builder.add_stream(stream_id, batches)
        parts = builder.build()
        size = sum(len(p) for p in parts)
        try:
            await self.objects.put(key, parts)
        except ObjectExists:
            if not retry:
                raise
            # our own earlier attempt landed: the key is unique to its writer
        ranges = []
        for s in builder.spans:
            start, end = (coverage or {}).get(s.stream_id, (s.start_offset, s.end_offset))
            ranges.append(
                StreamRange(s.stream_id, start, end, key, s.position, s.size, s.max_timestamp)
            )
        written = WrittenObject(key, size, ranges)
        await commit(written)
        return written
