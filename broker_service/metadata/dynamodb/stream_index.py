"""The DynamoDB store's lean stream index: item keys, item codecs and the read-side caches.

A WAL commit writes O(1) items whatever the number of streams in the object: the object
record and one *log entry* in the committing broker epoch's log (all the ranges, packed). The
per-stream index is folded from those logs now and then:

- ``LOG#<broker>#<epoch>`` / ``E#<seq>``: log entries, ``seq`` 1, 2, 3... per broker epoch
  (``E#<seq>#<n>``: more parts of a large entry; a *tombstone* at ``E#<seq>`` seals a seq
  whose commit failed, so it can never land later).
- ``STREAM#<sid>`` / ``HEAD``: the stream's head: ``version`` (bumped by every change), a
  cursor per log, attribute ``c#<broker>#<epoch>`` = seq (the entries of that log after
  ``seq`` may hold ranges of the stream that no chunk holds yet), and the count and digest of
  its chunks.
- ``STREAM#<sid>`` / ``C#<first start>#<id>``: immutable *chunks* of packed ranges.

A stream's ranges are its chunks' plus, for each cursor, its ranges in the entries after the
cursor (a later entry's range replaces an equal start offset). See docs/DYNAMODB.md.
"""

from __future__ import annotations

import bisect
import hashlib
import logging
import queue
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from broker_service.metadata.records import StreamRange

log = logging.getLogger(__name__)

HEAD_SK = "HEAD"
CURSOR = "c#"  # head attribute prefix: c#<broker>#<epoch> = seq
CHUNK_PREFIX = "C#"
ENTRY_PREFIX = "E#"


def log_name(broker_id: int, epoch: int) -> str:
    return f"{broker_id}#{epoch}"


def log_pk(log: str) -> str:
    return f"LOG#{log}"


def stream_pk(stream_id: int) -> str:
    return f"STREAM#{stream_id}"


def entry_sk(seq: int) -> str:
    return f"{ENTRY_PREFIX}{seq:012d}"


def part_sk(seq: int, n: int) -> str:
    return f"{ENTRY_PREFIX}{seq:012d}#{n:04d}"


def seq_of(sk: str) -> int:
    return int(sk[len(ENTRY_PREFIX) : len(ENTRY_PREFIX) + 12])


def new_chunk_sk(first_start: int) -> str:
    return f"{CHUNK_PREFIX}{first_start:020d}#{uuid.uuid4().hex[:8]}"


def digest(chunk_sks: Iterable[str]) -> str:
    """What the head says its chunk set is: a reader that sees other chunks read a torn state."""
    return hashlib.sha1("\n".join(sorted(chunk_sks)).encode()).hexdigest()[:16]


EMPTY_DIGEST = digest([])


@dataclass(frozen=True, slots=True)
class Chunk:
    sk: str
    ranges: tuple[StreamRange, ...]


@dataclass(slots=True)
class Head:
    version: int = 0
    cursors: dict[str, int] = field(default_factory=dict)
    chunk_count: int = 0
    digest: str = EMPTY_DIGEST
    exists: bool = False

    @classmethod
    def load(cls, a: dict[str, Any] | None) -> Head:
        if a is None:
            return cls()
        return cls(
            int(a["version"]),
            {k[len(CURSOR) :]: int(v) for k, v in a.items() if k.startswith(CURSOR)},
            int(a.get("chunk_count", 0)),
            str(a.get("digest", EMPTY_DIGEST)),
            True,
        )


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One WAL commit, as readers need it: its ranges by stream (a tombstone has none)."""

    log: str
    seq: int
    committed_ms: int
    by_stream: dict[int, tuple[StreamRange, ...]]
    object_key: str | None

    @property
    def range_count(self) -> int:
        return sum(len(v) for v in self.by_stream.values())


@dataclass(slots=True)
class StreamState:
    """One consistent read of a stream's index."""

    stream_id: int
    head: Head
    chunks: list[Chunk]
    tail: list[tuple[LogEntry, tuple[StreamRange, ...]]]  # entries after the cursors
    seen: dict[str, int]  # log -> the highest seq read (entries up to it are all known)

    def ranges(self) -> list[StreamRange]:
        """Chunks, then log ranges oldest first: a later range replaces an equal start (the
        same offsets committed again, e.g. after a lost answer, or by the next leader from a
        dead broker's file WAL). One log's entries go in seq order; across logs by commit
        time (made monotonic along each log, so a clock step back cannot reorder a log)."""
        by_start: dict[int, StreamRange] = {}
        for c in self.chunks:
            for r in c.ranges:
                by_start[r.start_offset] = r
        order: list[tuple[int, str, int, tuple[StreamRange, ...]]] = []
        last_ms: dict[str, int] = {}
        for e, rs in sorted(self.tail, key=lambda t: (t[0].log, t[0].seq)):
            ms = last_ms[e.log] = max(last_ms.get(e.log, e.committed_ms), e.committed_ms)
            order.append((ms, e.log, e.seq, rs))
        for *_, rs in sorted(order, key=lambda o: o[:3]):
            for r in rs:
                by_start[r.start_offset] = r
        return [by_start[k] for k in sorted(by_start)]


