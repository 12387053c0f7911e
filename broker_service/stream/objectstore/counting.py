"""Counts object store requests (S3PutRequests / S3GetRequests) by wrapping the store, so
neither the S3 nor the directory implementation needs a hook."""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from typing import Any

from broker_service.metrics.counters import BrokerMetrics
from broker_service.stream.objectstore.base import Buffer, ObjectStore


class CountingObjectStore(ObjectStore):
    def __init__(self, inner: ObjectStore, metrics: BrokerMetrics) -> None:
        self.inner = inner
        self.metrics = metrics

    async def put(self, key: str, parts: Sequence[Buffer]) -> None:
        self.metrics.s3_puts += 1
        await self.inner.put(key, parts)

    async def get(self, key: str, start: int = 0, end: int | None = None) -> bytes:
        self.metrics.s3_gets += 1
        return await self.inner.get(key, start, end)

    async def delete(self, key: str) -> None:
        await self.inner.delete(key)

    async def list(self, prefix: str = "") -> list[str]:
        return await self.inner.list(prefix)

    async def list_tops(self) -> builtins.list[str]:
        return await self.inner.list_tops()

    def close(self) -> None:
        self.inner.close()

    def __getattr__(self, name: str) -> Any:  # root, bucket... of the inner store
        return getattr(self.inner, name)
