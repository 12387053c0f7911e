"""Per-partition producer state: what idempotence and transactions need from a partition log.

For each producer id: its epoch, the last five batches' sequence ranges and offsets (a
retried batch is answered with its original offsets), and the first offset of its open
transaction. For the partition: the aborted transactions (Fetch returns them so
read_committed consumers drop aborted records) and the last stable offset (the first offset
of the oldest open transaction).

Pure logic over batch headers: the leader applies every appended batch; a snapshot of the
state at the committed end (see ``encode``) plus the batches after it rebuild it on another
broker, as Kafka rebuilds it from its snapshot files and log.
"""

from __future__ import annotations

import struct
from collections import deque
from dataclasses import dataclass, field
from enum import Enum

from kio.schema.errors import ErrorCode

from broker_service.protocol.control_batch import ABORT
from broker_service.protocol.record_batch import BatchHeader

MAX_BATCHES = 5  # Kafka keeps the last 5 (max.in.flight.requests.per.connection <= 5)
INT32_MAX = 2**31 - 1
NO_PRODUCER_ID = -1


def next_sequence(seq: int, n: int = 1) -> int:
    """Sequences wrap from Int32.MaxValue to 0."""
    return (seq + n) % (INT32_MAX + 1)


@dataclass(frozen=True, slots=True)
class BatchMeta:
    first_seq: int
    last_seq: int
    base_offset: int
    last_offset: int


@dataclass(slots=True)
class ProducerEntry:
    epoch: int
    batches: deque[BatchMeta] = field(default_factory=lambda: deque(maxlen=MAX_BATCHES))
    txn_first_offset: int = -1  # -1: no open transaction in this partition
    last_ms: int = 0


@dataclass(frozen=True, slots=True)
class AbortedTxn:
    producer_id: int
    first_offset: int
    last_offset: int  # the abort marker's offset


class Outcome(Enum):
    APPEND = 0
    DUPLICATE = 1
    REJECT = 2


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: Outcome
    error_code: int = 0
    message: str | None = None
    duplicate: BatchMeta | None = None


APPEND = Verdict(Outcome.APPEND)


def _reject(code: ErrorCode, message: str) -> Verdict:
    return Verdict(Outcome.REJECT, code, message)


