"""Where a produce request's time goes: one histogram per stage, always on.

A produce request's life, in the order it happens (Kafka's RequestMetrics name the same
idea RequestQueueTime, LocalTime, RemoteTime, ResponseQueueTime, ResponseSendTime):

- ``receive``: the frame's first bytes read -> its last bytes read (not in ``total``, which
  starts, as Kafka's, once the whole request is there; a slow read shows here);
- ``queue``: whole frame received -> the connection starts it (requests of one connection
  run one at a time, in order);
- ``parse``: the request header and the Produce body;
- ``validate``: batch headers and CRC-32C (and a topic's compression / timestamp type);
- ``append``: offsets, producer state, log cache, handed to the WAL;
- ``wal_wait``: handed to the WAL -> its group commit begins (the commit before it, a linger;
  on the object WAL, zone-forwarded batches riding in its flushes too);
- ``write``: the group's bytes written (file WAL: writev; object WAL: the PUT, also of a flush
  carrying forwarded batches only);
- ``sync``: the group made durable (file WAL: fsync; object WAL: the metadata commit, which a
  flush of forwarded batches only does not make);
- ``complete``: the WAL thread done -> the event loop ran the group's completions (high
  watermark, waiting answers);
- ``durable_wait``: appended -> every partition of the request durable (covers the four WAL
  stages, as the request sees them);
- ``respond``: the response built;
- ``send_wait``: the response ready -> written (answers leave in request order);
- ``total``: whole frame received -> response written: the broker-side time.

Per-request stages are observed once per request, the WAL's once per record or group, never
per Kafka record: a handful of clock reads and bucket increments per request.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field

# Finer than the request-latency buckets: an fsync is a few ms, a CRC a fraction of one.
STAGE_BUCKETS_MS: tuple[float, ...] = (
    0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096,
)  # fmt: skip

PRODUCE_STAGES: tuple[str, ...] = (
    "receive", "queue", "parse", "validate", "append", "wal_wait", "write", "sync", "complete",
    "durable_wait", "respond", "send_wait", "total",
)  # fmt: skip


@dataclass(slots=True)
class StageStats:
    """Count, sum, max and bucket counts (bucket i counts values <= STAGE_BUCKETS_MS[i]).
    One writer per instance (the event loop, or the WAL's own thread); readers only read."""

    count: int = 0
    sum_ms: float = 0.0
    max_ms: float = 0.0
    buckets: list[int] = field(default_factory=lambda: [0] * (len(STAGE_BUCKETS_MS) + 1))

    def observe(self, ms: float) -> None:
        self.count += 1
        self.sum_ms += ms
        if ms > self.max_ms:
            self.max_ms = ms
        self.buckets[bisect_left(STAGE_BUCKETS_MS, ms)] += 1


class ProduceStages:
    """The produce path's stage histograms, by stage name (``PRODUCE_STAGES``)."""

    def __init__(self) -> None:
        self.stats: dict[str, StageStats] = {s: StageStats() for s in PRODUCE_STAGES}
        # attribute access for the hot paths (no dict lookup by string per observation)
        s = self.stats
        self.receive, self.queue, self.parse, self.validate, self.append = (
            s["receive"], s["queue"], s["parse"], s["validate"], s["append"],
        )  # fmt: skip
        self.wal_wait, self.write, self.sync, self.complete = (
            s["wal_wait"], s["write"], s["sync"], s["complete"],
        )  # fmt: skip
        self.durable_wait, self.respond, self.send_wait, self.total = (
            s["durable_wait"], s["respond"], s["send_wait"], s["total"],
        )  # fmt: skip