class LogTail:
    """The entries of one broker epoch's log that this store has read, from ``floor``
    (exclusive) to ``top`` (inclusive; every entry up to it is known). Entries are immutable,
    so many streams taken over from one dead broker read its log once."""

    MAX_ENTRIES = 4096

    def __init__(self, floor: int) -> None:
        self.lock = threading.Lock()
        self.floor = floor
        self.top = floor
        self.seqs: list[int] = []
        self.entries: dict[int, LogEntry] = {}
        self.final = False  # read to its end after its epoch died: nothing more will come

    def reset(self, floor: int) -> None:
        self.floor = self.top = floor
        self.seqs.clear()
        self.entries.clear()
        self.final = False

    def add(self, entries: Sequence[LogEntry], top: int) -> None:
        for e in entries:
            if e.seq > self.top:
                self.seqs.append(e.seq)
                self.entries[e.seq] = e
        self.top = max(self.top, top)
        if len(self.seqs) > self.MAX_ENTRIES:  # keep the newest half
            drop = self.seqs[: len(self.seqs) // 2]
            for s in drop:
                del self.entries[s]
            self.seqs = self.seqs[len(drop) :]
            self.floor = drop[-1]

    def after(self, seq: int) -> list[LogEntry]:
        i = bisect.bisect_right(self.seqs, seq)
        return [self.entries[s] for s in self.seqs[i:]]


class ChunkCache:
    """Chunks of recently read streams, by stream id, valid while the head's digest matches
    (chunks are immutable; every change of the set changes the digest)."""

    def __init__(self, max_ranges: int = 200_000) -> None:
        self._lock = threading.Lock()
        self._max = max_ranges
        self._held = 0
        self._by_stream: OrderedDict[int, tuple[str, list[Chunk]]] = OrderedDict()

    @staticmethod
    def _size(chunks: list[Chunk]) -> int:
        return sum(len(c.ranges) for c in chunks)

    def get(self, stream_id: int, digest_: str) -> list[Chunk] | None:
        with self._lock:
            hit = self._by_stream.get(stream_id)
            if hit is None or hit[0] != digest_:
                return None
            self._by_stream.move_to_end(stream_id)
            return hit[1]

    def put(self, stream_id: int, digest_: str, chunks: list[Chunk]) -> None:
        with self._lock:
            self.drop_locked(stream_id)
            self._by_stream[stream_id] = (digest_, chunks)
            self._held += self._size(chunks)
            while self._held > self._max and len(self._by_stream) > 1:
                _, (_, old) = self._by_stream.popitem(last=False)
                self._held -= self._size(old)

    def drop(self, stream_id: int) -> None:
        with self._lock:
            self.drop_locked(stream_id)

    def drop_locked(self, stream_id: int) -> None:
        old = self._by_stream.pop(stream_id, None)
        if old is not None:
            self._held -= self._size(old[1])


@dataclass(slots=True)
class Writer:
    """This store's side of one broker epoch's log: commits under the epoch are serialised
    (``lock``), so a seq is only used once the previous one is sealed: landed, or made
    impossible by a tombstone. Hence no entry can ever land below one a reader has seen."""

    log: str
    seq: int  # the last seq used
    lock: threading.Lock = field(default_factory=threading.Lock)
    claimed: set[int] = field(default_factory=set)  # streams whose head has our cursor
    unfolded: dict[int, int] = field(default_factory=dict)  # stream -> ranges since its fold
    unsealed: int | None = None  # a seq whose commit's outcome is still unknown


class Folder:
    """One background thread folding streams whose log tails grew (never on a commit's path)."""

    def __init__(self, fold: Callable[[int], object]) -> None:
        self._fold = fold
        self._queue: queue.Queue[int | None] = queue.Queue()
        self._queued: set[int] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._closed = False

    def request(self, stream_id: int) -> None:
        with self._lock:
            if self._closed or stream_id in self._queued:
                return
            self._queued.add(stream_id)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="stream-folder", daemon=True)
                self._thread.start()
        self._queue.put(stream_id)

    def _take(self, stream_id: int) -> bool:
        with self._lock:
            if stream_id not in self._queued:
                return False
            self._queued.discard(stream_id)
            return True

    def _run(self) -> None:
        while (sid := self._queue.get()) is not None:
            if self._take(sid):
                self._fold_logged(sid)

    def _fold_logged(self, stream_id: int) -> None:
        try:
            self._fold(stream_id)
        except Exception:  # harmless: readers read the longer tail; retried on the next request
            log.warning("folding the index of stream %d failed", stream_id, exc_info=True)

    def drain(self) -> None:
        """Fold everything queued now, in the caller's thread."""
        with self._lock:
            pending = sorted(self._queued)
            self._queued.clear()
        for sid in pending:
            self._fold_logged(sid)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            thread = self._thread
        self._queue.put(None)
        if thread is not None:
            thread.join(timeout=30)


class IndexState:
    """What one store instance keeps about the index: its writers, read caches, folder."""

    def __init__(self, fold: Callable[[int], object]) -> None:
        self.lock = threading.Lock()
        self.writers: dict[str, Writer] = {}
        self.log_tails: OrderedDict[str, LogTail] = OrderedDict()
        self.chunks = ChunkCache()
        self.folder = Folder(fold)
        self.broker_epochs: tuple[float, dict[int, int]] = (0.0, {})  # (when read, id -> epoch)
