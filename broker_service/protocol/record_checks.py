"""Record-level checks of a produced batch, as Kafka's LogValidator makes them (KIP-467):
a compacted topic refuses records without a key, and a topic with a timestamp window
(``message.timestamp.before.max.ms`` / ``after.max.ms``) refuses records outside it. Any
refused record fails the whole batch; the answer names each refused record by its index in
the batch.

Pure over the batch bytes. The produce path calls it only when a topic's configs or the
batch ask for it (``RecordRules.applies``): with the defaults nothing is decoded.
"""

from __future__ import annotations

from dataclasses import dataclass

from broker_service.protocol.decompress import RecordHeads, pieces
from broker_service.protocol.record_batch import HEADER_SIZE, TIMESTAMP_TYPE_MASK, BatchHeader

INT64_MAX = (1 << 63) - 1
INVALID_TIMESTAMP = 32
INVALID_RECORD = 87


@dataclass(frozen=True, slots=True)
class RecordRules:
    """What a topic's configs ask of each record."""

    compacted: bool  # cleanup.policy includes compact
    create_time: bool  # message.timestamp.type is CreateTime
    before_max_ms: int = INT64_MAX
    after_max_ms: int = INT64_MAX

    def applies(self, header: BatchHeader) -> bool:
        windowed = self.before_max_ms != INT64_MAX or self.after_max_ms != INT64_MAX
        log_append = bool(header.attributes & TIMESTAMP_TYPE_MASK)
        return self.compacted or (self.create_time and windowed) or log_append


@dataclass(frozen=True, slots=True)
class RecordError:
    index: int  # of the record in its batch
    code: int  # INVALID_RECORD or INVALID_TIMESTAMP
    message: str


def record_errors(
    header: BatchHeader,
    batch: bytes | memoryview,
    rules: RecordRules,
    now_ms: int,
    topic_partition: str,
    max_output: int = 1 << 30,
) -> list[RecordError]:
    """Every refused record of one batch, in order (LogValidator.validateRecord: the key
    first, then the timestamp)."""
    log_append = bool(header.attributes & TIMESTAMP_TYPE_MASK)
    errors: list[RecordError] = []
    heads = RecordHeads()
    index = 0
    for piece in pieces(header.compression, batch[HEADER_SIZE : header.size], max_output):
        for ts_delta, off_delta, key_len in heads.feed(piece):
            ts = header.max_timestamp if log_append else header.base_timestamp + ts_delta
            error = _check(rules, index, header.base_offset + off_delta, ts, key_len,
                           log_append, now_ms, topic_partition)  # fmt: skip
            if error is not None:
                errors.append(error)
            index += 1
            if index >= header.record_count:
                return errors
    return errors


def _check(
    rules: RecordRules,
    index: int,
    offset: int,
    ts: int,
    key_len: int,
    log_append: bool,
    now_ms: int,
    topic_partition: str,
) -> RecordError | None:
    if rules.compacted and key_len < 0:
        return RecordError(index, INVALID_RECORD, "Compacted topic cannot accept message "
                           f"without key in topic partition {topic_partition}.")  # fmt: skip
    if rules.create_time and ts != -1:
        if now_ms - ts > rules.before_max_ms or ts - now_ms > rules.after_max_ms:
            low = now_ms - rules.before_max_ms
            high = min(now_ms + rules.after_max_ms, INT64_MAX)
            message = (f"Timestamp {ts} of message with offset {offset} is out of range. "
                       f"The timestamp should be within [{low}, {high}]")  # fmt: skip
            return RecordError(index, INVALID_TIMESTAMP, message)
    elif log_append:
        return RecordError(index, INVALID_TIMESTAMP, f"Invalid timestamp type in message with "
                           f"offset {offset}. Producer should not set timestamp type to "
                           "LogAppendTime.")  # fmt: skip
    return None


def batch_refusal(errors: list[RecordError]) -> tuple[int, str]:
    """The partition's error code and message for a batch with refused records
    (LogValidator.processRecordErrors)."""
    if any(e.code == INVALID_TIMESTAMP for e in errors):
        return INVALID_TIMESTAMP, "One or more records have been rejected due to invalid timestamp"
    shown = ", ".join(f"RecordError(batchIndex={e.index}, message='{e.message}')"
                      for e in errors[:3])  # fmt: skip
    return INVALID_RECORD, (
        f"One or more records have been rejected due to {len(errors)} record errors in total, "
        f"and only showing the first three errors at most: [{shown}]"
    )
