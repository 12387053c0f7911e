"""OffsetForLeaderEpoch's answer from batch epochs (kafka/leader_epochs.py), checked against
Kafka's LeaderEpochFileCache.endOffsetFor on hand-made epoch histories. Pure."""

from __future__ import annotations

import asyncio

from broker_service.kafka.leader_epochs import BatchEpoch, end_offset_for

# epoch 0: offsets 0-9, epoch 2: 10-14 (a gap 15-19 from compaction), epoch 2: 20-24,
# epoch 5: 25-29; the leader is at epoch 7 now (no batch yet), log end 30
BATCHES = [BatchEpoch(0, 4, 0), BatchEpoch(5, 9, 0), BatchEpoch(10, 14, 2),
           BatchEpoch(20, 24, 2), BatchEpoch(25, 29, 5)]  # fmt: skip


def _ask(requested: int, current: int = 7, log_start: int = 0, end: int = 30) -> tuple[int, int]:
    reads: list[int] = []

    async def batch_at(offset: int) -> BatchEpoch | None:
        reads.append(offset)
        return next((b for b in BATCHES if b.last_offset >= offset and b.base_offset < end), None)

    got = asyncio.run(end_offset_for(batch_at, requested, current, log_start, end))
    assert len(reads) <= 8  # a binary search, not a scan
    return got


def test_end_offsets_like_kafkas_epoch_cache() -> None:
    assert _ask(7) == (7, 30)  # the current epoch ends at the log end
    assert _ask(0) == (0, 10)
    assert _ask(1) == (0, 10)  # no data in epoch 1: the floor epoch, the next epoch's start
    assert _ask(2) == (2, 25)  # across the compaction gap
    assert _ask(4) == (2, 25)
    assert _ask(5) == (5, 30)
    assert _ask(6) == (5, 30)  # the current epoch has no batch yet: it starts at the end
    assert _ask(8) == (-1, -1)  # a future epoch
    assert _ask(-1) == (-1, -1)


def test_requested_epoch_older_than_the_log_start() -> None:
    assert _ask(0, log_start=10) == (0, 10)  # Kafka: (requested, next epoch's start offset)
    assert _ask(2, log_start=20) == (2, 25)
