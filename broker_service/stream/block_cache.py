"""A bounded LRU of object byte ranges, so repeated catch-up reads avoid the object store."""

from __future__ import annotations

from collections import OrderedDict


class BlockCache:
    def __init__(self, capacity_bytes: int) -> None:
        self.capacity = capacity_bytes
        self.size = 0
        self._blocks: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: str, position: int) -> bytes | None:
        block = self._blocks.get((key, position))
        if block is None:
            self.misses += 1
            return None
        self._blocks.move_to_end((key, position))
        self.hits += 1
        return block

    def put(self, key: str, position: int, block: bytes) -> None:
        if len(block) > self.capacity:
            return
        old = self._blocks.pop((key, position), None)
        if old is not None:
            self.size -= len(old)
        self._blocks[(key, position)] = block
        self.size += len(block)
        while self.size > self.capacity:
            _, evicted = self._blocks.popitem(last=False)
            self.size -= len(evicted)
