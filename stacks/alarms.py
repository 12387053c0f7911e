"""What the AWS control plane (control_plane.py) and the local flavour (local.py) build alike:
the control dead-letter queue, threshold alarms, and the rule pattern for alarm state changes.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_events as events
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from broker_service.control.sizing import HIGH_WATER, LOW_WATER, ProduceAlarmThresholds

from .nag import acknowledge

ALARM_STATE_CHANGE = "CloudWatch Alarm State Change"


def control_dead_letter_queue(scope: Construct, prefix: str, whose: str) -> sqs.Queue:
    """The encrypted ``<prefix>-control-dlq``; ``whose`` says what it is the dead-letter queue
    of (cdk-nag wants a reason for a queue without a dead-letter queue of its own)."""
    dlq = sqs.Queue(
        scope,
        "DeadLetters",
        queue_name=f"{prefix}-control-dlq",
        encryption=sqs.QueueEncryption.SQS_MANAGED,
        enforce_ssl=True,
        retention_period=cdk.Duration.days(14),
    )
    acknowledge(dlq, "AwsSolutions-SQS3", f"This queue is itself the dead-letter queue of {whose}.")
    return dlq


def threshold_alarm(
    scope: Construct,
    construct_id: str,
    *,
    name: str,
    description: str,
    metric: cloudwatch.IMetric,
    threshold: float,
    above: bool,
    evaluation_periods: int,
) -> cloudwatch.Alarm:
    """An alarm on ``metric`` going above (or below) ``threshold``. Missing data counts as
    the healthy side for an upper bound and as breaching for a lower bound: no traffic is
    "low", never "high"."""
    return cloudwatch.Alarm(
        scope,
        construct_id,
        alarm_name=name,
        alarm_description=description,
        metric=metric,
        threshold=threshold,
        comparison_operator=(
            cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD
            if above
            else cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD
        ),
        evaluation_periods=evaluation_periods,
        treat_missing_data=(
            cloudwatch.TreatMissingData.NOT_BREACHING
            if above
            else cloudwatch.TreatMissingData.BREACHING
        ),
    )


def alarm_state_changes(alarms: list[cloudwatch.Alarm]) -> events.EventPattern:
    """The EventBridge pattern of these alarms' state changes."""
    return events.EventPattern(
        source=["aws.cloudwatch"],
        detail_type=[ALARM_STATE_CHANGE],
        resources=[a.alarm_arn for a in alarms],
    )


def throughput_alarms(
    scope: Construct,
    prefix: str,
    produce_bytes: cloudwatch.IMetric,
    thresholds: ProduceAlarmThresholds,
    period_s: float,
    *,
    why: str = "",
    high_periods: int,
    low_periods: int,
) -> dict[str, cloudwatch.Alarm]:
    """The autoscaler's trigger: produce bytes per period of ``period_s`` above / below the
    sizing model's thresholds (control/sizing.py: a share of what the minimum cluster carries
    at the tenant's read fan-out). ``why`` ends the descriptions (what the autoscaler does)."""
    alarms: dict[str, cloudwatch.Alarm] = {}
    # (level, side of the threshold, share of capacity, bytes/s, action, periods)
    for level, side, share, per_s, action, periods in (
        ("high", "above", HIGH_WATER, thresholds.high_bytes_per_s, "adding", high_periods),
        ("low", "below", LOW_WATER, thresholds.low_bytes_per_s, "removing", low_periods),
    ):
        alarms[f"throughput-{level}"] = threshold_alarm(
            scope,
            f"Throughput{level.title()}",
            name=f"{prefix}-throughput-{level}",
            description=f"produce rate {side} {share:.0%} of the minimum cluster's target"
            + (f": {why} {action} brokers" if why else ""),
            metric=produce_bytes,
            threshold=per_s * period_s,
            above=side == "above",
            evaluation_periods=periods,
        )
    return alarms
