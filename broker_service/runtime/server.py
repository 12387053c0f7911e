"""The TCP listeners: one per configured listener (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL),
accepting connections and running the broker until told to stop."""

from __future__ import annotations

import asyncio
import logging
import signal

from broker_service.net.connection import KafkaConnection
from broker_service.net.limits import ConnectionRegistry
from broker_service.runtime.broker import Broker

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
    raise_fd_limit()
    connections = ConnectionRegistry(cfg.max_connections, cfg.max_connections_per_ip)
    broker.metrics.queue_depth = lambda key: sum(c.queued(key) for c in list(connections))
    security = broker.security
    ssl_context = security.ssl_context()
    servers = []
    # Bind first: a broker that cannot listen must not register itself as live.
    for listener in security.listeners:
        servers.append(
            await loop.create_server(
                lambda lst=listener: KafkaConnection(broker, connections, lst),  # type: ignore[misc]
                listener.host,
                listener.port,
                reuse_address=True,
                start_serving=False,
                ssl=ssl_context if listener.tls else None,
            )
        )
    await broker.start()
    for server in servers:
        await server.start_serving()
    for listener in security.listeners:
        log.info(
            "listening on %s://%s:%d (advertised %s:%d)",
            listener.name,
            listener.host,
            listener.port,
            listener.advertised_host,
            listener.advertised_port,
        )
    log.info("%s; authorizer %s", cfg.describe_storage(), cfg.authorizer)
    stopper = asyncio.ensure_future(stop.wait())
    while not stop.is_set() and not broker.fenced:
        await asyncio.wait([stopper], timeout=0.5)
    if not broker.fenced:  # clients still connected follow their partitions elsewhere
        await broker.drain()
    log.info("shutting down: closing listeners, flushing WAL, uploading")
    for server in servers:
        server.close()
    for c in list(connections):
        c.close()
    for server in servers:
        await server.wait_closed()
    await broker.stop()
    log.info("stopped cleanly")


def raise_fd_limit() -> None:
    """Clients, WAL segments, object uploads all need descriptors: take the hard limit (the
    default soft limit of 1024 refuses clients and fails uploads long before memory runs out)."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if hard == resource.RLIM_INFINITY or soft < hard:
            target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            log.debug("file descriptor limit raised from %d to %d", soft, target)
    except (ImportError, ValueError, OSError) as exc:
        log.warning("cannot raise the file descriptor limit: %s", exc)
