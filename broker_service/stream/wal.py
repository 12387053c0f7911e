"""Write-ahead log: where a produced batch becomes durable before it is acknowledged.

``FileWal`` is the embedded (and EFS) implementation: batches from all partitions are
gathered into one group commit, written with ``writev`` and made durable with ``fsync`` in a
worker thread; only then are the producers' futures resolved. Segments are deleted once every
batch in them is committed to the object store.

Record format: ``u32 length | u32 crc32c(payload) | payload`` with
``payload = stream_id i64 | base_offset i64 | end_offset i64 | batch bytes``. Recovery stops at
the first torn or corrupt record (the tail of a crash): nothing after it was acknowledged.
"""

from __future__ import annotations

import asyncio
import logging
import os
import struct
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from crc32c import crc32c

from broker_service.metadata.records import StreamRange

log = logging.getLogger(__name__)

_REC = struct.Struct(">IIqqq")
_HEAD = struct.Struct(">qqq")
_HEAD_SIZE = 24
_PREFIX = 8  # length + crc


@dataclass(frozen=True, slots=True)
class WalEntry:
    stream_id: int
    base_offset: int
    end_offset: int
    data: bytes


class WalError(RuntimeError):
    pass


Pending = tuple[int, int, int, bytes | memoryview]  # stream_id, base, end, batches


class Wal(ABC):
    """Group commit shared by every WAL: appends queue up while the previous commit runs;
    one ``_commit`` makes the whole group durable, then its producers are answered.
    ``flush_interval_ms`` lingers before a commit (bigger groups), ``flush_bytes`` cuts the
    linger short. A failed commit is fatal: nothing after it may be acknowledged."""

    # Whether acknowledged data still has to be uploaded to objects (file WAL) or is already
    # committed there by the WAL itself (object WAL).
    needs_upload = True
    # Called when the WAL can no longer make anything durable (disk failure, or this broker
    # was fenced): the broker must stop serving; a restart or another broker takes over.
    on_fatal: Callable[[BaseException], None] | None = None
    # Largest group one commit takes (None: all that is pending); the rest waits its turn.
    max_group_bytes: int | None = None

    def __init__(self, flush_interval_ms: float, flush_bytes: int) -> None:
        self.flush_interval = flush_interval_ms / 1000.0
        self.flush_bytes = flush_bytes
        self._pending: list[Pending] = []
        self._futures: list[asyncio.Future[StreamRange | None]] = []
        self._pending_bytes = 0
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._failed: BaseException | None = None
        self.flushes = 0

    def bind(self, broker_id: int, broker_epoch: int) -> None:
        """Learn this broker's identity once registered (a WAL that commits needs it)."""
        return None

    @abstractmethod
    async def open(self) -> list[WalEntry]:
        """Open the log and return every durable entry left by a previous run, in order."""

    @abstractmethod
    async def _commit(self, batch: list[Pending]) -> dict[int, StreamRange]:
        """Make the group durable; return the committed range per stream, if any."""

    @abstractmethod
    def trim(self, committed_ends: dict[int, int]) -> None:
        """Drop what is committed to the object store: stream_id -> end offset committed."""

    def _start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._flusher())

    def append(
        self, stream_id: int, base_offset: int, end_offset: int, data: bytes | memoryview
    ) -> asyncio.Future[StreamRange | None]:
        """Queue a batch; the future resolves when it is durable, with the committed range
        that now holds it when the WAL commits objects itself, else None."""
        fut: asyncio.Future[StreamRange | None] = asyncio.get_running_loop().create_future()
        if self._failed is not None:
            fut.set_exception(WalError(f"WAL failed earlier: {self._failed}"))
            return fut
        self._pending.append((stream_id, base_offset, end_offset, data))
        self._futures.append(fut)
        self._pending_bytes += len(data)
        self._wakeup.set()
        return fut

    async def _flusher(self) -> None:
        while True:
            await self._wakeup.wait()
            if self.flush_interval > 0 and self._pending_bytes < self.flush_bytes:
                deadline = time.monotonic() + self.flush_interval
                while self._pending_bytes < self.flush_bytes and time.monotonic() < deadline:
                    await asyncio.sleep(min(0.002, self.flush_interval))
            self._wakeup.clear()
            if not self._pending:
                continue
            batch, futures = self._take_group()
            try:
                ranges = await self._commit(batch)
            except BaseException as exc:  # nothing in this group is durable
                self._failed = exc
                for f in futures:
                    if not f.done():
                        f.set_exception(WalError(str(exc)))
                if isinstance(exc, asyncio.CancelledError):
                    raise
                log.error("WAL failed, refusing further appends: %s", exc)
                if self.on_fatal is not None:
                    self.on_fatal(exc)
                return
            self.flushes += 1
            for (stream_id, *_rest), f in zip(batch, futures, strict=True):
                if not f.done():
                    f.set_result(ranges.get(stream_id))

    def _take_group(self) -> tuple[list[Pending], list[asyncio.Future[StreamRange | None]]]:
        n, size = len(self._pending), self._pending_bytes
        if self.max_group_bytes is not None and size > self.max_group_bytes:
            n, size = 0, 0
            for _, _, _, data in self._pending:  # at least one entry, then up to the cap
                if n and size + len(data) > self.max_group_bytes:
                    break
                n, size = n + 1, size + len(data)
        batch, futures = self._pending[:n], self._futures[:n]
        del self._pending[:n], self._futures[:n]
        self._pending_bytes -= size
        if self._pending:
            self._wakeup.set()
        return batch, futures

    async def close(self) -> None:
        """Let the last group commit land, then stop."""
        if self._task is not None:
            while self._pending and self._failed is None and not self._task.done():
                self._wakeup.set()
                await asyncio.sleep(0.001)
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass


