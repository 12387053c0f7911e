"""The TCP listeners: one per configured listener (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL),
accepting connections and running the broker until told to stop."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Coroutine
from typing import Any

from broker_service.net.connection import KafkaConnection
from broker_service.net.limits import ConnectionRegistry
from broker_service.runtime import ready
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

    def connection(i: int) -> KafkaConnection:
        # by index: a port-0 listener is replaced below by one with its real port
        return KafkaConnection(broker, connections, security.listeners[i])

    # Bind first: a broker that cannot listen must not register itself as live.
    for i, listener in enumerate(security.listeners):
        servers.append(
            await loop.create_server(
                lambda i=i: connection(i),  # type: ignore[misc]
                listener.host,
                listener.port,
                reuse_address=True,
                start_serving=False,
                ssl=ssl_context if listener.tls else None,
            )
        )
    # port 0: register and advertise the ports the OS gave us (before broker.start registers)
    security.listeners = ready.adopt_bound_ports(
        cfg, [s.sockets[0].getsockname()[1] for s in servers]
    )
    await broker.start()
    for server in servers:
        await server.start_serving()
    if cfg.ready_file is not None:
        metrics = broker.metrics_service.port if broker.metrics_service else None
        ready.write_ready_file(cfg.ready_file, ready.ready_info(cfg, security.listeners, metrics))
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
    # The whole stop is bounded (ECS SIGKILLs a task 30 s after SIGTERM): a stalled metadata
    # store must not hold it. Cut short, it is no worse than a crash: what was acknowledged
    # is durable already, and recovery moves what was not handed over.
    deadline = loop.time() + cfg.stop_timeout_ms / 1000
    if not broker.fenced:  # clients still connected follow their partitions elsewhere
        # the flush and upload keep a share of the budget
        drain_s = min(cfg.drain_timeout_ms / 1000, 0.7 * cfg.stop_timeout_ms / 1000)
        if not await _within(broker.drain(), drain_s):
            log.warning("drain did not finish within %.1f s: recovery moves the rest", drain_s)
    log.info("shutting down: closing listeners, flushing WAL, uploading")
    for server in servers:
        server.close()
    for c in list(connections):
        c.close()
    for server in servers:
        await _within(server.wait_closed(), max(deadline - loop.time(), 0.5))
    if await _within(broker.stop(), max(deadline - loop.time(), 0.5)):
        log.info("stopped cleanly")
    else:
        log.error(
            "the stop did not finish within BROKER_STOP_TIMEOUT_MS (%d ms; the metadata or "
            "object store stalled?): exiting anyway, unacknowledged writes dropped",
            cfg.stop_timeout_ms,
        )


async def _within(step: Coroutine[Any, Any, Any], seconds: float) -> bool:
    """Run ``step`` for at most ``seconds`` (cancelled after): whether it finished."""
    try:
        await asyncio.wait_for(step, seconds)
    except TimeoutError:
        return False
    return True


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
