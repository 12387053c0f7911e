"""When a compacted partition is cleaned (control/compaction.cleanable_ranges): Kafka's
min.compaction.lag.ms, max.compaction.lag.ms and min.cleanable.dirty.ratio. Pure."""

from __future__ import annotations

from broker_service.control.compaction import cleanable_ranges
from broker_service.metadata.records import StreamRange

NOW = 1_000_000
NEVER = 2**63 - 1


def _r(start: int, ts: int, size: int = 100, clean: bool = False) -> StreamRange:
    key = f"so/1/x-{start}.sso" if clean else f"wal/1-{start}.sso"
    return StreamRange(1, start, start + 10, key, 0, size, ts)


def test_the_newest_range_waits_like_the_active_segment() -> None:
    ranges = [_r(0, NOW - 500), _r(10, NOW - 400)]
    assert cleanable_ranges(ranges, NOW, 0, NEVER, 0.5) == ranges[:1]
    assert cleanable_ranges(ranges[:1], NOW, 0, NEVER, 0.5) == []


def test_max_compaction_lag_includes_the_newest_range_and_overrides_the_ratio() -> None:
    clean = _r(0, NOW - 10_000, size=10_000, clean=True)
    head = _r(10, NOW - 3_000, size=10)
    assert cleanable_ranges([clean, head], NOW, 0, NEVER, 0.5) == []
    assert cleanable_ranges([clean, head], NOW, 0, 2_000, 0.5) == [clean, head]


def test_min_compaction_lag_stops_at_the_first_young_range() -> None:
    ranges = [_r(0, NOW - 5_000), _r(10, NOW - 500), _r(20, NOW - 6_000), _r(30, NOW)]
    assert cleanable_ranges(ranges, NOW, 1_000, NEVER, 0.0) == ranges[:1]
    assert cleanable_ranges(ranges, NOW, 10_000, NEVER, 0.0) == []


def test_dirty_ratio() -> None:
    clean = _r(0, NOW - 9_000, size=900, clean=True)
    dirty = _r(10, NOW - 8_000, size=100)
    head = _r(20, NOW - 10)
    assert cleanable_ranges([clean, dirty, head], NOW, 0, NEVER, 0.5) == []  # 10% dirty
    assert cleanable_ranges([clean, dirty, head], NOW, 0, NEVER, 0.1) == [clean, dirty]
    assert cleanable_ranges([clean, head], NOW, 0, NEVER, 0.0) == []  # nothing dirty
