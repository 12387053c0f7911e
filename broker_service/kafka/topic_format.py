"""What a topic's ``compression.type`` and ``message.timestamp.type`` do to produced batches,
before they get offsets (Kafka's LogValidator): the broker re-encodes batches with the topic's
codec, and stamps its clock into LogAppendTime topics' batches. Pure over the batch bytes
(``protocol/compression.py``, ``protocol/record_batch.py``); nothing happens for a topic with
the defaults (``producer``, ``CreateTime``)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

from kio.schema.errors import ErrorCode

from broker_service.kafka.configs import ConfigView
from broker_service.protocol.compression import TooLarge, conform
from broker_service.protocol.record_batch import BatchHeader, InvalidRecordBatch


@dataclass(frozen=True, slots=True)
class Formatted:
    records: memoryview
    batches: list[tuple[int, BatchHeader]]
    log_append_time: int  # -1 unless the topic is LogAppendTime


@dataclass(frozen=True, slots=True)
class Refused:
    error_code: ErrorCode
    message: str


def format_batches(
    view: ConfigView,
    overrides: Mapping[str, str],
    records: memoryview,
    batches: list[tuple[int, BatchHeader]],
    limit: int,
    recompress_max_bytes: int,
) -> Formatted | Refused:
    codec, level, log_append = view.produce_format(overrides)
    if codec is None and not log_append:
        return Formatted(records, batches, -1)
    now_ms = int(time.time() * 1000) if log_append else None
    # decompressed records are re-encoded; stored uncompressed they must fit the limit anyway
    cap = min(limit, recompress_max_bytes) if codec == 0 else recompress_max_bytes
    try:
        records, batches = conform(records, batches, codec, level, now_ms, cap)
    except TooLarge as exc:
        return Refused(ErrorCode.message_too_large, str(exc))
    except InvalidRecordBatch as exc:
        return Refused(ErrorCode.corrupt_message, str(exc))
    if any(h.size > limit for _, h in batches):
        return Refused(
            ErrorCode.message_too_large, f"re-compressed record batch larger than {limit} bytes"
        )
    return Formatted(records, batches, -1 if now_ms is None else now_ms)
