"""The control functions as steps inside the broker (runtime/timers.py runs them), so a
laptop cluster runs itself too. Only the controller (lowest live broker id, the same answer
on every broker) acts, so N brokers do not balance at once. The balancer is off unless
BROKER_AUTO_BALANCE=true; the autoscaler only logs its decision (there is no ECS to scale
here) when BROKER_AUTOSCALER_INTERVAL_S > 0. Load comes from the brokers' /metrics
endpoints, found in the metadata store (``ScrapedMetricsSource``). Recovery runs in
cluster/membership.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from broker_service.control.autoscaler import AutoscalerPolicy, ScalingInput, decide, load_units
from broker_service.control.balancer import BalancerPolicy, balance
from broker_service.control.metrics_source import ScrapedMetricsSource
from broker_service.control.reassignment import ReassignmentResult
from broker_service.control.sizing import BrokerCapacity

if TYPE_CHECKING:
    from broker_service.config import BrokerConfig
    from broker_service.metadata.store import MetadataStore


class ControlHost(Protocol):
    """What the embedded control steps need of their broker."""

    config: BrokerConfig
    metadata: MetadataStore

    @property
    def node_id(self) -> int: ...

    def controller_id(self) -> int: ...

    def may_acknowledge(self) -> bool: ...

    def request_refresh(self) -> None: ...

    async def move_partition(
        self, topic: str, partition: int, target: int
    ) -> tuple[int, str | None]: ...


log = logging.getLogger(__name__)


def _now_ms() -> int:
    return int(time.time() * 1000)


class ControlLoops:
    def __init__(self, broker: ControlHost) -> None:
        self.broker = broker
        self._last_decision: tuple[int, str] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.balance_step = self._in_thread(self._balance_once())
        self.autoscale_step = self._in_thread(self._autoscale_once())

    def acting(self) -> bool:
        """Only the controller acts, and only while its lease is surely its own."""
        return self.broker.controller_id() == self.broker.node_id and self.broker.may_acknowledge()

    def _source(self) -> ScrapedMetricsSource:
        return ScrapedMetricsSource.from_metadata(self.broker.metadata, _now_ms)

    def _in_thread(self, step: Callable[[], None]) -> Callable[[], asyncio.Future[None]]:
        def run() -> asyncio.Future[None]:
            self._loop = asyncio.get_running_loop()  # where the steps' moves run
            return asyncio.ensure_future(asyncio.to_thread(step))  # blocking: scrapes, moves

        return run

    def _balance_once(self) -> Callable[[], None]:
        cfg = self.broker.config
        policy = BalancerPolicy(band=cfg.balance_band,
                                min_mean_bytes_per_s=cfg.balance_min_bytes_per_s,
                                max_moves=cfg.balance_max_moves,
                                window_s=cfg.balance_interval_s)  # fmt: skip
        source = self._source()  # kept: each run measures the load since the previous one

        def move(_bootstrap: str, topic: str, partition: int, target: int) -> ReassignmentResult:
            """In process: hand over here, or ask the leader (no TCP to ourselves)."""
            started = time.monotonic()
            assert self._loop is not None
            running = asyncio.run_coroutine_threadsafe(
                self.broker.move_partition(topic, partition, target), self._loop
            )
            code, message = running.result(timeout=60)
            return ReassignmentResult(
                topic, partition, target, int(code), message, time.monotonic() - started
            )

        def step() -> None:
            result = balance(self.broker.metadata, source, policy, _now_ms(), move)
            if result.done:
                self.broker.request_refresh()

        return step

    def _autoscale_once(self) -> Callable[[], None]:
        cfg = self.broker.config
        capacity = BrokerCapacity.for_produce(cfg.autoscaler_target_mbps)
        policy = AutoscalerPolicy(capacity=capacity,
                                  min_brokers=1, max_brokers=1 << 16,
                                  window_s=cfg.autoscaler_interval_s)  # fmt: skip
        source = self._source()

        def step() -> None:
            load = source.cluster_load(policy.window_s)
            current = len(self.broker.metadata.live_brokers(_now_ms()))
            units = load_units(load, policy.capacity)
            d = decide(ScalingInput(current, units, time.time()), policy)
            level = logging.INFO if (d.desired, d.action) != self._last_decision else logging.DEBUG
            self._last_decision = (d.desired, d.action)
            log.log(level, "autoscaler (log only, no ECS here): %s %d -> %d: %s", d.action,
                    d.current, d.desired, d.reason)  # fmt: skip

        return step
