"""The write-ahead log's contract and its group commit, shared by every WAL.

A WAL knows streams, offsets and bytes, not Kafka. ``append`` queues a ``WalRecord``; records
that arrive while a commit runs form the next group; one ``_commit`` makes a whole group
durable, then each record's ``on_done`` is called with the committed range (object WAL) or
None (file WAL), or with the error that kept it from becoming durable. ``on_done`` is the
completion: it is called exactly once per record, whatever became of the client that sent it.

A record past its ``deadline`` before its group commits is refused (the producer was answered
REQUEST_TIMED_OUT and will retry: committing it later would duplicate). A failed record fails
every later record of its stream too: their offsets follow it, so they must be assigned again.
A failure is not fatal to the WAL: the next group tries again (a full disk refuses writes
until space returns), unless the WAL says it can never write again (``fatal``).

A WAL that writes objects (``carries_forwarded``: the object WAL) also carries *forwarded*
records (``forward_to`` set): batches of partitions led by another broker, which this broker
makes durable for the leader to read (kafka/zone_forward.py). They join the group commit like
any record (they wake a flush, count towards its linger and size, and wait behind a flush in
flight) but have no offsets and are never committed: their ``on_done`` gets their byte span
in the object as soon as the object is written, and a forwarded record's failure is its own
(no stream of this broker's follows it).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

from broker_service.metadata.records import StreamRange
from broker_service.metrics.stages import ProduceStages

log = logging.getLogger(__name__)


class WalError(RuntimeError):
    """The WAL could not make a record durable (KAFKA_STORAGE_ERROR for the producer)."""


class WalTimeout(WalError):
    """The record's deadline passed before it became durable (REQUEST_TIMED_OUT)."""


class WalFatal(WalError):
    """The WAL is in a state it cannot repair: it refuses every write from now on."""


class WalStreamFailed(WalError):
    """An earlier record of the same stream failed: this one's offsets are void."""


@dataclass(frozen=True, slots=True)
class WalEntry:
    """A durable record read back from a WAL (recovery)."""

    stream_id: int
    base_offset: int
    end_offset: int
    data: bytes


Done = Callable[["WalRecord", StreamRange | None, BaseException | None], None]


@dataclass(eq=False, slots=True)
class WalRecord:
    stream_id: int
    base_offset: int
    end_offset: int
    data: bytes | memoryview
    max_timestamp: int
    on_done: Done
    deadline: float = math.inf  # time.monotonic() by which it must be durable
    finished: bool = field(default=False)
    queued: float = 0.0  # when it was handed to the WAL (perf_counter; the wal_wait stage)
    # Set: a batch forwarded to that broker (module docstring). Its offsets are meaningless
    # (base 0, end = its record count), and records with the same value sit side by side in
    # the object, so each leader reads its spans with one short ranged GET.
    forward_to: int | None = None
    # the deadline in wall-clock ms, taken when the record is made: the store checks a
    # commit's deadline by the wall clock, and one turned from ``deadline`` at commit time
    # would grow by any pause of the host in between (its monotonic clock stands still)
    deadline_ms: float = field(default=math.inf, init=False)

    def __post_init__(self) -> None:
        if self.deadline != math.inf:
            self.deadline_ms = time.time() * 1000 + (self.deadline - time.monotonic()) * 1000

    def finish(self, committed: StreamRange | None, exc: BaseException | None) -> None:
        if not self.finished:
            self.finished = True
            try:
                self.on_done(self, committed, exc)
            except Exception:  # a bug in one completion must not stop the WAL for everyone
                log.exception("WAL record completion of stream %d failed", self.stream_id)


