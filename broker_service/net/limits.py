"""Connection limits (Kafka's ``max.connections`` and ``max.connections.per.ip``) and a log
that cannot be flooded by bad clients.

Over a limit, a new connection is closed as soon as it is accepted (Kafka's per-IP
behaviour; for the broker-wide limit Kafka delays accepting instead, which asyncio's servers
cannot do). Memory per idle connection is small (the framer holds no buffer while idle).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Protocol


class Closeable(Protocol):
    def close(self) -> None: ...


class ConnectionRegistry:
    def __init__(self, max_connections: int, max_per_ip: int) -> None:
        self.max_connections = max_connections
        self.max_per_ip = max_per_ip
        self.open: set[Closeable] = set()
        self._per_ip: Counter[str] = Counter()
        self._ip: dict[Closeable, str] = {}
        self.refused = 0

    def admit(self, conn: Closeable, ip: str) -> str | None:
        """Register ``conn``; the reason it must be closed instead, if over a limit."""
        if len(self.open) >= self.max_connections:
            self.refused += 1
            return f"max.connections ({self.max_connections}) reached"
        if self._per_ip[ip] >= self.max_per_ip:
            self.refused += 1
            return f"max.connections.per.ip ({self.max_per_ip}) reached for {ip}"
        self.open.add(conn)
        self._ip[conn] = ip
        self._per_ip[ip] += 1
        return None

    def release(self, conn: Closeable) -> None:
        if conn in self.open:
            self.open.discard(conn)
            ip = self._ip.pop(conn)
            self._per_ip[ip] -= 1
            if not self._per_ip[ip]:
                del self._per_ip[ip]

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(list(self.open))

    def __len__(self) -> int:
        return len(self.open)


class ThrottledLog:
    """At most ``burst`` lines per ``period_s``; then one line saying how many were dropped
    (a fuzzer or a misconfigured client must not fill the disk with warnings)."""

    def __init__(self, logger: logging.Logger, burst: int = 20, period_s: float = 10.0) -> None:
        self.logger = logger
        self.burst = burst
        self.period_s = period_s
        self._window = time.monotonic()
        self._count = 0
        self._dropped = 0

    def warning(self, msg: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._window >= self.period_s:
            if self._dropped:
                self.logger.warning(
                    "... and %d more such warnings in the last %.0f s", self._dropped,
                    now - self._window,
                )  # fmt: skip
            self._window, self._count, self._dropped = now, 0, 0
        if self._count < self.burst:
            self._count += 1
            self.logger.warning(msg, *args)
        else:
            self._dropped += 1
