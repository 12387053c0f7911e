"""Compaction's reads: each object shared by the ranges a run merges is fetched with one GET.

A WAL object holds a range of every partition its broker wrote in that flush, and compaction
merges partition by partition, so reading range by range cost one GET per (object,
partition): 32 GETs per WAL object at the cost model's 80 MB/s, the largest request cost of
the system (issue 19). The run plans every range it will read first; ``SpanReader`` then
fetches, for an object wanted by two or more planned ranges, the byte span covering them all
once, and keeps it until its last planned range is read. What it holds is bounded by a byte
budget (``COMPACTION_READ_BUFFER_BYTES``): beyond it, and for ranges nobody planned, a range is
read with a GET of its own, as before. The run executes merges oldest first across all
partitions, so an object's ranges are read close together and its span is released soon.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from broker_service.metadata.records import StreamRange
from broker_service.stream.objectstore.base import ObjectStore


def read_windows(
    ranges: Iterable[StreamRange], budget_bytes: int, order: Callable[[str], Any]
) -> dict[str, int]:
    """The window of every object two or more of ``ranges`` are in: consecutive objects (in
    ``order``, oldest first) whose spans together fit ``budget_bytes``. Merges cut at window
    boundaries and run window by window hold at most one window's spans, so every shared
    object is read with one GET however many partitions it holds and however long the
    merges (merges of whole 64 MiB runs held every object of the run for every partition,
    far beyond the budget: 17-29 GETs per WAL object at 32 partitions)."""
    count: Counter[str] = Counter()
    span: dict[str, tuple[int, int]] = {}
    for r in ranges:
        count[r.object_key] += 1
        lo, hi = span.get(r.object_key, (r.position, r.position + r.size))
        span[r.object_key] = (min(lo, r.position), max(hi, r.position + r.size))
    windows: dict[str, int] = {}
    window, used = 0, 0
    for key in sorted((k for k, n in count.items() if n > 1), key=order):
        size = span[key][1] - span[key][0]
        if used and used + size > budget_bytes:
            window, used = window + 1, 0
        windows[key] = window
        used += size
    return windows


def _planned_id(r: StreamRange) -> tuple[int, int, str, int]:
    return r.stream_id, r.start_offset, r.object_key, r.position


class SpanReader:
    def __init__(self, objects: ObjectStore, budget_bytes: int) -> None:
        self.objects = objects
        self.budget_bytes = budget_bytes
        self._planned: Counter[tuple[int, int, str, int]] = Counter()  # ranges not read yet
        self._wanted: Counter[str] = Counter()  # planned ranges not read yet, per object
        self._span: dict[str, tuple[int, int]] = {}  # bytes covering them all
        self._held: dict[str, tuple[int, bytes]] = {}  # object -> (span start, span bytes)
        self.held_bytes = 0
        self.gets = 0
        self.bytes_read = 0

    def plan(self, ranges: Iterable[StreamRange]) -> None:
        for r in ranges:
            key, end = r.object_key, r.position + r.size
            self._planned[_planned_id(r)] += 1
            self._wanted[key] += 1
            lo, hi = self._span.get(key, (r.position, end))
            self._span[key] = (min(lo, r.position), max(hi, end))

    def unplan(self, ranges: Iterable[StreamRange]) -> None:
        """Planned ranges that will not be read after all (a run skipped or failed)."""
        for r in ranges:
            self._consumed(r)

    async def read_run(self, ranges: Sequence[StreamRange]) -> list[bytes]:
        """The bytes of each range, in order; the planned ones not read (an error) are
        released, so a failed run holds nothing."""
        out: list[bytes] = []
        try:
            for r in ranges:
                out.append(await self.read(r))
        finally:
            self.unplan(ranges[len(out) + 1 :] if len(out) < len(ranges) else ())
        return out

    async def read(self, r: StreamRange) -> bytes:
        key, start, end = r.object_key, r.position, r.position + r.size
        planned = self._planned.get(_planned_id(r), 0) > 0  # others' ranges do not count
        held = self._held.get(key)
        if held is None and planned and self._wanted[key] > 1:
            lo, hi = self._span[key]
            if self.held_bytes + (hi - lo) <= self.budget_bytes:
                held = self._held[key] = (lo, await self._get(key, lo, hi))
                self.held_bytes += len(held[1])
        try:
            if held is not None:
                lo, data = held
                if lo <= start and end <= lo + len(data):
                    return data[start - lo : end - lo]
            return await self._get(key, start, end)
        finally:
            if planned:
                self._consumed(r)

    def _consumed(self, r: StreamRange) -> None:
        rid, key = _planned_id(r), r.object_key
        if self._planned.get(rid, 0) <= 0:
            return  # not planned (or already read): nothing is held for it
        self._planned[rid] -= 1
        if self._planned[rid] == 0:
            del self._planned[rid]
        left = self._wanted.get(key, 0) - 1
        if left > 0:
            self._wanted[key] = left
            return
        self._wanted.pop(key, None)
        self._span.pop(key, None)
        held = self._held.pop(key, None)
        if held is not None:
            self.held_bytes -= len(held[1])

    async def _get(self, key: str, start: int, end: int) -> bytes:
        data = await self.objects.get(key, start, end)
        self.gets += 1
        self.bytes_read += len(data)
        return data
