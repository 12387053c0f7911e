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

    def finish(self, committed: StreamRange | None, exc: BaseException | None) -> None:
        if not self.finished:
            self.finished = True
            try:
                self.on_done(self, committed, exc)
            except Exception:  # a bug in one completion must not stop the WAL for everyone
                log.exception("WAL record completion of stream %d failed", self.stream_id)


class Wal(ABC):
    """Group commit shared by every WAL. ``flush_interval_ms`` lingers before a commit
    (bigger groups), ``flush_bytes`` cuts the linger short."""

    # Whether acknowledged data still has to be uploaded to objects (file WAL) or is already
    # committed there by the WAL itself (object WAL).
    needs_upload = True
    # Called when the WAL can never make anything durable again (this broker was fenced, or
    # its log is in a state it cannot repair): the broker must stop acknowledging.
    on_fatal: Callable[[BaseException], None] | None = None
    # Largest group one commit takes (None: all that is pending); the rest waits its turn.
    max_group_bytes: int | None = None

    def __init__(self, flush_interval_ms: float, flush_bytes: int) -> None:
        self.flush_interval = flush_interval_ms / 1000.0
        self.flush_bytes = flush_bytes
        self._pending: list[WalRecord] = []
        self._pending_bytes = 0
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._fatal: BaseException | None = None
        self._committing = False
        self.flushes = 0
        self.failures = 0

    def bind(self, broker_id: int, broker_epoch: int) -> None:
        """Learn this broker's identity once registered (a WAL that commits needs it)."""
        return None

    @abstractmethod
    async def open(self) -> list[WalEntry]:
        """Open the log and return every durable entry left by a previous run, in order."""

    @abstractmethod
    async def _commit(self, group: list[WalRecord]) -> dict[int, StreamRange]:
        """Make the group durable; return the committed range per stream, if any. Raise if
        nothing of the group is durable (a partial write must be undone first)."""

    @abstractmethod
    def trim(self, committed_ends: dict[int, int]) -> None:
        """Drop what is committed to the object store: stream_id -> end offset committed."""

    @property
    def healthy(self) -> bool:
        return self._fatal is None

    def _start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._flusher())

    def append(self, record: WalRecord) -> None:
        """Queue a record; its ``on_done`` reports the outcome."""
        if self._fatal is not None:
            record.finish(None, WalError(f"the WAL failed: {self._fatal}"))
            return
        self._pending.append(record)
        self._pending_bytes += len(record.data)
        self._wakeup.set()

    async def _flusher(self) -> None:
        while True:
            await self._wakeup.wait()
            if self.flush_interval > 0 and self._pending_bytes < self.flush_bytes:
                deadline = time.monotonic() + self.flush_interval
                while self._pending_bytes < self.flush_bytes and time.monotonic() < deadline:
                    await asyncio.sleep(min(0.002, self.flush_interval))
            self._wakeup.clear()
            self._expire(time.monotonic())
            if not self._pending:
                continue
            group = self._take_group()
            self._committing = True
            try:
                ranges = await self._commit(group)
            except asyncio.CancelledError:
                self._fail(group, WalError("the WAL was closed"))
                raise
            except BaseException as exc:  # nothing in this group is durable
                self.failures += 1
                log.error("WAL commit of %d records failed: %s", len(group), exc)
                self._fail(group, exc if isinstance(exc, WalError) else WalError(str(exc)))
                if isinstance(exc, WalFatal):
                    self.fatal(exc)
                if self._fatal is not None and self.on_fatal is not None:
                    self.on_fatal(self._fatal)
                continue
            finally:
                self._committing = False
            self.flushes += 1
            for r in group:
                r.finish(ranges.get(r.stream_id), None)

    def _expire(self, now: float) -> None:
        """Refuse records whose deadline passed before their commit began."""
        late = [r for r in self._pending if r.deadline < now]
        if late:
            self._fail(late, WalTimeout("not durable before the request's timeout"))

    def _fail(self, failed: list[WalRecord], exc: BaseException) -> None:
        """Fail these records and every pending record of their streams (offsets after a
        failed record are void: the partition assigns them again)."""
        streams = {r.stream_id for r in failed}
        for r in failed:
            r.finish(None, exc)
        rest = [r for r in self._pending if r.stream_id in streams and not r.finished]
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
        if self._pending:
            self._wakeup.set()
        return group

    def fatal(self, exc: BaseException) -> None:
        """The WAL can never write again: refuse everything from now on."""
        if self._fatal is None:
            self._fatal = exc
            self._fail(list(self._pending), WalError(f"the WAL failed: {exc}"))

    async def close(self) -> None:
        """Let the pending groups commit, then stop."""
        if self._task is not None:
            while (
                (self._pending or self._committing)
                and self._fatal is None
                and not self._task.done()
            ):
                self._wakeup.set()
                await asyncio.sleep(0.001)
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
