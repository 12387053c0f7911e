"""ObjectWal: the write-ahead log for brokers without a durable disk (Fargate).

A flush packs every pending record of every stream into one stream-set object, PUTs it, and
commits it to the metadata store (conditionally on this broker's epoch) before any record in
it is reported done. The WAL object is therefore already an ordinary committed object:
readable at once by any broker, nothing to replay after a crash, merged later by compaction.

Up to ``max_in_flight`` flushes run at once (issue 21.4): their PUTs overlap, and each
one's metadata commit waits for the commit of the flush before it, so each stream's
committed ranges stay contiguous and ordered and flushes complete in order. A flush's
latency is then its linger + its PUT + its commit, not also the PUT and commit of the
flush before it. Records that arrive while every slot is busy form the next flush (group
commit). ``flush_interval_ms`` adds a linger before a flush to make objects larger (fewer
PUTs) at the cost of latency; ``flush_bytes`` cuts the linger short.

Forwarded batches ride along (``carries_forwarded``; kafka/zone_forward.py): batches this
broker accepted for partitions led in another zone join the group commit as records with
``forward_to`` set, so a broker makes one PUT per flush cycle for both, not a WAL object and
a forward object. In the object they follow this broker's own streams, grouped by leader,
each as a section of ``FORWARDED_STREAM_ID`` (no range names them, no reader of this
broker's streams sees them); the commit records only the own streams' ranges. As soon as the
PUT returned, each forwarded record is given its span (key, position, size) and the
forwarder sends it to its leader, who reads it with a ranged GET and appends it to its own
log: durable in S3 is all a forward needs, so the hand-off waits for neither this flush's
metadata commit nor the flush before it. Hand-offs keep flush order (a partition's batches
reach its leader in the order they were queued).

A flush of forwarded records only is PUT and never committed (no metadata write: nothing in
it is this broker's, and the commit would cost a DynamoDB transaction per cycle for nothing);
like the forward objects it replaces, compaction's orphan sweep deletes it once past
``orphan_grace_ms`` (1 h; its key has the ``<broker>-<epoch>-<time_ns>-<seq>.sso`` form the
sweep dates). A flush that also holds own records is committed as always and lives as long
as its ranges, then ``replaced_grace_ms`` (10 min) after compaction released it. Either way
the forwarded spans are needed only until their leader has read them, which it does when
their request arrives (its first step, before any append), seconds after the PUT; if they
are gone the leader answers KAFKA_STORAGE_ERROR and the client retries, nothing is lost.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections import OrderedDict
from dataclasses import dataclass, field

from broker_service.metadata.errors import (
    BrokerFenced,
    CommitDeadlinePassed,
    ObjectAlreadyCommitted,
)
from broker_service.metadata.ports import MetadataPorts
from broker_service.metadata.records import StreamRange
from broker_service.stream.object_format import FORWARDED_STREAM_ID
from broker_service.stream.object_writer import ObjectWriter, PreparedObject, WrittenObject
from broker_service.stream.objectstore.base import SINGLE_PUT_MAX_DATA_BYTES, ObjectStore
from broker_service.stream.wal.base import (
    Wal,
    WalEntry,
    WalError,
    WalFatal,
    WalRecord,
    WalStreamFailed,
    WalTimeout,
)

log = logging.getLogger(__name__)


class ObjectWal(Wal):
    needs_upload = False
    carries_forwarded = True

    def __init__(
        self,
        objects: ObjectStore,
        ports: MetadataPorts,
        *,
        flush_interval_ms: float = 50.0,
        flush_bytes: int = 4 << 20,
        block_bytes: int = 1 << 20,
        max_in_flight: int = 1,
    ) -> None:
        super().__init__(flush_interval_ms, flush_bytes)
        self.max_in_flight = max(1, max_in_flight)
        # what arrives during a commit may exceed flush_bytes, up to twice that, but stays one
        # PUT with its index (until 2026-12-04 a 16 MiB group was a multipart upload)
        one_put = min(2 * flush_bytes, SINGLE_PUT_MAX_DATA_BYTES)
        self.max_group_bytes = max(flush_bytes, block_bytes, one_put)
        self.writer = ObjectWriter(objects, block_bytes)
        self.ports = ports
        self.metadata = ports.store  # the few calls made before serving, in a thread
        self.broker_id = -1
        self.broker_epoch = -1
        self._seq = 0
        self.last_flush_ms = 0.0
        self.aborted = 0  # flushes settled as aborted at their deadline
        self.forward_only = 0  # objects PUT with forwarded records only (never committed)
        self._flights: dict[int, _Flight] = {}  # flushes begun and not reported, by group
        self._last_flight: _Flight | None = None

    def bind(self, broker_id: int, broker_epoch: int) -> None:
        self.broker_id = broker_id
        self.broker_epoch = broker_epoch

    async def open(self) -> list[WalEntry]:
        self._start()
        return []  # every acknowledged record is already a committed object

    async def _commit(self, group: list[WalRecord]) -> dict[int, StreamRange]:
        """Flush, retrying the same object (same key) until it is committed, fenced, the
        flush before it was not committed, or the earliest deadline of the group passes.
        Offsets are already assigned, so later records wait behind this one. Past the
        deadline the outcome is settled: the key is written ABORTED unless a commit of it
        landed (then the group is durable after all), so no late copy of the commit can land
        once the producers were told it timed out.

        Flushes overlap, but each one ends only after the one before it was reported (its
        commit waits for that; a failure or an abort waits for it too), so completions stay
        in order; a flush with a stream of an earlier flush that failed fails too."""
        flight = self._flights[id(group)]
        try:
            return await self._flush(group, flight)
        except BaseException:
            if flight.previous is not None:  # a deadline or a fencing can end this one first
                await asyncio.shield(flight.previous)
            raise

    def _begin(self, group: list[WalRecord]) -> None:
        loop = asyncio.get_running_loop()
        last = self._last_flight
        flight = _Flight(
            {r.stream_id for r in group if r.forward_to is None},
            loop.create_future(),
            last.reported if last is not None else None,
            handed=loop.create_future(),
            previous_handed=last.handed if last is not None else None,
            riders=[r for r in group if r.forward_to is not None],
        )
        self._flights[id(group)] = self._last_flight = flight
        super()._begin(group)

    def _committed(
        self,
        group: list[WalRecord],
        ranges: dict[int, StreamRange],
        exc: BaseException | None,
        synced: float = 0.0,
    ) -> None:
        flight = self._flights.pop(id(group), None)
        if flight is not None and not flight.handing:  # e.g. cancelled before it began
            self._hand_over(flight, WalError(f"forwarded batches not written ({exc})"))
        if flight is not None and not flight.streams:
            synced = 0.0  # nothing of this broker's was committed: no completion stage
        if exc is not None and flight is not None:
            # the flushes in flight took their records before this failure was known: those
            # of its streams have offsets after the failed ones (void: the partition assigns
            # them again), so they must not commit; what begins later is unaffected
            for other in self._flights.values():
                if other.streams & flight.streams:
                    other.doomed = True
        super()._committed(group, ranges, exc, synced)
        if flight is not None:
            flight.reported.set_result(None)

    def _prepare(self, group: list[WalRecord], flight: _Flight) -> PreparedObject:
        """The flush's object: own streams first (a read of their ranges never spans a
        forwarded byte), then the forwarded records grouped by leader (stable: a partition's
        batches keep their order). ``written`` names the own ranges only (what is
        committed); the forwarded spans go to ``flight``. Built once: a retried PUT writes
        the same bytes under the same key, so the spans stay those of the object written."""
        self._seq += 1
        key = f"wal/{self.broker_id}-{self.broker_epoch}-{time.time_ns()}-{self._seq}.sso"
        by_stream: OrderedDict[int, list[tuple[int, int, int, bytes | memoryview]]] = OrderedDict()
        for r in group:
            if r.forward_to is None:
                by_stream.setdefault(r.stream_id, []).append(
                    (r.base_offset, r.end_offset, r.max_timestamp, r.data)
                )
        riders = sorted(flight.riders, key=lambda r: r.forward_to or 0)
        sections = list(by_stream.items()) + [
            (FORWARDED_STREAM_ID, [(0, r.end_offset, r.max_timestamp, r.data)]) for r in riders
        ]
        prepared = self.writer.prepare(key, sections)
        own = len(by_stream)
        flight.riders, flight.spans = riders, prepared.written.ranges[own:]
        written = prepared.written
        return PreparedObject(
            prepared.parts, WrittenObject(written.key, written.size, written.ranges[:own])
        )

    def _hand_over(self, flight: _Flight, exc: BaseException | None) -> None:
        """Give the flight's forwarded records their spans (``exc`` None: the object is
        written) or their failure, once the flight before it did (hand-offs in flush order,
        whichever PUT returned first). At most once per flight; a record past its deadline
        when its turn comes is refused (REQUEST_TIMED_OUT), never forwarded."""
        if flight.handing:
            return
        flight.handing = True

        def go(_previous: object = None) -> None:
            if exc is not None:
                for r in flight.riders:
                    r.finish(None, exc)
            else:
                now = time.monotonic()
                late = WalTimeout("not forwarded before the request's timeout")
                for r, span in zip(flight.riders, flight.spans, strict=True):
                    if r.deadline < now:
                        r.finish(None, late)
                    else:
                        r.finish(span, None)
            if not flight.handed.done():
                flight.handed.set_result(None)

        previous = flight.previous_handed
        if previous is None or previous.done():
            go()
        else:
            previous.add_done_callback(go)

    async def _flush(self, group: list[WalRecord], flight: _Flight) -> dict[int, StreamRange]:
        prepared = self._prepare(group, flight)
        key = prepared.written.key
        own = [r for r in group if r.forward_to is None]
        if not own:
            return await self._put_forwarded(prepared, flight)
        # own records' deadlines only: a forwarded record's passing refuses that record alone
        deadline = min(r.deadline for r in own)  # time.monotonic()
        deadline_ms = min(r.deadline_ms for r in own)  # the same, for the store: wall clock
        delay = 0.05
        attempt = 0
        started = time.monotonic()
        while True:
            attempt += 1
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._hand_over(flight, WalError("the WAL object was not written in time"))
                if attempt == 1:  # nothing was ever sent: nothing to settle
                    raise WalTimeout("not durable before the request's timeout")
                return await self._settle(prepared.written)
            commit = self._committer(attempt > 1, deadline_ms, flight, time.perf_counter())
            task = asyncio.ensure_future(
                self.writer.put_and_commit(prepared, commit, retry=attempt > 1)
            )
            try:
                # the attempt runs on (a thread cannot be stopped); past the deadline its
                # outcome is settled instead of awaited
                written = await asyncio.wait_for(asyncio.shield(task), remaining)
            except TimeoutError:
                task.add_done_callback(_quiet)
                # the PUT may still land, but its forwarded records are not waited for
                self._hand_over(flight, WalError("the WAL object was not written in time"))
                return await self._settle(prepared.written)
            except BrokerFenced as exc:
                raise WalFatal(f"this broker was fenced: {exc}") from exc
            except CommitDeadlinePassed:
                return await self._settle(prepared.written)
            except _EarlierFlushFailed as exc:  # this flush's commit was never sent
                raise WalStreamFailed(str(exc)) from None
            except Exception as exc:
                log.warning(
                    "object WAL flush of %s failed (attempt %d): %s; retrying", key, attempt, exc
                )
                # a PUT that failed fails its forwarded records now (their clients retry; a
                # retry of the PUT is for this broker's records); after a PUT that returned
                # they were handed over already and this does nothing
                self._hand_over(flight, WalError(f"forwarded batches not written: {exc}"))
                await asyncio.sleep(
                    min(delay * (0.5 + random.random()), max(deadline - time.monotonic(), 0))
                )
                delay = min(delay * 2, 5.0)
                continue
            self.last_flush_ms = (time.monotonic() - started) * 1000
            return {r.stream_id: r for r in written.ranges}

    async def _put_forwarded(
        self, prepared: PreparedObject, flight: _Flight
    ) -> dict[int, StreamRange]:
        """A flush of forwarded records only: one PUT, no commit (the module docstring says
        why), no retry (as the forward objects it replaces: their clients retry)."""
        started = time.perf_counter()

        async def hand_over(_w: WrittenObject) -> None:  # the PUT returned: durable
            self.stages.write.observe((time.perf_counter() - started) * 1000)
            self.forward_only += 1
            self._hand_over(flight, None)

        try:
            await self.writer.put_and_commit(prepared, hand_over)
        except Exception as exc:
            log.warning("object WAL flush %s (forwarded batches) failed: %s",
                        prepared.written.key, exc)  # fmt: skip
            self._hand_over(flight, WalError(f"forwarded batches not written: {exc}"))
        if flight.previous is not None:  # reported in order: the next commit waits on it
            await asyncio.shield(flight.previous)
        return {}

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

    def _committer(  # type: ignore[no-untyped-def]
        self,
        retry: bool,
        deadline_ms: float,
        flight: _Flight,
        put_started: float,
    ):
        async def commit(w: WrittenObject) -> None:
            self.stages.write.observe((time.perf_counter() - put_started) * 1000)  # the PUT
            # The forwarded records go out now, whatever becomes of this commit: their bytes
            # are durable, which is all their leader needs (it appends them to its own log;
            # this broker never commits them). A commit that then fails (fenced, past its
            # deadline, an earlier flush failed) fails this broker's records only; the
            # forwarded ones are acknowledged by their leader's answer alone, so none is
            # acknowledged twice or lost once acknowledged.
            self._hand_over(flight, None)
            if flight.previous is not None:  # commits (and completions) in order
                await asyncio.shield(flight.previous)
            if flight.doomed:
                raise _EarlierFlushFailed("an earlier flush of these streams failed")
            t0 = time.perf_counter()
            try:
                await self.ports.streams.commit_object(
                    self.broker_id,
                    self.broker_epoch,
                    w.key,
                    w.size,
                    w.ranges,
                    None if deadline_ms == math.inf else int(deadline_ms),
                )
            except ObjectAlreadyCommitted:
                if not retry:
                    raise
            self._synced = time.perf_counter()
            self.stages.sync.observe((self._synced - t0) * 1000)

        return commit

    def trim(self, committed_ends: dict[int, int]) -> None:
        pass  # nothing local to trim


@dataclass(slots=True)
class _Flight:
    """One flush between its begin and its report."""

    streams: set[int]  # of its own records (not the forwarded ones)
    reported: asyncio.Future[None]  # set once its outcome was reported to its records
    previous: asyncio.Future[None] | None  # the flush before it: ``reported``
    handed: asyncio.Future[None]  # set once its forwarded records were told their span or fate
    previous_handed: asyncio.Future[None] | None  # the flush before it: ``handed``
    doomed: bool = False  # an earlier flush of one of its streams failed: never commit
    handing: bool = False  # ``_hand_over`` was called
    riders: list[WalRecord] = field(default_factory=list)  # its forwarded records, in the
    spans: list[StreamRange] = field(default_factory=list)  # object's order, and their spans


class _EarlierFlushFailed(Exception):
    """The flush before this one was not committed: this one must not be either."""


def _quiet(task: asyncio.Future[WrittenObject]) -> None:
    """An abandoned attempt ends later, one way or another: its outcome was settled."""
    if not task.cancelled():
        task.exception()
