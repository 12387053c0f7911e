"""The end offset of a leader epoch (OffsetForLeaderEpoch, KIP-320), derived from the stored
batches: every batch appended here carries, in its partitionLeaderEpoch, the epoch of the
leader that appended it, and epochs only grow along a partition's offsets (a new leader
continues after everything committed before it). So the end of epoch E, the start of the
first later epoch, is found by a binary search over offsets reading one batch header per
probe, the answer Kafka's LeaderEpochFileCache.endOffsetFor gives. No state is kept: the
request is rare (clients ask after a leader change)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

UNDEFINED_EPOCH = -1
UNDEFINED_OFFSET = -1


@dataclass(frozen=True, slots=True)
class BatchEpoch:
    base_offset: int
    last_offset: int
    epoch: int


# the batch holding an offset, or the next one after it (offsets removed by compaction);
# None when there is none below the end
BatchAt = Callable[[int], Awaitable[BatchEpoch | None]]


async def end_offset_for(
    batch_at: BatchAt, requested: int, current_epoch: int, log_start: int, end: int
) -> tuple[int, int]:
    """(epoch, end offset) for ``requested``: the current epoch ends at ``end``; an older one
    at the first offset of a later epoch, with the largest epoch <= requested that has data
    (the requested one itself when it is older than all the data); a future one is
    undefined."""
    if requested == UNDEFINED_EPOCH or requested > current_epoch:
        return UNDEFINED_EPOCH, UNDEFINED_OFFSET
    if requested == current_epoch:
        return requested, end
    lo, hi = log_start, end
    while lo < hi:  # the first offset whose batch has an epoch > requested
        mid = (lo + hi) // 2
        b = await batch_at(mid)
        if b is None or b.epoch > requested:
            hi = mid
        else:
            lo = max(mid + 1, b.last_offset + 1)
    boundary = min(lo, end)
    if boundary <= log_start:
        return requested, boundary
    before = await batch_at(boundary - 1)
    if before is None or before.base_offset >= boundary:
        return requested, boundary
    return before.epoch, boundary
