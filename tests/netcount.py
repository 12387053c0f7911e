"""Counting TCP relays on 127.0.0.1: every byte between a client and a broker listener goes
through one, so a test (or bench/zones.py) can say exactly which bytes crossed which
(simulated) zone boundary. The relays run on an event loop of their own, on a thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

CHUNK = 256 * 1024


@dataclass
class Counter:
    name: str
    target: tuple[str, int]
    port: int = 0
    up: int = 0  # client -> broker
    down: int = 0  # broker -> client
    connections: int = 0

    @property
    def total(self) -> int:
        return self.up + self.down


class Relays:
    """``add(name, host, port)`` opens a relay to ``host:port`` and returns the port
    clients should use; ``counters`` tells the bytes each relay carried."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.counters: dict[str, Counter] = {}
        self._servers: list[asyncio.AbstractServer] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def _run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def add(self, name: str, host: str, port: int, listen_port: int = 0) -> int:
        """A relay to ``host:port`` (``port`` 0: not known yet, see ``retarget``)."""
        counter = Counter(name, (host, port))
        self.counters[name] = counter
        server = self._run(self._serve(counter, listen_port))
        self._servers.append(server)
        counter.port = server.sockets[0].getsockname()[1]
        return counter.port

    def retarget(self, name: str, host: str, port: int) -> None:
        """Where relay ``name`` leads from now on (a broker bound its port after the relay
        was made: the relay's port had to be advertised first)."""
        self.counters[name].target = (host, port)

    async def _serve(self, counter: Counter, listen_port: int) -> asyncio.AbstractServer:
        async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            counter.connections += 1
            try:
                up_r, up_w = await asyncio.open_connection(*counter.target)
            except OSError:
                writer.close()
                return
            await asyncio.gather(
                self._pump(reader, up_w, counter, "up"), self._pump(up_r, writer, counter, "down")
            )

        return await asyncio.start_server(accepted, "127.0.0.1", listen_port)

    async def _pump(
        self, r: asyncio.StreamReader, w: asyncio.StreamWriter, counter: Counter, way: str
    ) -> None:
        try:
            while data := await r.read(CHUNK):
                with self._lock:
                    setattr(counter, way, getattr(counter, way) + len(data))
                w.write(data)
                await w.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            w.close()

    def snapshot(self) -> dict[str, tuple[int, int]]:
        with self._lock:
            return {n: (c.up, c.down) for n, c in self.counters.items()}

    def close(self) -> None:
        async def stop() -> None:
            for s in self._servers:
                s.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        try:
            self._run(stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(5)
