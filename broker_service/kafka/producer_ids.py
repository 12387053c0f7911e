"""Producer ids, handed out from blocks reserved in the metadata store (unique cluster-wide)."""

from __future__ import annotations

import threading

from broker_service.metadata.store import MetadataStore


class ProducerIdAllocator:
    BLOCK = 1000

    def __init__(self, metadata: MetadataStore) -> None:
        self._metadata = metadata
        self._next = 0
        self._end = 0
        self._lock = threading.Lock()  # called from worker threads

    def next(self) -> int:
        with self._lock:
            if self._next >= self._end:
                self._next = self._metadata.allocate_producer_ids(self.BLOCK)
                self._end = self._next + self.BLOCK
            pid = self._next
            self._next += 1
            return pid
