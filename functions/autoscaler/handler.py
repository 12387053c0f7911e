"""Autoscaler Lambda: CloudWatch Alarm State Change or a schedule -> ECS desired count.

The event only says *when* to look; the decision is made from the brokers' metrics in
CloudWatch every time (control/autoscaler.py), so duplicate or out-of-order deliveries are
harmless: the cooldown tag on the service turns a repeat into "hold".
"""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.typing import LambdaContext

from broker_service.control.autoscaler import EcsService, autoscale
from broker_service.control.events import AlarmStateChangeEvent, EventBridgeEnvelope
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
    trigger = envelope.detail_type
    if trigger == "CloudWatch Alarm State Change":
        alarm = parse(event=event, model=AlarmStateChangeEvent).detail
        logger.info("alarm %s is %s: %s", alarm.alarm_name, alarm.state.value, alarm.state.reason)
    if not settings.ecs_cluster or not settings.ecs_service:
        raise ValueError("ECS_CLUSTER and ECS_SERVICE must be set")
    metadata = settings.metadata_store()
    result = autoscale(
        EcsService(settings.ecs_cluster, settings.ecs_service),
        metadata,
        CloudWatchMetricsSource.for_cluster(settings.metrics_namespace, metadata),
        settings.autoscaler_policy(),
        int(time.time() * 1000),
        reassign_fn=secured_reassign(),  # SASL / TLS per KAFKA_SECURITY_PROTOCOL
    )
    d = result.decision
    logger.info("decision", extra={"action": d.action, "current": d.current,
                                   "desired": d.desired, "reason": d.reason,
                                   "drained": result.drained, "trigger": trigger})  # fmt: skip
    metrics.add_dimension(name="Tenant", value=settings.tenant)
    metrics.add_metric(name="DesiredBrokers", unit=MetricUnit.Count, value=d.desired)
    return {"action": d.action, "current": d.current, "desired": d.desired, "reason": d.reason,
            "applied": result.applied, "drained": result.drained,
            "drained_tasks": result.drained_tasks,
            "protected_tasks": result.protected_tasks}  # fmt: skip
