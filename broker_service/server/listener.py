"""The TCP listener: accepts connections and runs the broker until told to stop."""

from __future__ import annotations

import asyncio
import logging
import signal

from ..broker import Broker
from .connection import KafkaConnection

log = logging.getLogger(__name__)


async def serve(broker: Broker, stop: asyncio.Event | None = None) -> None:
    cfg = broker.config
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    connections: set[KafkaConnection] = set()
    broker.metrics.queue_depth = lambda key: sum(c.queued(key) for c in list(connections))
    # Bind first: a broker that cannot listen must not register itself as live.
    server = await loop.create_server(
        lambda: KafkaConnection(broker, connections),
        cfg.host,
        cfg.port,
        reuse_address=True,
        start_serving=False,
    )
    await broker.start()
    await server.start_serving()
    host, port = cfg.advertised
    log.info(
        "listening on %s:%d (advertised %s:%d); %s",
        cfg.host,
        cfg.port,
        host,
        port,
        cfg.describe_storage(),
    )
    stopper = asyncio.ensure_future(stop.wait())
    while not stop.is_set() and not broker.fenced:
        await asyncio.wait([stopper], timeout=0.5)
    if not broker.fenced:  # clients still connected follow their partitions elsewhere
        await broker.drain()
    log.info("shutting down: closing listener, flushing WAL, uploading")
    server.close()
    for c in list(connections):
        c.close()
    await server.wait_closed()
    await broker.stop()
    log.info("stopped cleanly")
