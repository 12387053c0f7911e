"""SpanReader (control/compaction_reads.py) on the directory object store: each object its
planned ranges share is fetched once, what it holds is released after the last planned read,
and a range nobody planned neither fetches a span nor uses up a planned one."""

from __future__ import annotations

import asyncio
from pathlib import Path

from broker_service.control.compaction_reads import SpanReader
from broker_service.metadata.records import StreamRange
from broker_service.stream.objectstore.fs import FsObjectStore
from tests.support.objects import CountingGets


def _object(store: FsObjectStore, key: str, streams: int) -> list[StreamRange]:
    """One object holding 100 bytes of each stream: stream s at [100 s, 100 s + 100)."""
    body = b"".join(bytes([s]) * 100 for s in range(streams))
    asyncio.run(store.put(key, [body]))
    return [StreamRange(s, 0, 10, key, 100 * s, 100) for s in range(streams)]


def test_shared_objects_are_read_once_and_released(tmp_path: Path) -> None:
    store = CountingGets(tmp_path)
    a = _object(store, "wal/a", 4)
    b = _object(store, "wal/b", 4)
    reader = SpanReader(store, budget_bytes=1 << 20)
    runs = [[a[s], b[s]] for s in (0, 1, 3)]  # stream 2 is not planned
    for run in runs:
        reader.plan(run)

    async def go() -> list[list[bytes]]:
        out = [await reader.read_run(runs[0])]
        out.append([await reader.read(a[2])])  # unplanned, inside the held span: no GET
        out += [await reader.read_run(run) for run in runs[1:]]
        return out

    got = asyncio.run(go())
    assert got[0] == [b"\x00" * 100, b"\x00" * 100]
    assert got[1] == [b"\x02" * 100]
    assert got[2:] == [[bytes([s]) * 100] * 2 for s in (1, 3)]
    assert store.gets == {"wal/a": 1, "wal/b": 1}, store.gets
    assert reader.held_bytes == 0 and not reader._held  # everything planned was read


def test_over_budget_and_abandoned_plans_read_range_by_range(tmp_path: Path) -> None:
    store = CountingGets(tmp_path)
    a = _object(store, "wal/a", 3)
    reader = SpanReader(store, budget_bytes=150)  # the 300-byte span does not fit
    reader.plan(a)
    assert asyncio.run(reader.read_run(a[:2])) == [b"\x00" * 100, b"\x01" * 100]
    assert store.gets == {"wal/a": 2}
    reader.unplan(a[2:])  # its run was skipped (budget, lease)
    assert reader.held_bytes == 0 and not reader._wanted and not reader._planned
