"""Recovery Lambda: ECS Task State Change (lastStatus STOPPED) -> fence that task's broker at
once (no waiting for its lease) and hand its partitions to live brokers; a schedule -> the
lease-expiry sweep (control/recovery.py). Every step is a compare-and-set in the metadata
store, so duplicate events and concurrent sweeps fence each broker once and move each
partition once. The new leader commits what an orphaned file WAL still held on takeover.
"""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.typing import LambdaContext

from broker_service.control.events import EventBridgeEnvelope, TaskStateChangeEvent
from broker_service.control.recovery import (
    RecoveryResult,
    brokers_for_task,
    recover,
    recover_brokers,
)
from broker_service.control.settings import ControlSettings

logger = Logger()
metrics = Metrics()


@logger.inject_lambda_context
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    settings = ControlSettings()
    metrics.namespace = settings.metrics_namespace
    metadata = settings.metadata_store()
    now_ms = int(time.time() * 1000)
    envelope = parse(event=event, model=EventBridgeEnvelope)
    broker_ids: list[int] = []
    result = RecoveryResult()

    def sweep() -> RecoveryResult:  # the lease sweep
        return recover(metadata, now_ms, settings.lease_grace_ms,
                       stale_read_ms=settings.lease_stale_read_ms)  # fmt: skip

    if envelope.detail_type != "ECS Task State Change":
        result = sweep()
    else:
        task = parse(event=event, model=TaskStateChangeEvent).detail
        if task.last_status != "STOPPED":
            logger.info("task %s is %s: nothing to recover", task.task_arn, task.last_status)
        elif not (found := brokers_for_task(metadata, task.task_arn, task.private_ips())):
            logger.warning("stopped task %s (%s) ran no known broker; sweeping leases",
                           task.task_arn, task.private_ips())  # fmt: skip
            result = sweep()
        else:  # every broker process the task ran (serve --processes N)
            broker_ids = [bid for bid, _ in found]
            why = f"its task {task.task_arn} stopped ({task.stopped_reason or task.stop_code})"
            result = recover_brokers(metadata, found, now_ms, why)
    broker_id = broker_ids[0] if len(broker_ids) == 1 else None
    logger.info("recovery", extra={"trigger": envelope.detail_type, "broker": broker_id,
                                   "brokers": broker_ids, "fenced": result.fenced,
                                   "moved": result.moved})  # fmt: skip
    metrics.add_dimension(name="Tenant", value=settings.tenant)
    metrics.add_metric(name="BrokersFenced", unit=MetricUnit.Count, value=len(result.fenced))
    metrics.add_metric(name="PartitionsRecovered", unit=MetricUnit.Count, value=len(result.moved))
    return {"broker": broker_id, "brokers": broker_ids, "fenced": result.fenced,
            "moved": [list(m) for m in result.moved]}  # fmt: skip
