"""Where things go: pure placement decisions shared by the broker and the control functions.

- ``owner``: which live broker coordinates a key (a group id, a transactional id). Rendezvous
  (highest-random-weight) hashing: every broker computes the same answer, and when the live set
  changes only the keys of a broker that left move (to the others, evenly), or about 1/n of the
  keys move to a broker that joined. (``crc32(key) % n`` moved 67% of the keys for 3 -> 2.)
- ``least_loaded``: the broker with the fewest partitions, lowest id on a tie (recovery,
  draining, scale-in and new partitions all pick a target this way), counting as it assigns.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def _weight(key: bytes, node: int) -> int:
    digest = hashlib.blake2b(key, digest_size=8, key=node.to_bytes(8, "big", signed=True))
    return int.from_bytes(digest.digest(), "big")


def owner(key: str, nodes: Iterable[int]) -> int:
    """The node that owns ``key`` among ``nodes`` (non-empty)."""
    k = key.encode()
    return max(nodes, key=lambda n: (_weight(k, n), n))


class LeastLoaded:
    """Picks targets one at a time, each the least loaded so far (ties: lowest id)."""

    def __init__(self, load: dict[int, int]) -> None:
        if not load:
            raise ValueError("no broker to place on")
        self.load = dict(load)

    def pick(self) -> int:
        target = min(self.load, key=lambda b: (self.load[b], b))
        self.load[target] += 1
        return target

    def undo(self, target: int) -> None:
        """The move to ``target`` did not happen after all."""
        self.load[target] -= 1