class ProducerStateTable:
    def __init__(self) -> None:
        self.producers: dict[int, ProducerEntry] = {}
        self.aborted: list[AbortedTxn] = []
        self.open_txns = 0

    # -- the write path ---------------------------------------------------------------------
    def check(self, h: BatchHeader) -> Verdict:
        """Judge a data batch from a client before it gets offsets (Kafka's rules)."""
        pid = h.producer_id
        if pid < 0:
            if h.is_transactional:
                return _reject(ErrorCode.invalid_record, "transactional batch without producer id")
            return APPEND
        e = self.producers.get(pid)
        last_seq = next_sequence(h.base_sequence, h.last_offset_delta)
        if e is None:
            # Unknown (new, or its state expired / was deleted): any sequence is accepted.
            return APPEND
        if h.producer_epoch < e.epoch:
            return _reject(
                ErrorCode.invalid_producer_epoch,
                f"producer {pid} epoch {h.producer_epoch} is older than {e.epoch}",
            )
        if h.producer_epoch == e.epoch:
            for b in e.batches:
                if b.first_seq == h.base_sequence and b.last_seq == last_seq:
                    return Verdict(Outcome.DUPLICATE, duplicate=b)
            expected = next_sequence(e.batches[-1].last_seq) if e.batches else 0
            if h.base_sequence != expected:
                return _reject(
                    ErrorCode.out_of_order_sequence_number,
                    f"producer {pid}: expected sequence {expected}, got {h.base_sequence}",
                )
        elif h.base_sequence != 0:
            return _reject(
                ErrorCode.out_of_order_sequence_number,
                f"producer {pid}: first sequence of epoch {h.producer_epoch} must be 0",
            )
        if not h.is_transactional and e.txn_first_offset >= 0:
            return _reject(
                ErrorCode.invalid_txn_state,
                f"producer {pid} has an open transaction; non-transactional batch refused",
            )
        return APPEND

    def check_marker(self, producer_id: int, producer_epoch: int) -> Verdict:
        e = self.producers.get(producer_id)
        if e is not None and producer_epoch < e.epoch:
            return _reject(
                ErrorCode.invalid_producer_epoch,
                f"marker epoch {producer_epoch} older than producer epoch {e.epoch}",
            )
        return APPEND

    def apply(
        self, h: BatchHeader, base_offset: int, marker: int | None = None, now_ms: int = 0
    ) -> None:
        """Record a batch now in the log at ``base_offset`` (a marker's type in ``marker``)."""
        pid = h.producer_id
        if pid < 0:
            return
        e = self.producers.get(pid)
        if e is None:
            e = self.producers[pid] = ProducerEntry(h.producer_epoch)
        e.last_ms = max(e.last_ms, now_ms)
        if h.is_control:
            if h.producer_epoch > e.epoch:
                e.epoch = h.producer_epoch
                e.batches.clear()
            if e.txn_first_offset >= 0:
                if marker == ABORT:
                    self.aborted.append(AbortedTxn(pid, e.txn_first_offset, base_offset))
                e.txn_first_offset = -1
                self.open_txns -= 1
            return
        if h.producer_epoch != e.epoch:
            e.epoch = h.producer_epoch
            e.batches.clear()
        last_seq = next_sequence(h.base_sequence, h.last_offset_delta)
        e.batches.append(
            BatchMeta(h.base_sequence, last_seq, base_offset, base_offset + h.last_offset_delta)
        )
        if h.is_transactional and e.txn_first_offset < 0:
            e.txn_first_offset = base_offset
            self.open_txns += 1

    # -- the read path ----------------------------------------------------------------------
    def first_unstable_offset(self) -> int | None:
        if not self.open_txns:
            return None
        return min(e.txn_first_offset for e in self.producers.values() if e.txn_first_offset >= 0)

    def aborted_between(self, start: int, end: int) -> list[AbortedTxn]:
        """Aborted transactions with records in [start, end)."""
        return [a for a in self.aborted if a.last_offset >= start and a.first_offset < end]

    # -- upkeep and snapshots -----------------------------------------------------------------
    def expire(self, now_ms: int, expiration_ms: int, log_start_offset: int) -> None:
        """Forget idle producers without an open transaction (producer.id.expiration.ms) and
        aborted transactions wholly below the log start."""
        for pid in [
            pid
            for pid, e in self.producers.items()
            if e.txn_first_offset < 0 and e.last_ms and now_ms - e.last_ms > expiration_ms
        ]:
            del self.producers[pid]
        if self.aborted and self.aborted[0].last_offset < log_start_offset:
            self.aborted = [a for a in self.aborted if a.last_offset >= log_start_offset]

    def encode(self) -> bytes:
        out = bytearray(_COUNTS.pack(SNAPSHOT_VERSION, len(self.producers), len(self.aborted)))
        for pid, e in self.producers.items():
            out += _PRODUCER.pack(pid, e.epoch, e.txn_first_offset, e.last_ms, len(e.batches))
            for b in e.batches:
                out += _BATCH.pack(b.first_seq, b.last_seq, b.base_offset, b.last_offset)
        for a in self.aborted:
            out += _ABORTED.pack(a.producer_id, a.first_offset, a.last_offset)
        return bytes(out)

    @classmethod
    def decode(cls, data: bytes) -> ProducerStateTable:
        t = cls()
        version, producers, aborted = _COUNTS.unpack_from(data, 0)
        if version != SNAPSHOT_VERSION:
            raise ValueError(f"producer snapshot version {version} is not supported")
        pos = _COUNTS.size
        for _ in range(producers):
            pid, epoch, txn_first, last_ms, n = _PRODUCER.unpack_from(data, pos)
            pos += _PRODUCER.size
            e = ProducerEntry(epoch, txn_first_offset=txn_first, last_ms=last_ms)
            for _ in range(n):
                e.batches.append(BatchMeta(*_BATCH.unpack_from(data, pos)))
                pos += _BATCH.size
            t.producers[pid] = e
            if txn_first >= 0:
                t.open_txns += 1
        for _ in range(aborted):
            t.aborted.append(AbortedTxn(*_ABORTED.unpack_from(data, pos)))
            pos += _ABORTED.size
        return t


SNAPSHOT_VERSION = 1
_COUNTS = struct.Struct(">hii")
_PRODUCER = struct.Struct(">qhqqb")
_BATCH = struct.Struct(">iiqq")
_ABORTED = struct.Struct(">qqq")
