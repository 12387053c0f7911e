"""This broker's lease in the metadata store, and the recovery check it runs for others.

The lease is renewed every third of its length. The broker trusts its own lease only until
``valid_until`` (its last renewal plus 80% of the lease, leaving room for clock skew): past
that, another broker may already have fenced it and taken its partitions, so it must not
acknowledge anything (a stopped-then-resumed "zombie" finds its lease gone).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from broker_service.control.recovery import recover
from broker_service.metadata.errors import BrokerFenced
from broker_service.metadata.ports import MetadataPorts
from broker_service.metadata.records import BrokerRecord

log = logging.getLogger(__name__)


def now_ms() -> int:
    return int(time.time() * 1000)


class Membership:
    def __init__(
        self,
        ports: MetadataPorts,
        broker_id: int,
        epoch: int,
        lease_ms: int,
        on_fenced: Callable[[], None],
        on_cluster_change: Callable[[], None],
    ) -> None:
        self.ports = ports
        self.broker_id = broker_id
        self.epoch = epoch
        self.lease_ms = lease_ms
        self.on_fenced = on_fenced
        self.on_cluster_change = on_cluster_change
        self.valid_until = time.monotonic() + lease_ms * 0.8 / 1000
        self.live: list[BrokerRecord] = []
        self._tasks: list[asyncio.Task[None]] = []

    def lease_valid(self) -> bool:
        return time.monotonic() < self.valid_until

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._renew_loop()), loop.create_task(self._recover_loop())]

    def stop(self) -> None:
        for t in self._tasks:
            t.cancel()

    async def _renew_loop(self) -> None:
        interval = self.lease_ms / 3000
        while True:
            started = time.monotonic()
            try:
                # the lease lane: one thread of its own, never behind other metadata calls
                await self.ports.brokers.renew_lease(self.broker_id, self.epoch, self.lease_ms)
                self.valid_until = started + self.lease_ms * 0.8 / 1000
                live = await self.ports.brokers.lease_live_brokers(now_ms())
                if [b.broker_id for b in live] != [b.broker_id for b in self.live]:
                    self.live = live
                    self.on_cluster_change()
                self.live = live
            except BrokerFenced:
                log.error("broker %d epoch %d was fenced; stopping", self.broker_id, self.epoch)
                self.on_fenced()
                return
            except Exception:
                log.exception("lease renewal failed; will retry")
            await asyncio.sleep(interval)

    async def _recover_loop(self) -> None:
        while True:
            await asyncio.sleep(self.lease_ms / 2000)
            try:
                result = await self.ports.run(
                    recover, self.ports.store, now_ms(), self.lease_ms // 5
                )
            except Exception:
                log.exception("recovery check failed; will retry")
                continue
            if result.acted:
                self.on_cluster_change()