class Wal(ABC):
    """Group commit shared by every WAL. ``flush_interval_ms`` lingers before a commit
    (bigger groups), ``flush_bytes`` cuts the linger short.

    The commit cycle is driven by callbacks, not by a task that wakes up: a commit starts as
    soon as records wait and none runs (or when the linger ends), and its completion runs
    in the callback that reports it, which also starts the next group first, so the WAL's
    writer is never idle while records wait and a group's records complete without further
    trips through the event loop (issue 21: each trip is a turn of a loop that may be busy
    receiving megabytes)."""

    # Whether acknowledged data still has to be uploaded to objects (file WAL) or is already
    # committed there by the WAL itself (object WAL).
    needs_upload = True
    # Whether it takes forwarded records (``WalRecord.forward_to``) into its objects.
    carries_forwarded = False
    # Called when the WAL can never make anything durable again (this broker was fenced, or
    # its log is in a state it cannot repair): the broker must stop acknowledging.
    on_fatal: Callable[[BaseException], None] | None = None
    # Largest group one commit takes (None: all that is pending); the rest waits its turn.
    max_group_bytes: int | None = None
    # Groups committing at once. Their completions still come in group order (a subclass
    # with more than one must call ``_committed`` in that order): a partition's high
    # watermark only moves over offsets that are all durable. A group beyond the first
    # starts only when full (``flush_bytes`` pending): below that, records wait for the
    # commit in flight as with one slot, so objects are no smaller (no more PUTs and
    # commits a GiB); the extra slots are for a rate one commit at a time cannot carry.
    max_in_flight = 1

    def __init__(self, flush_interval_ms: float, flush_bytes: int) -> None:
        self.flush_interval = flush_interval_ms / 1000.0
        self.flush_bytes = flush_bytes
        self._pending: list[WalRecord] = []
        self._pending_bytes = 0
        self._loop: asyncio.AbstractEventLoop | None = None  # set by _start (open)
        self._linger: asyncio.TimerHandle | None = None
        # Whether lingering gathers anything lately: a linger that gathered no record is
        # skipped next time (a serial producer would pay it on every request for nothing),
        # and records arriving during a linger or a commit bring it back.
        self._linger_pays = True
        self._gathered = 0  # records appended during the current linger
        self._arrived_in_flight = 0  # records appended while a commit ran, since one began
        self._fatal: BaseException | None = None
        self._in_flight = 0  # groups whose commit began and has not completed
        self._closing = False
        self._commit_tasks: set[asyncio.Task[dict[int, StreamRange]]] = set()
        self._committed_waiters: list[asyncio.Future[None]] = []  # close() waits on these
        self._synced = 0.0  # when the last commit became durable (perf_counter; stages)
        self.flushes = 0
        self.failures = 0
        # the produce path's stage histograms (the broker passes its own: /metrics)
        self.stages = ProduceStages()

    def bind(self, broker_id: int, broker_epoch: int) -> None:
        """Learn this broker's identity once registered (a WAL that commits needs it)."""
        return None

    @abstractmethod
    async def open(self) -> list[WalEntry]:
        """Open the log and return every durable entry left by a previous run, in order."""

    async def _commit(self, group: list[WalRecord]) -> dict[int, StreamRange]:
        """Make the group durable; return the committed range per stream, if any. Raise if
        nothing of the group is durable (a partial write must be undone first). A WAL that
        commits without the event loop overrides ``_begin`` instead."""
        raise NotImplementedError

    def _begin(self, group: list[WalRecord]) -> None:
        """Start making ``group`` durable; ``_committed`` must be called on the event loop
        when it is (or is not). By default: ``_commit`` as a task."""
        assert self._loop is not None
        task = self._loop.create_task(self._commit(group))
        self._commit_tasks.add(task)

        def done(t: asyncio.Task[dict[int, StreamRange]]) -> None:
            self._commit_tasks.discard(t)
            if t.cancelled():
                self._committed(group, {}, WalError("the WAL was closed"))
            elif (exc := t.exception()) is not None:
                self._committed(group, {}, exc)
            else:
                self._committed(group, t.result(), None, self._synced)

        task.add_done_callback(done)

    @abstractmethod
    def trim(self, committed_ends: dict[int, int]) -> None:
        """Drop what is committed to the object store: stream_id -> end offset committed."""

    @property
    def healthy(self) -> bool:
        return self._fatal is None

    @property
    def in_flight(self) -> int:
        """Groups whose commit began and has not completed."""
        return self._in_flight

    @property
    def lingering(self) -> bool:
        """Whether a linger runs (its end will start a commit)."""
        return self._linger is not None

    def _start(self) -> None:
        self._loop = asyncio.get_running_loop()
        if self._pending:
            self._kick()

    def append(self, record: WalRecord) -> None:
        """Queue a record; its ``on_done`` reports the outcome."""
        if self._fatal is not None:
            record.finish(None, WalError(f"the WAL failed: {self._fatal}"))
            return
        if record.forward_to is not None and not self.carries_forwarded:
            record.finish(None, WalError("this WAL does not carry forwarded batches"))
            return
        record.queued = time.perf_counter()
        self._pending.append(record)
        self._pending_bytes += len(record.data)
        if self._linger is not None:
            self._gathered += 1
        elif self._in_flight:
            self._arrived_in_flight += 1
        if self._loop is not None and self._may_begin():
            self._kick()

    # -- the commit cycle -------------------------------------------------------------------
    def _may_begin(self) -> bool:
        """Whether a commit may start now: none runs, or a slot is free and a full group
        waits (or close wants everything out)."""
        if self._in_flight == 0:
            return True
        return self._in_flight < self.max_in_flight and (
            self._pending_bytes >= self.flush_bytes or self._closing
        )

    def _kick(self) -> None:
        """Records wait and no commit runs: commit now, or once the linger is over."""
        if self._arrived_in_flight:
            self._linger_pays = True
        if (
            self.flush_interval > 0
            and self._linger_pays
            and self._pending_bytes < self.flush_bytes
            and not self._closing
        ):
            if self._linger is None:
                assert self._loop is not None
                self._gathered = 0
                self._linger = self._loop.call_later(self.flush_interval, self._linger_over)
            return
        self._commit_next()

    def _linger_over(self) -> None:
        self._linger = None
        self._linger_pays = self._gathered > 0
        if self._may_begin():
            self._commit_next()

    def _commit_next(self) -> None:
        if self._linger is not None:  # cut short (flush bytes, close): it gathered enough
            self._linger.cancel()
            self._linger = None
            self._linger_pays = True
        self._arrived_in_flight = 0
        self._expire(time.monotonic())
        if not self._pending or self._fatal is not None:
            return
        group = self._take_group()
        began = time.perf_counter()
        wal_wait = self.stages.wal_wait
        for r in group:
            wal_wait.observe((began - r.queued) * 1000)
        self._in_flight += 1
        self._begin(group)

    def _committed(
        self,
        group: list[WalRecord],
        ranges: dict[int, StreamRange],
        exc: BaseException | None,
        synced: float = 0.0,
    ) -> None:
        """On the event loop: the group's commit is over (``synced``: when it became durable,
        perf_counter, if the WAL knows better than now)."""
        self._in_flight -= 1
        if exc is None:
            self.flushes += 1
            if self._pending and self._may_begin():  # the next group starts before this
                self._kick()  # one's records complete: the writer is never idle
            for r in group:
                r.finish(ranges.get(r.stream_id), None)
            if synced:
                self.stages.complete.observe((time.perf_counter() - synced) * 1000)
        else:  # nothing in this group is durable
            self.failures += 1
            log.error("WAL commit of %d records failed: %s", len(group), exc)
            self._fail(group, exc if isinstance(exc, WalError) else WalError(str(exc)))
            if isinstance(exc, WalFatal):
                self.fatal(exc)
            if self._fatal is not None and self.on_fatal is not None:
                self.on_fatal(self._fatal)
            if self._pending and self._may_begin():
                self._kick()
        waiters, self._committed_waiters = self._committed_waiters, []
        for w in waiters:
            if not w.done():
                w.set_result(None)

    def _expire(self, now: float) -> None:
        """Refuse records whose deadline passed before their commit began."""
        late = [r for r in self._pending if r.deadline < now]
        if late:
            self._fail(late, WalTimeout("not durable before the request's timeout"))

    def _fail(self, failed: list[WalRecord], exc: BaseException) -> None:
        """Fail these records and every pending record of their streams (offsets after a
        failed record are void: the partition assigns them again). Forwarded records have no
        offsets: none follows another, each fails alone."""
        streams = {r.stream_id for r in failed if r.forward_to is None}
        for r in failed:
            r.finish(None, exc)
        rest = [r for r in self._pending
                if r.stream_id in streams and r.forward_to is None and not r.finished]  # fmt: skip
        if rest:
            gone = WalStreamFailed(f"an earlier record of the stream failed: {exc}")
            for r in rest:
                r.finish(None, gone)
        kept = [r for r in self._pending if not r.finished]
        self._pending_bytes = sum(len(r.data) for r in kept)
        self._pending = kept

    def _take_group(self) -> list[WalRecord]:
        n, size = len(self._pending), self._pending_bytes
        if self.max_group_bytes is not None and size > self.max_group_bytes:
            n, size = 0, 0
            for r in self._pending:  # at least one record, then up to the cap
                if n and size + len(r.data) > self.max_group_bytes:
                    break
                n, size = n + 1, size + len(r.data)
        group = self._pending[:n]
        del self._pending[:n]
        self._pending_bytes -= size
        return group

    def fatal(self, exc: BaseException) -> None:
        """The WAL can never write again: refuse everything from now on."""
        if self._fatal is None:
            self._fatal = exc
            self._fail(list(self._pending), WalError(f"the WAL failed: {exc}"))

    async def close(self) -> None:
        """Let the pending groups commit (no linger), then stop."""
        if self._loop is None:
            return
        self._closing = True
        while (self._pending or self._in_flight) and self._fatal is None:
            if self._pending and self._in_flight < self.max_in_flight:
                self._commit_next()
                if not self._in_flight:
                    break  # everything pending had expired
            waiter = self._loop.create_future()
            self._committed_waiters.append(waiter)
            await waiter
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        for task in list(self._commit_tasks):  # a fatal WAL's commits still retrying
            task.cancel()
            try:
                await task
            except BaseException:  # its failure was reported to its records
                pass
