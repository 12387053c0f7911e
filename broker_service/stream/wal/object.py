"""ObjectWal: the write-ahead log for brokers without a durable disk (Fargate).

A flush packs every pending record of every stream into one stream-set object, PUTs it, and
commits it to the metadata store (conditionally on this broker's epoch) before any record in
it is reported done. The WAL object is therefore already an ordinary committed object:
readable at once by any broker, nothing to replay after a crash, merged later by compaction.

Flushes run one at a time, so each stream's committed ranges stay contiguous and ordered;
records that arrive during a flush form the next one (group commit). ``flush_interval_ms``
adds a linger before a flush to make objects larger (fewer PUTs) at the cost of latency;
``flush_bytes`` cuts the linger short.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections import OrderedDict

from broker_service.metadata.errors import (
    BrokerFenced,
    CommitDeadlinePassed,
    ObjectAlreadyCommitted,
)
from broker_service.metadata.ports import MetadataPorts
from broker_service.metadata.records import StreamRange
from broker_service.stream.object_writer import ObjectWriter, WrittenObject
from broker_service.stream.objectstore.base import ObjectStore
from broker_service.stream.wal.base import Wal, WalEntry, WalFatal, WalRecord, WalTimeout

log = logging.getLogger(__name__)


class ObjectWal(Wal):
    needs_upload = False

    def __init__(
        self,
        objects: ObjectStore,
        ports: MetadataPorts,
        *,
        flush_interval_ms: float = 50.0,
        flush_bytes: int = 4 << 20,
        block_bytes: int = 1 << 20,
    ) -> None:
        super().__init__(flush_interval_ms, flush_bytes)
        # keep objects below the S3 multipart threshold: one PUT per flush
        self.max_group_bytes = max(2 * flush_bytes, block_bytes)
        self.writer = ObjectWriter(objects, block_bytes)
        self.ports = ports
        self.metadata = ports.store  # the few calls made before serving, in a thread
        self.broker_id = -1
        self.broker_epoch = -1
        self._seq = 0
        self.last_flush_ms = 0.0
        self.aborted = 0  # flushes settled as aborted at their deadline

    def bind(self, broker_id: int, broker_epoch: int) -> None:
        self.broker_id = broker_id
        self.broker_epoch = broker_epoch

    async def open(self) -> list[WalEntry]:
        self._start()
        return []  # every acknowledged record is already a committed object

    async def _commit(self, group: list[WalRecord]) -> dict[int, StreamRange]:
        """Flush, retrying the same object (same key) until it is committed, fenced, or the
        earliest deadline of the group passes. Offsets are already assigned, so later records
        wait behind this one. Past the deadline the outcome is settled: the key is written
        ABORTED unless a commit of it landed (then the group is durable after all), so no
        late copy of the commit can land once the producers were told it timed out."""
        self._seq += 1
        key = f"wal/{self.broker_id}-{self.broker_epoch}-{time.time_ns()}-{self._seq}.sso"
        by_stream: OrderedDict[int, list[tuple[int, int, int, bytes | memoryview]]] = OrderedDict()
        for r in group:
            by_stream.setdefault(r.stream_id, []).append(
                (r.base_offset, r.end_offset, r.max_timestamp, r.data)
            )
        prepared = self.writer.prepare(key, list(by_stream.items()))
        deadline = min(r.deadline for r in group)  # time.monotonic()
        delay = 0.05
        attempt = 0
        started = time.monotonic()
        while True:
            attempt += 1
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if attempt == 1:  # nothing was ever sent: nothing to settle
                    raise WalTimeout("not durable before the request's timeout")
                return await self._settle(prepared.written)
            task = asyncio.ensure_future(
                self.writer.put_and_commit(
                    prepared, self._committer(attempt > 1, deadline), retry=attempt > 1
                )
            )
            try:
                # the attempt runs on (a thread cannot be stopped); past the deadline its
                # outcome is settled instead of awaited
                written = await asyncio.wait_for(asyncio.shield(task), remaining)
            except TimeoutError:
                task.add_done_callback(_quiet)
                return await self._settle(prepared.written)
            except BrokerFenced as exc:
                raise WalFatal(f"this broker was fenced: {exc}") from exc
            except CommitDeadlinePassed:
                return await self._settle(prepared.written)
            except Exception as exc:
                log.warning(
                    "object WAL flush of %s failed (attempt %d): %s; retrying", key, attempt, exc
                )
                await asyncio.sleep(
                    min(delay * (0.5 + random.random()), max(deadline - time.monotonic(), 0))
                )
                delay = min(delay * 2, 5.0)
                continue
            self.last_flush_ms = (time.monotonic() - started) * 1000
            return {r.stream_id: r for r in written.ranges}

    async def _settle(self, written: WrittenObject) -> dict[int, StreamRange]:
        """The deadline passed without a known commit: abort the key, unless it committed.
        Retried until the store answers (what follows in these streams depends on it)."""
        delay = 0.05
        while True:
            try:
                committed = await self.ports.streams.abort_object_commit(written.key)
                break
            except Exception as exc:
                log.warning("settling object WAL flush %s failed: %s; retrying", written.key, exc)
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 5.0)
        if committed:
            log.info("object WAL flush %s committed after its deadline: durable", written.key)
            return {r.stream_id: r for r in written.ranges}
        self.aborted += 1
        raise WalTimeout(f"not committed before the request's timeout ({written.key} aborted)")

    def _committer(self, retry: bool, deadline: float):  # type: ignore[no-untyped-def]
        async def commit(w: WrittenObject) -> None:
            # the monotonic deadline as wall-clock ms, for the store to check
            deadline_ms = (
                None
                if deadline == math.inf
                else int((time.time() + deadline - time.monotonic()) * 1000)
            )
            try:
                await self.ports.streams.commit_object(
                    self.broker_id,
                    self.broker_epoch,
                    w.key,
                    w.size,
                    w.ranges,
                    deadline_ms,
                )
            except ObjectAlreadyCommitted:
                if not retry:
                    raise

        return commit

    def trim(self, committed_ends: dict[int, int]) -> None:
        pass  # nothing local to trim


def _quiet(task: asyncio.Future[WrittenObject]) -> None:
    """An abandoned attempt ends later, one way or another: its outcome was settled."""
    if not task.cancelled():
        task.exception()
