"""Waiting for a new broker task's broker: ECS reports a task RUNNING 8-13 s before the broker
in it has registered its lease and published its task ARN (start-up, metadata store, ECS task
metadata). The balancer, triggered by RUNNING, waits for it (bounded) so its first plan
includes the new broker."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from broker_service.metadata.store import MetadataStore

log = logging.getLogger(__name__)


def wait_for_task_broker(
    metadata: MetadataStore,
    task_arn: str,
    timeout_s: float,
    poll_s: float = 1.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> int | None:
    """The id of the live broker that published ``task_arn``, polling the metadata store
    until ``timeout_s``; None if it did not show up in time."""
    deadline = clock() + timeout_s
    while True:
        now_ms = int(time.time() * 1000)
        live = {b.broker_id for b in metadata.live_brokers(now_ms)}
        for bid, info in metadata.broker_info().items():
            if info.get("task_arn") == task_arn and bid in live:
                return bid
        if clock() >= deadline:
            log.warning("no live broker published task %s within %.0f s", task_arn, timeout_s)
            return None
        sleep(min(poll_s, max(0.0, deadline - clock())))
