"""FileWal: the embedded (and EFS) write-ahead log.

Records of all streams are gathered into one group commit, written with ``writev`` and made
durable with ``fsync`` on a thread of the WAL's own (so an fsync never queues behind metadata
calls or anything else), and only then reported done. Segments are deleted once every record
in them is committed to the object store.

On-disk record: ``u32 length | u32 crc32c(payload) | payload`` with
``payload = stream_id i64 | base_offset i64 | end_offset i64 | batch bytes``. Recovery stops at
the first torn or corrupt record (the tail of a crash): nothing after it was acknowledged.

A write or fsync that fails (a full disk, an I/O error) undoes itself: the segment is cut back
to its last durable length, so the failed group is not in the log, and the next group tries
again (a full disk refuses writes until space returns). Only when the cut itself fails is the
WAL unusable (``fatal``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import struct
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from crc32c import crc32c

from broker_service.metadata.records import StreamRange
from broker_service.stream.wal.base import Wal, WalEntry, WalError, WalFatal, WalRecord

log = logging.getLogger(__name__)

_REC = struct.Struct(">IIqqq")
_HEAD = struct.Struct(">qqq")
_HEAD_SIZE = 24
_PREFIX = 8  # length + crc
# Linux's IOV_MAX: one writev takes at most this many buffers (EINVAL beyond)
IOV_MAX = os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 1024


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
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="wal-writer")

    # -- recovery ---------------------------------------------------------------------
    async def open(self) -> list[WalEntry]:
        loop = asyncio.get_running_loop()
        entries = await loop.run_in_executor(self._writer, self._open)
        self._start()
        return entries

    def _open(self) -> list[WalEntry]:
        self.dir.mkdir(parents=True, exist_ok=True)
        entries: list[WalEntry] = []
        paths = sorted(self.dir.glob("*.wal"))
        for path in paths:
            seg = _Segment(path)
            seg_entries, seg.size = read_segment(path)
            for e in seg_entries:
                seg.ends[e.stream_id] = max(seg.ends.get(e.stream_id, 0), e.end_offset)
            entries += seg_entries
            if path.stat().st_size > seg.size:  # a torn tail: never acknowledged, cut it
                os.truncate(path, seg.size)
            self._closed.append(seg)
        next_no = int(paths[-1].stem) + 1 if paths else 0
        self._open_segment(next_no)
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

    # -- group commit: write + fsync on the WAL's own thread -------------------------------
    async def _commit(self, group: list[WalRecord]) -> dict[int, StreamRange]:
        await asyncio.get_running_loop().run_in_executor(self._writer, self._write, group)
        return {}

    def _write(self, group: list[WalRecord]) -> None:
        seg = self._active
        assert seg is not None
        bufs: list[bytes | memoryview] = []
        total = 0
        for r in group:
            head = _HEAD.pack(r.stream_id, r.base_offset, r.end_offset)
            crc = crc32c(r.data, crc32c(head))
            bufs.append(struct.pack(">II", _HEAD_SIZE + len(r.data), crc) + head)
            bufs.append(r.data)
            total += _PREFIX + _HEAD_SIZE + len(r.data)
        try:
            written = 0
            while written < total:  # writev may write less than asked, and takes <= IOV_MAX
                n = os.writev(self._fd, bufs[:IOV_MAX])
                written += n
                if written < total:
                    bufs = _skip(bufs, n)
            os.fsync(self._fd)
        except OSError as exc:
            self._undo(seg, exc)  # raises WalFatal if it cannot
            raise WalError(f"write to {seg.path} failed: {exc.strerror or exc}") from exc
        seg.size += total
        for r in group:
            seg.ends[r.stream_id] = max(seg.ends.get(r.stream_id, 0), r.end_offset)
        if seg.size >= self.segment_bytes:
            os.close(self._fd)
            self._closed.append(seg)
            self._open_segment(int(seg.path.stem) + 1)

    def _undo(self, seg: _Segment, exc: OSError) -> None:
        """Cut the segment back to its last durable length, so what failed is not in the log
        (a partial record would be read as the torn tail of a crash and hide later ones)."""
        try:
            os.ftruncate(self._fd, seg.size)
            os.fsync(self._fd)
        except OSError as cut:
            log.error("WAL %s: cannot undo a failed write (%s): refusing writes", seg.path, cut)
            raise WalFatal(f"{seg.path}: {exc}; undo failed: {cut}") from cut

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
        self._writer.shutdown(wait=True)


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