@dataclass
class _Segment:
    path: Path
    size: int = 0
    ends: dict[int, int] = field(default_factory=dict)  # stream -> end offset inside


class FileWal(Wal):
    def __init__(
        self,
        directory: Path,
        flush_interval_ms: float = 0.0,
        flush_bytes: int = 4 << 20,
        segment_bytes: int = 64 << 20,
    ) -> None:
        super().__init__(flush_interval_ms, flush_bytes)
        self.dir = directory
        self.segment_bytes = segment_bytes
        self._closed: list[_Segment] = []
        self._active: _Segment | None = None
        self._fd = -1

    # -- recovery ---------------------------------------------------------------------
    async def open(self) -> list[WalEntry]:
        self.dir.mkdir(parents=True, exist_ok=True)
        entries: list[WalEntry] = []
        paths = sorted(self.dir.glob("*.wal"))
        for path in paths:
            seg = _Segment(path)
            seg_entries, seg.size = read_segment(path)
            for e in seg_entries:
                seg.ends[e.stream_id] = max(seg.ends.get(e.stream_id, 0), e.end_offset)
            entries += seg_entries
            self._closed.append(seg)
        next_no = int(paths[-1].stem) + 1 if paths else 0
        self._open_segment(next_no)
        self._start()
        log.info(
            "WAL at %s: recovered %d entries from %d segments", self.dir, len(entries), len(paths)
        )
        return entries

    def _open_segment(self, number: int) -> None:
        path = self.dir / f"{number:020d}.wal"
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self._active = _Segment(path)
        dfd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    # -- group commit: write + fsync in a worker thread ----------------------------------
    async def _commit(self, batch: list[Pending]) -> dict[int, StreamRange]:
        await asyncio.to_thread(self._write, batch)
        self._maybe_rotate()
        return {}

    def _write(self, batch: list[Pending]) -> None:
        assert self._active is not None
        bufs: list[bytes | memoryview] = []
        total = 0
        ends = self._active.ends
        for stream_id, base, end, data in batch:
            head = _HEAD.pack(stream_id, base, end)
            crc = crc32c(data, crc32c(head))
            bufs.append(struct.pack(">II", _HEAD_SIZE + len(data), crc) + head)
            bufs.append(data)
            total += _PREFIX + _HEAD_SIZE + len(data)
            ends[stream_id] = max(ends.get(stream_id, 0), end)
        written = 0
        while written < total:  # writev may write less than asked
            n = os.writev(self._fd, bufs)
            written += n
            if written < total:
                bufs = _skip(bufs, n)
        os.fsync(self._fd)
        self._active.size += total

    def _maybe_rotate(self) -> None:
        assert self._active is not None
        if self._active.size >= self.segment_bytes:
            os.close(self._fd)
            self._closed.append(self._active)
            self._open_segment(int(self._active.path.stem) + 1)

    # -- trimming ------------------------------------------------------------------------
    def trim(self, committed_ends: dict[int, int]) -> None:
        keep = []
        for seg in self._closed:
            if all(committed_ends.get(s, end) >= end for s, end in seg.ends.items()):
                try:
                    seg.path.unlink()
                except FileNotFoundError:
                    pass
            else:
                keep.append(seg)
        self._closed = keep

    async def close(self) -> None:
        await super().close()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def read_segment(path: Path) -> tuple[list[WalEntry], int]:
    """The durable entries of one segment file and the length they cover (a torn or corrupt
    tail is where a crash interrupted a write: nothing after it was acknowledged)."""
    data = path.read_bytes()
    entries: list[WalEntry] = []
    pos = 0
    while pos + _REC.size <= len(data):
        length, crc, stream_id, base, end_offset = _REC.unpack_from(data, pos)
        end = pos + _PREFIX + length
        if length < _HEAD_SIZE or end > len(data) or crc32c(data[pos + _PREFIX : end]) != crc:
            log.warning("WAL %s: torn record at byte %d, ignoring the tail", path, pos)
            break
        entries.append(WalEntry(stream_id, base, end_offset, data[pos + _REC.size : end]))
        pos = end
    return entries, pos


def read_wal_dir(directory: Path) -> list[WalEntry]:
    """Every durable entry of a (possibly dead) broker's WAL directory, in order."""
    out: list[WalEntry] = []
    for path in sorted(directory.glob("*.wal")):
        out += read_segment(path)[0]
    return out


def _skip(bufs: list[bytes | memoryview], n: int) -> list[bytes | memoryview]:
    out: list[bytes | memoryview] = []
    for b in bufs:
        if n >= len(b):
            n -= len(b)
            continue
        out.append(memoryview(b)[n:] if n else b)
        n = 0
    return out
