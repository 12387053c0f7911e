"""Balancer Lambda: ECS Task State Change (a broker task RUNNING: fill it) or a schedule ->
partition moves that keep every broker's bytes in + out within a band around the mean
(control/balancer.py). Each move is an O(1) graceful reassignment. Idempotent: the plan is
made from the current placement, so a repeated event finds nothing left to move.
"""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.typing import LambdaContext

from broker_service.control.arrival import wait_for_task_broker
from broker_service.control.balancer import balance
from broker_service.control.events import EventBridgeEnvelope, TaskStateChangeEvent
from broker_service.control.metrics_source import CloudWatchMetricsSource
from broker_service.control.settings import ControlSettings, secured_reassign

logger = Logger()
metrics = Metrics()


@logger.inject_lambda_context
@metrics.log_metrics
def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    settings = ControlSettings()
    metrics.namespace = settings.metrics_namespace
    envelope = parse(event=event, model=EventBridgeEnvelope)
    metadata = settings.metadata_store()
    arrived: int | None = None
    if envelope.detail_type == "ECS Task State Change":
        task = parse(event=event, model=TaskStateChangeEvent).detail
        if task.last_status != "RUNNING" or task.desired_status not in (None, "RUNNING"):
            logger.info("task %s is %s (desired %s): nothing to balance", task.task_arn,
                        task.last_status, task.desired_status)  # fmt: skip
            metrics.add_metric(name="PartitionMoves", unit=MetricUnit.Count, value=0)
            return {"moves": [], "skipped": f"task {task.last_status}/{task.desired_status}"}
        # The broker registers 8-13 s after its task is RUNNING: wait for it (bounded by the
        # setting and by the invocation's time), or the plan would not include it.
        budget = min(settings.arrival_timeout_s,
                     context.get_remaining_time_in_millis() / 1000 / 2)  # fmt: skip
        arrived = wait_for_task_broker(metadata, task.task_arn, budget)
        logger.info("broker task %s is RUNNING: broker %s; balancing onto it", task.task_arn,
                    arrived)  # fmt: skip
    result = balance(
        metadata,
        CloudWatchMetricsSource.for_cluster(settings.metrics_namespace, metadata),
        settings.balancer_policy(),
        int(time.time() * 1000),
        reassign_fn=secured_reassign(),  # SASL / TLS per KAFKA_SECURITY_PROTOCOL
    )
    plan = result.plan
    logger.info("balance", extra={"mode": plan.mode, "mean_bytes_per_s": plan.mean,
                                  "before": plan.before, "after": plan.after,
                                  "reason": plan.reason,
                                  "moves": [m.__dict__ for m in plan.moves]})  # fmt: skip
    metrics.add_dimension(name="Tenant", value=settings.tenant)
    metrics.add_metric(name="PartitionMoves", unit=MetricUnit.Count, value=len(result.done))
    metrics.add_metric(name="FailedPartitionMoves", unit=MetricUnit.Count,
                       value=len(result.failed))  # fmt: skip
    return {
        "mode": plan.mode,
        "reason": plan.reason,
        "arrived": arrived,
        "brokers": sorted(plan.before),
        "moves": [{"topic": r.topic, "partition": r.partition, "target": r.target,
                   "ok": r.ok, "error_code": r.error_code} for r in result.done + result.failed],
    }  # fmt: skip
