"""The control functions on timers inside the broker, so a laptop cluster runs itself too.

Only the controller (lowest live broker id, the same answer on every broker) acts, so N
brokers do not balance at once. The balancer is off unless BROKER_AUTO_BALANCE=true; the
autoscaler only logs its decision (there is no ECS to scale here) when
BROKER_AUTOSCALER_INTERVAL_S > 0. Load comes from the brokers' /metrics endpoints, found in
the metadata store (``ScrapedMetricsSource``). Recovery runs in cluster/membership.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from .autoscaler import AutoscalerPolicy, ScalingInput, decide, load_units
from .balancer import BalancerPolicy, balance
from .metrics_source import ScrapedMetricsSource
from .sizing import BrokerCapacity

if TYPE_CHECKING:
    from ..broker import Broker

log = logging.getLogger(__name__)


def _now_ms() -> int:
    return int(time.time() * 1000)


class ControlLoops:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker
        self._tasks: list[asyncio.Task[None]] = []
        self._last_decision: tuple[int, str] | None = None

    def start(self) -> None:
        cfg = self.broker.config
        loop = asyncio.get_running_loop()
        if cfg.auto_balance:
            self._tasks.append(loop.create_task(self._every(cfg.balance_interval_s,
                                                            self._balance_once())))  # fmt: skip
        if cfg.autoscaler_interval_s > 0:
            self._tasks.append(loop.create_task(self._every(cfg.autoscaler_interval_s,
                                                            self._autoscale_once())))  # fmt: skip

    def stop(self) -> None:
        for t in self._tasks:
            t.cancel()

    def _is_controller(self) -> bool:
        return self.broker.controller_id() == self.broker.node_id

    def _source(self) -> ScrapedMetricsSource:
        return ScrapedMetricsSource.from_metadata(self.broker.metadata, _now_ms)

    async def _every(self, interval_s: float, step: Callable[[], None]) -> None:
        while True:
            await asyncio.sleep(interval_s)
            if not self._is_controller() or not self.broker.may_acknowledge():
                continue
            try:
                await asyncio.to_thread(step)  # blocking I/O: scrapes and reassignments
            except Exception:
                log.exception("control loop step failed; will retry")

    def _balance_once(self) -> Callable[[], None]:
        cfg = self.broker.config
        policy = BalancerPolicy(band=cfg.balance_band,
                                min_mean_bytes_per_s=cfg.balance_min_bytes_per_s,
                                max_moves=cfg.balance_max_moves,
                                window_s=cfg.balance_interval_s)  # fmt: skip
        source = self._source()  # kept: each run measures the load since the previous one

        def step() -> None:
            result = balance(self.broker.metadata, source, policy, _now_ms())
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
