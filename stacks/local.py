"""The local flavour of a tenant (``cdklocal deploy -c flavour=local``): what LocalStack
community runs on a laptop without Docker.

One stack, ``Kafka-<tenant>-Local``:

- the tenant's data bucket, exactly as in AWS (``storage.data_bucket``);
- the control plane's dead-letter queue, and a queue ``kafka-<tenant>-control-events`` that
  receives what the control functions receive in AWS (here: the throughput alarms' state
  changes), because Lambda needs Docker;
- the EventBridge rule that routes this tenant's throughput alarm state changes (to the
  autoscaler in AWS, to that queue here);
- the throughput and produce-latency alarms, as plain metric alarms on the cluster-wide
  series (no dimensions) that ``broker_service.ops.localstack_bridge`` publishes. The AWS
  alarms use Metrics Insights queries over every broker, which LocalStack does not evaluate
  (it evaluates simple metric alarms only). The period is 10 s with one evaluation period so
  an alarm changes state seconds after the traffic that crosses it.

Left out, and why: the DynamoDB table (LocalStack on the host would download Java and
DynamoDB Local at run time: brokers use SQLite or moto server's DynamoDB), the ECS cluster,
service and NLB (ECS is not in the community edition: brokers run as local processes), the
Lambda functions (need Docker), the dashboard and the ECS task-state rules. See
docs/LOCALSTACK.md.
"""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from broker_service.control.sizing import produce_alarm_thresholds

from .alarms import (
    alarm_state_changes,
    control_dead_letter_queue,
    threshold_alarm,
    throughput_alarms,
)
from .storage import data_bucket
from .tenant import TenantSettings

LOCAL_ALARM_PERIOD = cdk.Duration.seconds(10)


class LocalStack(cdk.Stack):
    def __init__(
        self, scope: Construct, construct_id: str, *, tenant: TenantSettings, **kwargs: Any
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.tenant = tenant
        prefix = tenant.resource_prefix
        removal = cdk.RemovalPolicy.RETAIN if tenant.retain_data else cdk.RemovalPolicy.DESTROY
        self.bucket = data_bucket(self, tenant, removal)

        self.dlq = control_dead_letter_queue(self, prefix, "the control-events rule target")
        self.control_events = sqs.Queue(
            self,
            "ControlEvents",
            queue_name=f"{prefix}-control-events",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            dead_letter_queue=sqs.DeadLetterQueue(queue=self.dlq, max_receive_count=5),
        )

        self.alarms = self._alarms()
        throughput = [self.alarms["throughput-high"], self.alarms["throughput-low"]]
        self.rule = events.Rule(
            self,
            "ThroughputAlarms",
            rule_name=f"{prefix}-throughput-alarms",
            description=f"{prefix}: a throughput alarm changed state (autoscaler's trigger)",
            event_pattern=alarm_state_changes(throughput),
            targets=[
                targets.SqsQueue(self.control_events, dead_letter_queue=self.dlq, retry_attempts=2)
            ],
        )

        cdk.CfnOutput(self, "BucketName", value=self.bucket.bucket_name)
        cdk.CfnOutput(
            self, "StorageUri", value=f"s3://{self.bucket.bucket_name}/{tenant.storage_prefix}"
        )
        cdk.CfnOutput(self, "MetricsNamespace", value=tenant.metrics_namespace)
        cdk.CfnOutput(self, "ControlEventsQueueUrl", value=self.control_events.queue_url)
        cdk.CfnOutput(self, "DeadLetterQueueUrl", value=self.dlq.queue_url)
        for key, alarm in self.alarms.items():
            cdk.CfnOutput(self, f"Alarm{key.title().replace('-', '')}", value=alarm.alarm_name)

    def _metric(self, name: str, statistic: str) -> cloudwatch.Metric:
        """The cluster-wide series (no dimensions) of a broker metric."""
        return cloudwatch.Metric(
            namespace=self.tenant.metrics_namespace,
            metric_name=name,
            statistic=statistic,
            period=LOCAL_ALARM_PERIOD,
        )

    def _alarms(self) -> dict[str, cloudwatch.Alarm]:
        t, prefix = self.tenant, self.tenant.resource_prefix
        # The AWS thresholds (control_plane.py), scaled from a minute to the local period.
        alarms = throughput_alarms(
            self,
            prefix,
            self._metric("BytesIn", "Sum"),
            produce_alarm_thresholds(t.capacity, t.min_brokers, t.read_fanout),
            LOCAL_ALARM_PERIOD.to_seconds(),
            high_periods=1,
            low_periods=1,
        )
        alarms["produce-latency"] = threshold_alarm(
            self,
            "ProduceLatencyHigh",
            name=f"{prefix}-produce-latency-high",
            description="produce latency (ms) too high",
            metric=self._metric("ProduceLatencyMs", "Maximum"),
            threshold=t.produce_latency_alarm_ms,
            above=True,
            evaluation_periods=1,
        )
        return alarms
