"""The broker's metrics outputs: the Prometheus server, the EMF line on a timer, consumer lag
refreshed on the same timer, and the broker info the control plane reads (metrics URL, ECS
task ARN). Started and stopped by the broker."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from typing import TYPE_CHECKING, Any, Protocol

from broker_service.metrics.counters import BrokerMetrics
from broker_service.metrics.emf import EmfEmitter

if TYPE_CHECKING:
    from broker_service.config import BrokerConfig
    from broker_service.kafka.partition import PartitionLog
    from broker_service.metadata.ports import MetadataPorts
    from broker_service.metadata.records import BrokerRecord
    from broker_service.metadata.store import MetadataStore


class MetricsHost(Protocol):
    """What the metrics outputs read of their broker."""

    config: BrokerConfig
    metrics: BrokerMetrics
    metadata: MetadataStore
    ports: MetadataPorts
    me: BrokerRecord | None

    @property
    def node_id(self) -> int: ...

    def partition(self, topic: str, index: int) -> PartitionLog | None: ...


log = logging.getLogger(__name__)


class MetricsService:
    def __init__(self, broker: MetricsHost) -> None:
        self.broker = broker
        self.metrics: BrokerMetrics = broker.metrics
        self.metrics_url: str | None = None
        self.port: int | None = None  # the bound /metrics port (None: off)
        self._server: Any = None
        ns = broker.config.emf_namespace
        self._emf = EmfEmitter(self.metrics, ns) if ns else None
        self._last_stamp = 0  # the boundary (ms) of the last EMF datapoints with consumer lag

    async def start(self) -> None:
        cfg = self.broker.config
        if cfg.metrics_port:
            from broker_service.metrics.prometheus import start_http_server

            host = cfg.metrics_host or cfg.host
            wanted = 0 if cfg.metrics_port == "auto" else cfg.metrics_port
            try:
                self._server = start_http_server(self.metrics, host, wanted)
            except OSError as exc:  # metrics are not worth refusing to serve Kafka for
                log.warning("no /metrics: cannot listen on %s:%d (%s)", host, wanted, exc)
            else:
                self.port = int(self._server.server_address[1])
                self.metrics_url = f"http://{cfg.advertised[0]}:{self.port}/metrics"
                log.info("Prometheus metrics on http://%s:%d/metrics", host, self.port)
        await self.publish_info()

    async def publish_info(self) -> None:
        """Tell the control plane where this broker's metrics are and which task it is."""
        from broker_service.cluster.ecs_identity import AUTO_NODE_ID
        from broker_service.cluster.task_identity import ecs_task_identity

        me = self.broker.me
        if me is None:
            return
        info = await asyncio.to_thread(ecs_task_identity)
        if self.broker.config.task_arn:
            info["task_arn"] = self.broker.config.task_arn
        if self.metrics_url:
            info["metrics_url"] = self.metrics_url
        info["epoch"] = str(me.epoch)  # recovery fences only the registration the task ran
        if self.broker.config.node_id_auto:
            info["node_id"] = AUTO_NODE_ID  # never reused: recovery may forget it once fenced
        try:
            await self.broker.ports.brokers.set_broker_info(me.broker_id,
                                    me.epoch, info)  # fmt: skip
        except Exception:
            log.exception("could not publish broker info %s", info)

    async def stop(self) -> None:
        if self._emf is not None:  # the last partial interval's counters
            # Its lag was reported at the last boundary: a second lag datapoint in the same
            # CloudWatch period would count this broker's part of a group's lag twice.
            self.metrics.consumer_lag = {}
            self._emit(int(time.time() * 1000))
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    async def tick(self) -> None:
        """At every wall-clock multiple of the metrics interval (runtime/timers.py runs it
        aligned): consumer lag, then the EMF line stamped with that boundary."""
        interval = self.broker.config.metrics_interval_s
        stamp = round(round(time.time() / interval) * interval * 1000)
        try:
            self.metrics.consumer_lag = await self.consumer_lag()
        finally:
            if self._emf is not None:
                if stamp <= self._last_stamp:  # a run so late it rounded to the next boundary
                    stamp = self._last_stamp  # keep the counters; lag was already reported there
                    self.metrics.consumer_lag = {}
                self._last_stamp = stamp
                self._emit(stamp)

    def _emit(self, timestamp_ms: int) -> None:
        assert self._emf is not None
        sys.stdout.write(self._emf.lines(timestamp_ms))
        sys.stdout.flush()

    async def consumer_lag(self) -> dict[tuple[str, str], int]:
        """(group, topic) -> high watermark minus committed offset, summed over the topic's
        partitions this broker leads (each broker reports its own; CloudWatch sums them)."""
        metadata = self.broker.metadata

        def committed() -> list[tuple[str, list[Any]]]:
            return [(g.group_id, metadata.committed_offsets(g.group_id))
                    for g in metadata.groups()]  # fmt: skip

        lag: dict[tuple[str, str], int] = {}
        for group, offsets in await self.broker.ports.run(committed):
            for o in offsets:
                plog = self.broker.partition(o.topic, o.partition)
                if plog is None or plog.leader_id != self.broker.node_id or o.offset < 0:
                    continue
                key = (group, o.topic)
                lag[key] = lag.get(key, 0) + max(0, plog.high_watermark - o.offset)
        return lag
